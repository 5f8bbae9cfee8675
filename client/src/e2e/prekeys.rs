//! The private halves of this device's prekeys, kept in the vault: the signed
//! prekey and, made and rotated with it, the last-resort ML-KEM-1024 prekey
//! (weekly; the previous ones are kept a while for messages already under
//! way), and the one-time prekeys of both kinds (each used once, then deleted).
//! Ids are one sequence over every kind, so no two prekeys share an id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sotto_proto::v1;

use super::kem_key::KemKeyPair;
use super::ratchet_key::RatchetKeyPair;
use crate::identity::Identity;

/// How many one-time prekeys an upload tops the relay up to.
pub const ONE_TIME_BATCH: usize = 100;
/// A signed prekey older than this is replaced.
pub const SIGNED_PREKEY_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;
/// How many signed prekeys are kept (the current one and the one before).
const SIGNED_PREKEYS_KEPT: usize = 2;

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct LocalPrekeys {
    signed: Vec<SignedPrekeySecret>,
    one_time: BTreeMap<u32, RatchetKeyPair>,
    next_id: u32,
    /// Last-resort ML-KEM-1024 prekeys, newest last (a vault from before
    /// PQXDH has none: the next rotation makes one).
    #[serde(default)]
    pq_last_resort: Vec<PqPrekeySecret>,
    #[serde(default)]
    pq_one_time: BTreeMap<u32, PqPrekeySecret>,
}

#[derive(Clone, Serialize, Deserialize)]
struct PqPrekeySecret {
    id: u32,
    key: KemKeyPair,
    signature: Vec<u8>,
    created_at: i64,
}

impl PqPrekeySecret {
    fn generate(id: u32, identity: &Identity, created_at: i64) -> Self {
        let key = KemKeyPair::generate();
        let signature = identity
            .sign(&sotto_proto::transcript::pq_prekey(
                id,
                key.public().as_bytes(),
            ))
            .to_bytes()
            .to_vec();
        PqPrekeySecret {
            id,
            key,
            signature,
            created_at,
        }
    }

    fn public(&self) -> v1::PqPrekey {
        v1::PqPrekey {
            id: self.id,
            public_key: self.key.public().as_bytes().to_vec().into(),
            signature: self.signature.clone().into(),
            created_at: self.created_at,
        }
    }
}

/// Which PQ prekey a first message named.
pub(super) enum PqPrekeyKind {
    LastResort,
    OneTime,
}

#[derive(Clone, Serialize, Deserialize)]
struct SignedPrekeySecret {
    id: u32,
    key: RatchetKeyPair,
    signature: Vec<u8>,
    created_at: i64,
}

impl LocalPrekeys {
    fn next_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// True when there is no signed prekey (or no last-resort PQ prekey) yet,
    /// or the current one is a week old.
    pub fn signed_prekey_due(&self, now_ms: i64) -> bool {
        self.pq_last_resort.is_empty()
            || self
                .signed
                .last()
                .is_none_or(|s| now_ms - s.created_at >= SIGNED_PREKEY_LIFETIME_MS)
    }

    /// Makes a new signed prekey and a new last-resort ML-KEM-1024 prekey,
    /// keeping the previous ones for late messages.
    pub fn rotate_signed(&mut self, identity: &Identity, now_ms: i64) {
        let pq_id = self.next_id();
        self.pq_last_resort
            .push(PqPrekeySecret::generate(pq_id, identity, now_ms));
        while self.pq_last_resort.len() > SIGNED_PREKEYS_KEPT {
            self.pq_last_resort.remove(0);
        }
        let id = self.next_id();
        let key = RatchetKeyPair::generate();
        let signature = identity
            .sign(&sotto_proto::transcript::signed_prekey(
                key.public().as_bytes(),
            ))
            .to_bytes()
            .to_vec();
        self.signed.push(SignedPrekeySecret {
            id,
            key,
            signature,
            created_at: now_ms,
        });
        while self.signed.len() > SIGNED_PREKEYS_KEPT {
            self.signed.remove(0);
        }
    }

    /// Makes `count` one-time prekeys and returns their public halves.
    pub fn generate_one_time(&mut self, count: usize) -> Vec<v1::OneTimePrekey> {
        (0..count)
            .map(|_| {
                let id = self.next_id();
                let key = RatchetKeyPair::generate();
                let public = key.public().as_bytes().to_vec();
                self.one_time.insert(id, key);
                v1::OneTimePrekey {
                    id,
                    public_key: public.into(),
                }
            })
            .collect()
    }

    /// Makes `count` signed one-time ML-KEM-1024 prekeys and returns their public halves.
    pub fn generate_pq_one_time(&mut self, identity: &Identity, count: usize) -> Vec<v1::PqPrekey> {
        (0..count)
            .map(|_| {
                let id = self.next_id();
                let key = PqPrekeySecret::generate(id, identity, 0);
                let public = key.public();
                self.pq_one_time.insert(id, key);
                public
            })
            .collect()
    }

    /// The upload request for the current signed prekey, the current
    /// last-resort PQ prekey, and new one-time keys of both kinds.
    pub fn upload(
        &self,
        identity: &Identity,
        one_time: Vec<v1::OneTimePrekey>,
        pq_one_time: Vec<v1::PqPrekey>,
    ) -> Option<v1::UploadPrekeys> {
        let signed = self.signed.last()?;
        let pq_last_resort = self.pq_last_resort.last()?;
        let dh = identity.dh_public();
        Some(v1::UploadPrekeys {
            identity_dh_key: dh.as_bytes().to_vec().into(),
            identity_dh_signature: identity
                .sign(&sotto_proto::transcript::identity_dh(dh.as_bytes()))
                .to_bytes()
                .to_vec()
                .into(),
            signed_prekey: Some(v1::SignedPrekey {
                id: signed.id,
                public_key: signed.key.public().as_bytes().to_vec().into(),
                signature: signed.signature.clone().into(),
                created_at: signed.created_at,
            }),
            one_time,
            pq_last_resort: Some(pq_last_resort.public()),
            pq_one_time,
        })
    }

    pub(super) fn signed(&self, id: u32) -> Option<&RatchetKeyPair> {
        self.signed.iter().find(|s| s.id == id).map(|s| &s.key)
    }

    pub(super) fn one_time(&self, id: u32) -> Option<&RatchetKeyPair> {
        self.one_time.get(&id)
    }

    /// Deletes a used one-time prekey: it can never set up a session again.
    pub(super) fn consume_one_time(&mut self, id: u32) {
        self.one_time.remove(&id);
    }

    /// The ML-KEM-1024 prekey with this id (one-time or last-resort), and which it is.
    pub(super) fn pq(&self, id: u32) -> Option<(&KemKeyPair, PqPrekeyKind)> {
        if let Some(k) = self.pq_one_time.get(&id) {
            return Some((&k.key, PqPrekeyKind::OneTime));
        }
        self.pq_last_resort
            .iter()
            .find(|k| k.id == id)
            .map(|k| (&k.key, PqPrekeyKind::LastResort))
    }

    /// Deletes a used one-time PQ prekey (a last-resort one is kept until rotated).
    pub(super) fn consume_pq_one_time(&mut self, id: u32) {
        self.pq_one_time.remove(&id);
    }

    /// The public halves of the one-time PQ prekeys held now, oldest first.
    pub fn pq_one_time_public(&self) -> Vec<v1::PqPrekey> {
        self.pq_one_time.values().map(|k| k.public()).collect()
    }

    pub fn pq_one_time_count(&self) -> usize {
        self.pq_one_time.len()
    }

    /// The public halves of the one-time prekeys held now, oldest first.
    pub fn one_time_public(&self) -> Vec<v1::OneTimePrekey> {
        self.one_time
            .iter()
            .map(|(id, key)| v1::OneTimePrekey {
                id: *id,
                public_key: key.public().as_bytes().to_vec().into(),
            })
            .collect()
    }

    pub fn one_time_count(&self) -> usize {
        self.one_time.len()
    }
}
