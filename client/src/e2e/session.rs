//! A secret session with one peer: PQXDH to start it, the Double Ratchet to run it.
//!
//! The public API cannot be misused: there is no way to encrypt without a
//! session, and no way to get a key out of one.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sotto_proto::v1::{self, secret_payload};
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use super::E2eError;
use super::double_ratchet::DoubleRatchet;
use super::header::Header;
use super::kem_key::KemCiphertext;
use super::prekeys::{LocalPrekeys, PqPrekeyKind};
use super::x3dh::{self, Agreement, VerifiedBundle};
use crate::identity::Identity;

#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    ratchet: DoubleRatchet,
    ad: Vec<u8>,
    /// The initiator's X3DH header, sent with every message until the peer answers.
    pending_prekey: Option<PendingPrekey>,
    /// The initiator's ephemeral key: names the X3DH run this session came from.
    base_key: [u8; 32],
    /// The peer's Ed25519 identity key this session was made with.
    peer_identity: [u8; 32],
    /// Set up with PQXDH; false for a session made by an older version with
    /// classical X3DH, which goes on working until the next session reset.
    #[serde(default)]
    post_quantum: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct PendingPrekey {
    identity_key: [u8; 32],
    identity_dh_key: [u8; 32],
    identity_dh_signature: Vec<u8>,
    ephemeral_key: [u8; 32],
    signed_prekey_id: u32,
    one_time_prekey_id: Option<u32>,
    /// The KEM ciphertext and the PQ prekey it is for (empty and none in a
    /// session an older version started).
    #[serde(default)]
    pq_ciphertext: Vec<u8>,
    #[serde(default)]
    pq_prekey_id: Option<u32>,
}

impl Session {
    /// Starts a session with the owner of `bundle` (we are the initiator),
    /// with PQXDH: the bundle verified with its PQ prekey, so there is no
    /// other way.
    pub fn initiate(me: &Identity, bundle: &VerifiedBundle) -> Result<Self, E2eError> {
        Self::initiate_with(me, bundle, Agreement::PostQuantum)
    }

    /// Classical X3DH, for the benchmark's comparison only: sotto never sets
    /// up a session this way.
    #[cfg(feature = "classical-x3dh")]
    pub fn initiate_classical(me: &Identity, bundle: &VerifiedBundle) -> Result<Self, E2eError> {
        Self::initiate_with(me, bundle, Agreement::Classical)
    }

    fn initiate_with(
        me: &Identity,
        bundle: &VerifiedBundle,
        agreement: Agreement,
    ) -> Result<Self, E2eError> {
        let x = x3dh::initiate(me, bundle, agreement)?;
        let pq_ciphertext = x
            .pq_ciphertext
            .as_ref()
            .map(|c| c.as_bytes().to_vec())
            .unwrap_or_default();
        let ad = x3dh::associated_data(
            &me.dh_public(),
            &bundle.identity_dh,
            &me.public_key(),
            &bundle.identity_key,
        );
        let dh = me.dh_public();
        Ok(Session {
            ratchet: DoubleRatchet::init_alice(*x.shared, &bundle.signed_prekey),
            ad,
            pending_prekey: Some(PendingPrekey {
                identity_key: me.public_key().to_bytes(),
                identity_dh_key: dh.to_bytes(),
                identity_dh_signature: me
                    .sign(&sotto_proto::transcript::identity_dh(dh.as_bytes()))
                    .to_bytes()
                    .to_vec(),
                ephemeral_key: x.ephemeral.to_bytes(),
                signed_prekey_id: bundle.signed_prekey_id,
                one_time_prekey_id: bundle.one_time.as_ref().map(|(id, _)| *id),
                pq_prekey_id: x.pq_ciphertext.as_ref().map(|_| bundle.pq_prekey_id),
                pq_ciphertext,
            }),
            base_key: x.ephemeral.to_bytes(),
            peer_identity: bundle.identity_key.to_bytes(),
            post_quantum: agreement == Agreement::PostQuantum,
        })
    }

    /// Answers a first message (we are the responder): sets up the session and
    /// decrypts the message it carries. The one-time prekeys it used (curve
    /// and PQ) are deleted only if the message is authentic; nothing changes
    /// otherwise. A first message without a KEM ciphertext is refused.
    pub fn respond(
        me: &Identity,
        prekeys: &mut LocalPrekeys,
        message: &v1::PrekeyMessage,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), E2eError> {
        Self::respond_with(me, prekeys, message, Agreement::PostQuantum)
    }

    /// Answers a classical X3DH first message, for the benchmark's comparison
    /// only: sotto never accepts one.
    #[cfg(feature = "classical-x3dh")]
    pub fn respond_classical(
        me: &Identity,
        prekeys: &mut LocalPrekeys,
        message: &v1::PrekeyMessage,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), E2eError> {
        Self::respond_with(me, prekeys, message, Agreement::Classical)
    }

    fn respond_with(
        me: &Identity,
        prekeys: &mut LocalPrekeys,
        message: &v1::PrekeyMessage,
        agreement: Agreement,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), E2eError> {
        let pq = match (agreement, message.pq_prekey_id) {
            (Agreement::Classical, _) => None,
            (Agreement::PostQuantum, Some(id)) if !message.pq_ciphertext.is_empty() => {
                Some((id, KemCiphertext::from_bytes(&message.pq_ciphertext)?))
            }
            (Agreement::PostQuantum, _) => return Err(E2eError::ClassicalRefused),
        };
        let peer = VerifyingKey::from_bytes(&key32(&message.identity_key)?)
            .map_err(|_| E2eError::BadKey)?;
        x3dh::verify_identity_dh(
            &peer,
            &message.identity_dh_key,
            &message.identity_dh_signature,
        )?;
        let peer_dh = PublicKey::from(key32(&message.identity_dh_key)?);
        let ephemeral = PublicKey::from(canonical_x25519(&message.ephemeral_key)?);
        let signed = prekeys
            .signed(message.signed_prekey_id)
            .ok_or(E2eError::UnknownPrekey)?
            .clone();
        let one_time = match message.one_time_prekey_id {
            Some(id) => Some(prekeys.one_time(id).ok_or(E2eError::UnknownPrekey)?),
            None => None,
        };
        let pq_key = match &pq {
            Some((id, ciphertext)) => {
                let (key, kind) = prekeys.pq(*id).ok_or(E2eError::UnknownPrekey)?;
                Some((key, ciphertext, kind))
            }
            None => None,
        };
        let shared = x3dh::respond(
            me,
            &signed,
            one_time,
            &peer_dh,
            &ephemeral,
            pq_key.as_ref().map(|(key, ct, _)| (*key, *ct)),
        )?;
        let used_pq_one_time = match pq_key {
            Some((_, _, PqPrekeyKind::OneTime)) => pq.as_ref().map(|(id, _)| *id),
            _ => None,
        };
        let ad = x3dh::associated_data(&peer_dh, &me.dh_public(), &peer, &me.public_key());
        let mut session = Session {
            ratchet: DoubleRatchet::init_bob(*shared, signed),
            ad,
            pending_prekey: None,
            base_key: ephemeral.to_bytes(),
            peer_identity: peer.to_bytes(),
            post_quantum: agreement == Agreement::PostQuantum,
        };
        let inner = message.message.as_ref().ok_or(E2eError::Malformed)?;
        let plaintext = session.decrypt(inner)?;
        if let Some(id) = message.one_time_prekey_id {
            prekeys.consume_one_time(id);
        }
        if let Some(id) = used_pq_one_time {
            prekeys.consume_pq_one_time(id);
        }
        Ok((session, plaintext))
    }

    /// Encrypts one message; the result goes into a secret envelope as-is.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<v1::SecretPayload, E2eError> {
        let (header, ciphertext) = self.ratchet.encrypt(&self.ad, plaintext)?;
        let message = v1::RatchetMessage {
            header: header.encode().to_vec().into(),
            ciphertext: ciphertext.into(),
        };
        let kind = match &self.pending_prekey {
            None => secret_payload::Kind::Message(message),
            Some(p) => secret_payload::Kind::Prekey(v1::PrekeyMessage {
                identity_key: p.identity_key.to_vec().into(),
                identity_dh_key: p.identity_dh_key.to_vec().into(),
                identity_dh_signature: p.identity_dh_signature.clone().into(),
                ephemeral_key: p.ephemeral_key.to_vec().into(),
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
                message: Some(message),
                pq_ciphertext: p.pq_ciphertext.clone().into(),
                pq_prekey_id: p.pq_prekey_id,
            }),
        };
        Ok(v1::SecretPayload { kind: Some(kind) })
    }

    /// Decrypts one ratchet message. On error the session is unchanged.
    pub fn decrypt(
        &mut self,
        message: &v1::RatchetMessage,
    ) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let header = Header::decode(&message.header).ok_or(E2eError::Malformed)?;
        let plaintext = self
            .ratchet
            .decrypt(&self.ad, &header, &message.ciphertext)?;
        // The peer has the session: no need to send the X3DH header any more.
        self.pending_prekey = None;
        Ok(plaintext)
    }

    /// True while we started this session and the peer has not answered yet
    /// (our messages still carry the X3DH header).
    pub fn is_unanswered(&self) -> bool {
        self.pending_prekey.is_some()
    }

    /// The X3DH run this session came from (the initiator's ephemeral key).
    pub fn base_key(&self) -> [u8; 32] {
        self.base_key
    }

    /// True when this session was set up with PQXDH (false: classical X3DH,
    /// by a version before it).
    pub fn is_post_quantum(&self) -> bool {
        self.post_quantum
    }

    /// The peer's identity key this session was set up with.
    pub fn peer_identity(&self) -> [u8; 32] {
        self.peer_identity
    }

    #[cfg(test)]
    pub(super) fn ratchet(&self) -> &DoubleRatchet {
        &self.ratchet
    }
}

fn key32(bytes: &[u8]) -> Result<[u8; 32], E2eError> {
    bytes.try_into().map_err(|_| E2eError::Malformed)
}

/// An X25519 public key in its one canonical encoding: below 2^255 - 19,
/// top bit clear. X25519 ignores the top bit and reduces the rest, so other
/// encodings name the same key: a first message whose (unsigned) ephemeral
/// key was re-encoded would set up the same session under another base key,
/// past the check that refuses a replayed first message. (Found by the
/// `ratchet` fuzz target.)
fn canonical_x25519(bytes: &[u8]) -> Result<[u8; 32], E2eError> {
    let key = key32(bytes)?;
    // Little-endian: at or above p = 2^255 - 19 means the top byte is 0x7f,
    // the 30 bytes below it 0xff, and the lowest at least 0xed.
    let at_least_p = key[31] == 0x7f && key[1..31].iter().all(|b| *b == 0xff) && key[0] >= 0xed;
    if key[31] & 0x80 != 0 || at_least_p {
        return Err(E2eError::BadKey);
    }
    Ok(key)
}
