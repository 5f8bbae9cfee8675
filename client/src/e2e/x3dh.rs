//! PQXDH as in Signal's specification (revision 2): X3DH plus ML-KEM-1024.
//! The initiator combines its identity key (IK_A) and a fresh ephemeral key
//! (EK_A) with the responder's identity key (IK_B), signed prekey (SPK_B),
//! when one is left a one-time prekey (OPK_B), and encapsulates to the
//! responder's signed ML-KEM-1024 prekey (PQPK_B: a one-time one if the relay
//! had one left, else the last-resort one), giving (CT, SS):
//!
//! DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B),
//! DH4 = DH(EK_A, OPK_B);
//! SK = HKDF-SHA256(salt = 32 zero bytes, F ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS,
//! info = "sotto_X25519_SHA-256_ML-KEM-1024"), with F = 32 × 0xFF, and
//! AD = IK_A ‖ IK_B (the X25519 identity keys, followed by both Ed25519
//! identity keys).
//!
//! No downgrade: a bundle without a PQ prekey whose signature verifies is
//! refused, and so is a first message without a KEM ciphertext. Classical
//! X3DH (no SS, info "sotto/1 X3DH") made the sessions of older versions,
//! which go on working; it is never used for a new one (but by the
//! benchmark, behind the `classical-x3dh` feature).

use ed25519_dalek::{Signature, VerifyingKey};
use hkdf::Hkdf;
use sha2::Sha256;
use sotto_proto::v1;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use super::E2eError;
use super::kem_key::{KemCiphertext, KemKeyPair, KemPublicKey, KemSharedSecret};
use crate::identity::Identity;

/// HKDF info of classical X3DH (sessions made before PQXDH; the benchmark).
const X3DH_INFO: &[u8] = b"sotto/1 X3DH";
/// HKDF info of PQXDH: the protocol, the curve, the hash and the KEM.
const PQXDH_INFO: &[u8] = b"sotto_X25519_SHA-256_ML-KEM-1024";

/// A prekey bundle whose signatures verified.
#[derive(Clone)]
pub struct VerifiedBundle {
    pub user: String,
    pub identity_key: VerifyingKey,
    pub(super) identity_dh: PublicKey,
    pub(super) signed_prekey_id: u32,
    pub(super) signed_prekey: PublicKey,
    pub(super) one_time: Option<(u32, PublicKey)>,
    pub(super) pq_prekey_id: u32,
    pub(super) pq_prekey: KemPublicKey,
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

/// Verifies a bundle from the relay: the identity key must vouch for the
/// identity DH key, the signed prekey and the ML-KEM-1024 prekey, or the
/// bundle is refused; one without a PQ prekey too (a relay that strips it
/// cannot make us fall back to classical X3DH).
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
    let pq = bundle.pq_prekey.as_ref().ok_or(E2eError::NoPqPrekey)?;
    let pq_signature = Signature::from_slice(&pq.signature).map_err(|_| E2eError::BadBundle)?;
    identity_key
        .verify_strict(
            &sotto_proto::transcript::pq_prekey(pq.id, &pq.public_key),
            &pq_signature,
        )
        .map_err(|_| E2eError::BadBundle)?;
    let pq_prekey = KemPublicKey::from_bytes(&pq.public_key).map_err(|_| E2eError::BadBundle)?;
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
        pq_prekey_id: pq.id,
        pq_prekey,
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

/// SK from the DH outputs and, for PQXDH, the KEM's shared secret.
fn kdf(dhs: &[SharedSecret], kem: Option<&KemSharedSecret>) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (dhs.len() + 2)));
    ikm.extend_from_slice(&[0xFF; 32]);
    for dh in dhs {
        ikm.extend_from_slice(dh.as_bytes());
    }
    if let Some(ss) = kem {
        ikm.extend_from_slice(ss.as_ref());
    }
    let info = if kem.is_some() { PQXDH_INFO } else { X3DH_INFO };
    let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm);
    let mut sk = Zeroizing::new([0u8; 32]);
    hk.expand(info, sk.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    sk
}

/// What the initiator learns: the shared secret, and the ephemeral public key
/// and KEM ciphertext to send (no ciphertext: classical X3DH).
pub(super) struct Initiated {
    pub shared: Zeroizing<[u8; 32]>,
    pub ephemeral: PublicKey,
    pub pq_ciphertext: Option<KemCiphertext>,
}

/// Which key agreement a session is set up with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Agreement {
    PostQuantum,
    /// Only for the benchmark's comparison (and sessions made before PQXDH).
    #[cfg_attr(not(feature = "classical-x3dh"), allow(dead_code))]
    Classical,
}

pub(super) fn initiate(
    me: &Identity,
    bundle: &VerifiedBundle,
    agreement: Agreement,
) -> Result<Initiated, E2eError> {
    let ephemeral = StaticSecret::random_from_rng(&mut rand::rng());
    let mut dhs = vec![
        contributory(me.dh_secret().diffie_hellman(&bundle.signed_prekey))?,
        contributory(ephemeral.diffie_hellman(&bundle.identity_dh))?,
        contributory(ephemeral.diffie_hellman(&bundle.signed_prekey))?,
    ];
    if let Some((_, otk)) = &bundle.one_time {
        dhs.push(contributory(ephemeral.diffie_hellman(otk))?);
    }
    let (pq_ciphertext, ss) = match agreement {
        Agreement::PostQuantum => {
            let (ct, ss) = bundle.pq_prekey.encapsulate();
            (Some(ct), Some(ss))
        }
        Agreement::Classical => (None, None),
    };
    Ok(Initiated {
        shared: kdf(&dhs, ss.as_ref()),
        ephemeral: PublicKey::from(&ephemeral),
        pq_ciphertext,
    })
}

/// The responder's side: the same secret from its private keys, decapsulating
/// `pq` (our PQ prekey and the initiator's ciphertext) for PQXDH.
pub(super) fn respond(
    me: &Identity,
    signed_prekey: &super::ratchet_key::RatchetKeyPair,
    one_time: Option<&super::ratchet_key::RatchetKeyPair>,
    initiator_dh: &PublicKey,
    ephemeral: &PublicKey,
    pq: Option<(&KemKeyPair, &KemCiphertext)>,
) -> Result<Zeroizing<[u8; 32]>, E2eError> {
    let mut dhs = vec![
        contributory(signed_prekey.diffie_hellman(initiator_dh))?,
        contributory(me.dh_secret().diffie_hellman(ephemeral))?,
        contributory(signed_prekey.diffie_hellman(ephemeral))?,
    ];
    if let Some(otk) = one_time {
        dhs.push(contributory(otk.diffie_hellman(ephemeral))?);
    }
    let ss = pq.map(|(key, ciphertext)| key.decapsulate(ciphertext));
    Ok(kdf(&dhs, ss.as_ref()))
}
