//! A sender key's Ed25519 key: the owner holds the signing half and signs
//! every group message with it; the other members hold only the verifying
//! half. Verification is strict (`verify_strict`): weak (small-order) keys
//! and non-canonical signatures are refused, and a weak key is refused as
//! soon as a distribution names it.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::E2eError;

#[derive(Clone)]
pub(super) struct SenderSigningKey {
    public: VerifyingKey,
    /// Only in our own sender key.
    private: Option<SigningKey>,
}

impl SenderSigningKey {
    pub(super) fn generate() -> Self {
        let private = SigningKey::generate(&mut rand::rng());
        SenderSigningKey {
            public: private.verifying_key(),
            private: Some(private),
        }
    }

    /// A member's verifying key, from a distribution: refused when it is
    /// not a point, or a weak one.
    pub(super) fn from_public(bytes: &[u8]) -> Result<Self, E2eError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| E2eError::Malformed)?;
        let public = VerifyingKey::from_bytes(&bytes).map_err(|_| E2eError::BadKey)?;
        if public.is_weak() {
            return Err(E2eError::BadKey);
        }
        Ok(SenderSigningKey {
            public,
            private: None,
        })
    }

    pub(super) fn public_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// Signs with our own sender key; `None` on a member's (verify-only) key.
    pub(super) fn sign(&self, message: &[u8]) -> Option<Signature> {
        self.private.as_ref().map(|k| k.sign(message))
    }

    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), E2eError> {
        let signature = Signature::from_slice(signature).map_err(|_| E2eError::GroupSignature)?;
        self.public
            .verify_strict(message, &signature)
            .map_err(|_| E2eError::GroupSignature)
    }
}

/// As stored in the vault: the public key, and the secret key in our own.
#[derive(Serialize, Deserialize)]
struct Stored {
    public: [u8; 32],
    private: Option<StoredSecret>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoredSecret([u8; 32]);

impl Serialize for SenderSigningKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            public: self.public.to_bytes(),
            private: self.private.as_ref().map(|k| StoredSecret(k.to_bytes())),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SenderSigningKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let stored = Stored::deserialize(d)?;
        let mut key = SenderSigningKey::from_public(&stored.public)
            .map_err(|_| D::Error::custom("a sender key's public key is invalid"))?;
        if let Some(secret) = stored.private {
            let private = SigningKey::from_bytes(&secret.0);
            if private.verifying_key() != key.public {
                return Err(D::Error::custom(
                    "a sender key's secret and public keys do not match",
                ));
            }
            key.private = Some(private);
        }
        Ok(key)
    }
}
