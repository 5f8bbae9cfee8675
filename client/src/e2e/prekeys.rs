//! The private halves of this device's prekeys, kept in the vault: the signed
//! prekey (rotated weekly; the previous one is kept a while for messages
//! already under way) and the one-time prekeys (each used once, then deleted).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sotto_proto::v1;

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

    /// True when there is no signed prekey yet or the current one is a week old.
    pub fn signed_prekey_due(&self, now_ms: i64) -> bool {
        self.signed
            .last()
            .is_none_or(|s| now_ms - s.created_at >= SIGNED_PREKEY_LIFETIME_MS)
    }

    /// Makes a new signed prekey, keeping the previous one for late messages.
    pub fn rotate_signed(&mut self, identity: &Identity, now_ms: i64) {
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

    /// The upload request for the current signed prekey and `one_time` new keys.
    pub fn upload(
        &self,
        identity: &Identity,
        one_time: Vec<v1::OneTimePrekey>,
    ) -> Option<v1::UploadPrekeys> {
        let signed = self.signed.last()?;
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
