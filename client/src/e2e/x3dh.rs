//! X3DH as in Signal's specification: the initiator combines its identity key
//! (IK_A) and a fresh ephemeral key (EK_A) with the responder's identity key
//! (IK_B), signed prekey (SPK_B) and, when one is left, a one-time prekey (OPK_B):
//!
//! DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B),
//! DH4 = DH(EK_A, OPK_B); SK = HKDF(F ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4]),
//! with F = 32 × 0xFF, a zero salt, and AD = IK_A ‖ IK_B (the X25519 identity
//! keys, followed by both Ed25519 identity keys).

use ed25519_dalek::{Signature, VerifyingKey};
use hkdf::Hkdf;
use sha2::Sha256;
use sotto_proto::v1;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use super::E2eError;
use crate::identity::Identity;

const X3DH_INFO: &[u8] = b"sotto/1 X3DH";

/// A prekey bundle whose signatures verified.
#[derive(Clone)]
pub struct VerifiedBundle {
    pub user: String,
    pub identity_key: VerifyingKey,
    pub(super) identity_dh: PublicKey,
    pub(super) signed_prekey_id: u32,
    pub(super) signed_prekey: PublicKey,
    pub(super) one_time: Option<(u32, PublicKey)>,
}

fn key32(bytes: &[u8]) -> Result<[u8; 32], E2eError> {
    bytes.try_into().map_err(|_| E2eError::BadBundle)
}

/// Checks that `identity_key` vouches for `dh_key`.
pub(super) fn verify_identity_dh(
    identity_key: &VerifyingKey,
    dh_key: &[u8],
    signature: &[u8],
) -> Result<(), E2eError> {
    let signature = Signature::from_slice(signature).map_err(|_| E2eError::BadBundle)?;
    identity_key
        .verify_strict(&sotto_proto::transcript::identity_dh(dh_key), &signature)
        .map_err(|_| E2eError::BadBundle)
}

/// Verifies a bundle from the relay: the identity key must vouch for both the
/// identity DH key and the signed prekey, or the bundle is refused.
pub fn verify_bundle(bundle: &v1::PrekeyBundle) -> Result<VerifiedBundle, E2eError> {
    let identity_key =
        VerifyingKey::from_bytes(&key32(&bundle.identity_key)?).map_err(|_| E2eError::BadBundle)?;
    verify_identity_dh(
        &identity_key,
        &bundle.identity_dh_key,
        &bundle.identity_dh_signature,
    )?;
    let spk = bundle.signed_prekey.as_ref().ok_or(E2eError::BadBundle)?;
    let signature = Signature::from_slice(&spk.signature).map_err(|_| E2eError::BadBundle)?;
    identity_key
        .verify_strict(
            &sotto_proto::transcript::signed_prekey(&spk.public_key),
            &signature,
        )
        .map_err(|_| E2eError::BadBundle)?;
    let one_time = match &bundle.one_time {
        Some(otk) => Some((otk.id, PublicKey::from(key32(&otk.public_key)?))),
        None => None,
    };
    Ok(VerifiedBundle {
        user: bundle.user.clone(),
        identity_key,
        identity_dh: PublicKey::from(key32(&bundle.identity_dh_key)?),
        signed_prekey_id: spk.id,
        signed_prekey: PublicKey::from(key32(&spk.public_key)?),
        one_time,
    })
}

/// The associated data both sides bind every message of the session to.
pub(super) fn associated_data(
    initiator_dh: &PublicKey,
    responder_dh: &PublicKey,
    initiator: &VerifyingKey,
    responder: &VerifyingKey,
) -> Vec<u8> {
    let mut ad = Vec::with_capacity(128);
    ad.extend_from_slice(initiator_dh.as_bytes());
    ad.extend_from_slice(responder_dh.as_bytes());
    ad.extend_from_slice(initiator.as_bytes());
    ad.extend_from_slice(responder.as_bytes());
    ad
}

fn contributory(dh: SharedSecret) -> Result<SharedSecret, E2eError> {
    if dh.was_contributory() {
        Ok(dh)
    } else {
        Err(E2eError::BadKey)
    }
}

fn kdf(dhs: &[SharedSecret]) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (dhs.len() + 1)));
    ikm.extend_from_slice(&[0xFF; 32]);
    for dh in dhs {
        ikm.extend_from_slice(dh.as_bytes());
    }
    let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm);
    let mut sk = Zeroizing::new([0u8; 32]);
    hk.expand(X3DH_INFO, sk.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    sk
}

/// What the initiator learns: the shared secret and the ephemeral public key to send.
pub(super) struct Initiated {
    pub shared: Zeroizing<[u8; 32]>,
    pub ephemeral: PublicKey,
}

pub(super) fn initiate(me: &Identity, bundle: &VerifiedBundle) -> Result<Initiated, E2eError> {
    let ephemeral = StaticSecret::random_from_rng(&mut rand::rng());
    let mut dhs = vec![
        contributory(me.dh_secret().diffie_hellman(&bundle.signed_prekey))?,
        contributory(ephemeral.diffie_hellman(&bundle.identity_dh))?,
        contributory(ephemeral.diffie_hellman(&bundle.signed_prekey))?,
    ];
    if let Some((_, otk)) = &bundle.one_time {
        dhs.push(contributory(ephemeral.diffie_hellman(otk))?);
    }
    Ok(Initiated {
        shared: kdf(&dhs),
        ephemeral: PublicKey::from(&ephemeral),
    })
}

/// The responder's side: the same secret from its private keys.
pub(super) fn respond(
    me: &Identity,
    signed_prekey: &super::ratchet_key::RatchetKeyPair,
    one_time: Option<&super::ratchet_key::RatchetKeyPair>,
    initiator_dh: &PublicKey,
    ephemeral: &PublicKey,
) -> Result<Zeroizing<[u8; 32]>, E2eError> {
    let mut dhs = vec![
        contributory(signed_prekey.diffie_hellman(initiator_dh))?,
        contributory(me.dh_secret().diffie_hellman(ephemeral))?,
        contributory(signed_prekey.diffie_hellman(ephemeral))?,
    ];
    if let Some(otk) = one_time {
        dhs.push(contributory(otk.diffie_hellman(ephemeral))?);
    }
    Ok(kdf(&dhs))
}
