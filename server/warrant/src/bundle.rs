//! What the relay hands an investigator: a payload signed by the relay's
//! disclosure key, then encrypted to the warrant's delivery key
//! (ephemeral-static X25519, HKDF-SHA256, XChaCha20-Poly1305). Both sides live
//! here, so the relay's sealing and the investigator's opening cannot drift.
//!
//! A bundle has a [`Purpose`]: a disclosure and an unmask answer are signed
//! over different transcripts and encrypted under keys derived with different
//! info, so one can never be presented as the other.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use prost::Message;
use rand::Rng;
use sha2::Sha256;
use sotto_proto::v1;
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::refusal::Refusal;

/// What a bundle carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A `Disclosure`.
    Disclosure,
    /// An `Unmasked`.
    Unmasking,
}

impl Purpose {
    fn transcript(self, payload: &[u8]) -> Vec<u8> {
        match self {
            Purpose::Disclosure => sotto_proto::transcript::disclosure(payload),
            Purpose::Unmasking => sotto_proto::transcript::unmasked(payload),
        }
    }

    fn seal_info(self) -> &'static [u8] {
        match self {
            Purpose::Disclosure => sotto_proto::transcript::DISCLOSURE_SEAL_INFO,
            Purpose::Unmasking => sotto_proto::transcript::UNMASKED_SEAL_INFO,
        }
    }
}

/// An investigator's X25519 delivery key that a bundle can safely be sealed
/// to: 32 bytes and not a low-order point (whose shared secret is all zeros,
/// whatever the relay's ephemeral key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryKey(PublicKey);

impl DeliveryKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Refusal> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Refusal::BadDeliveryKey)?;
        let key = PublicKey::from(bytes);
        // Clamped scalars are multiples of the cofactor: a low-order point
        // gives the all-zero secret for every scalar, so one trial decides.
        let probe = StaticSecret::random_from_rng(&mut rand::rng());
        if !probe.diffie_hellman(&key).was_contributory() {
            return Err(Refusal::BadDeliveryKey);
        }
        Ok(DeliveryKey(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

/// Why a bundle does not open.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the bundle is damaged ({0})")]
    Damaged(&'static str),
    #[error(
        "the bundle does not decrypt with this delivery key (it is not for these keys, or it was altered)"
    )]
    NotForThisKey,
    #[error("the bundle is signed by relay key {actual}, not the pinned {expected}")]
    OtherRelay { actual: String, expected: String },
    #[error("the relay's signature over the bundle does not verify")]
    BadSignature,
}

fn key_and_salt(
    purpose: Purpose,
    shared: &[u8; 32],
    ephemeral: &PublicKey,
    delivery: &PublicKey,
) -> (Zeroizing<[u8; 32]>, Vec<u8>) {
    let mut salt = Vec::with_capacity(64);
    salt.extend_from_slice(ephemeral.as_bytes());
    salt.extend_from_slice(delivery.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(purpose.seal_info(), key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    (key, salt)
}

/// Signs `payload` with the relay's disclosure key and encrypts it to `to`.
pub fn seal(
    purpose: Purpose,
    payload: &[u8],
    relay_key: &SigningKey,
    to: &DeliveryKey,
) -> v1::SealedBundle {
    let signed = v1::SignedBundle {
        signature: relay_key
            .sign(&purpose.transcript(payload))
            .to_bytes()
            .to_vec()
            .into(),
        relay_key: relay_key.verifying_key().to_bytes().to_vec().into(),
        payload: payload.to_vec().into(),
    };
    let plaintext = Zeroizing::new(signed.encode_to_vec());
    let ephemeral = StaticSecret::random_from_rng(&mut rand::rng());
    let ephemeral_public = PublicKey::from(&ephemeral);
    let shared = ephemeral.diffie_hellman(&to.0);
    let (key, salt) = key_and_salt(purpose, shared.as_bytes(), &ephemeral_public, &to.0);
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = XChaCha20Poly1305::new(&(*key).into())
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: &salt,
            },
        )
        .expect("XChaCha20-Poly1305 seals any bundle size");
    v1::SealedBundle {
        ephemeral_key: ephemeral_public.as_bytes().to_vec().into(),
        nonce: nonce.to_vec().into(),
        ciphertext: ciphertext.into(),
    }
}

/// An opened bundle: the payload, and the relay key whose signature verified.
#[derive(Debug)]
pub struct Opened {
    pub payload: Vec<u8>,
    pub relay_key: VerifyingKey,
}

/// Decrypts a bundle with the delivery secret and verifies the relay's
/// signature (against `pin` when given, which is the relay key to expect).
pub fn open(
    purpose: Purpose,
    sealed: &v1::SealedBundle,
    delivery: &StaticSecret,
    pin: Option<&VerifyingKey>,
) -> Result<Opened, BundleError> {
    let ephemeral: [u8; 32] = sealed
        .ephemeral_key
        .as_ref()
        .try_into()
        .map_err(|_| BundleError::Damaged("ephemeral key"))?;
    let nonce: [u8; 24] = sealed
        .nonce
        .as_ref()
        .try_into()
        .map_err(|_| BundleError::Damaged("nonce"))?;
    let ephemeral = PublicKey::from(ephemeral);
    let shared = delivery.diffie_hellman(&ephemeral);
    if !shared.was_contributory() {
        return Err(BundleError::Damaged("low-order ephemeral key"));
    }
    let (key, salt) = key_and_salt(
        purpose,
        shared.as_bytes(),
        &ephemeral,
        &PublicKey::from(delivery),
    );
    let plaintext = Zeroizing::new(
        XChaCha20Poly1305::new(&(*key).into())
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &salt,
                },
            )
            .map_err(|_| BundleError::NotForThisKey)?,
    );
    let signed = v1::SignedBundle::decode(plaintext.as_slice())
        .map_err(|_| BundleError::Damaged("signed bundle"))?;
    let relay_key: [u8; 32] = signed
        .relay_key
        .as_ref()
        .try_into()
        .map_err(|_| BundleError::Damaged("relay key"))?;
    let relay_key =
        VerifyingKey::from_bytes(&relay_key).map_err(|_| BundleError::Damaged("relay key"))?;
    if let Some(pin) = pin
        && pin != &relay_key
    {
        return Err(BundleError::OtherRelay {
            actual: hex::encode(relay_key.as_bytes()),
            expected: hex::encode(pin.as_bytes()),
        });
    }
    let signature =
        Signature::from_slice(&signed.signature).map_err(|_| BundleError::BadSignature)?;
    relay_key
        .verify_strict(&purpose.transcript(&signed.payload), &signature)
        .map_err(|_| BundleError::BadSignature)?;
    Ok(Opened {
        payload: signed.payload.to_vec(),
        relay_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (SigningKey, StaticSecret, DeliveryKey) {
        let relay = SigningKey::generate(&mut rand::rng());
        let delivery = StaticSecret::random_from_rng(&mut rand::rng());
        let public = DeliveryKey::from_bytes(PublicKey::from(&delivery).as_bytes()).unwrap();
        (relay, delivery, public)
    }

    #[test]
    fn a_bundle_opens_for_its_delivery_key_and_purpose_only() {
        let (relay, delivery, to) = keys();
        let sealed = seal(Purpose::Disclosure, b"records", &relay, &to);
        let opened = open(
            Purpose::Disclosure,
            &sealed,
            &delivery,
            Some(&relay.verifying_key()),
        )
        .unwrap();
        assert_eq!(opened.payload, b"records");
        assert!(open(Purpose::Unmasking, &sealed, &delivery, None).is_err());
        let stranger = StaticSecret::random_from_rng(&mut rand::rng());
        assert_eq!(
            open(Purpose::Disclosure, &sealed, &stranger, None).unwrap_err(),
            BundleError::NotForThisKey
        );
        let other = SigningKey::generate(&mut rand::rng());
        assert!(matches!(
            open(
                Purpose::Disclosure,
                &sealed,
                &delivery,
                Some(&other.verifying_key())
            ),
            Err(BundleError::OtherRelay { .. })
        ));
    }

    #[test]
    fn hostile_investigator_low_order_delivery_keys_are_refused() {
        // The identity and points of order 2, 4 and 8 on Curve25519 (as
        // u-coordinates), and a non-canonical encoding of zero.
        let mut low_order = vec![[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }];
        low_order.push(
            hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        low_order.push(
            hex::decode("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        low_order.push(
            hex::decode("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        for point in low_order {
            assert_eq!(
                DeliveryKey::from_bytes(&point),
                Err(Refusal::BadDeliveryKey),
                "{}",
                hex::encode(point)
            );
        }
        assert_eq!(
            DeliveryKey::from_bytes(&[9u8; 31]),
            Err(Refusal::BadDeliveryKey)
        );
    }

    #[test]
    fn a_tampered_bundle_does_not_open() {
        let (relay, delivery, to) = keys();
        let mut sealed = seal(Purpose::Unmasking, b"names", &relay, &to);
        let mut ciphertext = sealed.ciphertext.to_vec();
        ciphertext[3] ^= 1;
        sealed.ciphertext = ciphertext.into();
        assert_eq!(
            open(Purpose::Unmasking, &sealed, &delivery, None).unwrap_err(),
            BundleError::NotForThisKey
        );
    }
}
