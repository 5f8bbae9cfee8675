//! Warrants the relay holds: those waiting for the operators' review, and
//! every warrant served since review came, with its disclosure as it was
//! sealed (so a fetch again is the same bytes), sealed padded in the
//! `Warrants` tree under the keyed blind of (authority, warrant id).
//!
//! Invariant: a held warrant is `Pending` until enough different operators
//! approved it, then `Disclosed` (its parts stored with it in one batch), or
//! `Rejected`, which is final. Nothing of a pending warrant is disclosed.

use std::sync::Arc;

use prost::Message;
use sotto_proto::v1;

use super::grants::warrant_blind;
use crate::RelayError;
use crate::seal::Sealer;
use crate::store::{Applied, Batch, Store, Tree};

/// Where a held warrant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum Stage {
    Pending = 0,
    Disclosed = 1,
    Rejected = 2,
}

/// A held warrant, as the relay keeps it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct HeldWarrant {
    /// The `SignedWarrant` as the investigator sent it (encoded).
    #[prost(bytes = "vec", tag = "1")]
    pub signed: Vec<u8>,
    #[prost(string, tag = "2")]
    pub authority: String,
    #[prost(string, tag = "3")]
    pub warrant_id: String,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub held_at: i64,
    /// The operators who approved it, each once.
    #[prost(string, repeated, tag = "5")]
    pub approved_by: Vec<String>,
    #[prost(enumeration = "Stage", tag = "6")]
    pub stage: i32,
    /// Who rejected it, and why.
    #[prost(string, tag = "7")]
    pub rejected_by: String,
    #[prost(string, tag = "8")]
    pub reason: String,
    /// When it was disclosed or rejected (milliseconds since the epoch).
    #[prost(int64, tag = "9")]
    pub decided_at: i64,
    /// How many sealed parts its disclosure has.
    #[prost(uint32, tag = "10")]
    pub parts: u32,
    /// How many approvals it needed when it was held.
    #[prost(uint32, tag = "11")]
    pub approvals_needed: u32,
    /// What its disclosure held: records, conversations, pseudonyms.
    #[prost(uint64, tag = "12")]
    pub records: u64,
    #[prost(uint64, tag = "13")]
    pub conversations: u64,
    #[prost(uint64, tag = "14")]
    pub pseudonyms: u64,
}

impl HeldWarrant {
    pub fn signed_warrant(&self) -> Result<v1::SignedWarrant, RelayError> {
        v1::SignedWarrant::decode(self.signed.as_slice())
            .map_err(|_| RelayError::Corrupt("a held warrant"))
    }
}

pub(crate) struct HeldWarrants {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

const HELD: &[u8] = b"held\0";
const HELD_END: &[u8] = b"held\x01";
const PART: &[u8] = b"part\0";
/// The most held warrants listed at once.
pub(crate) const MAX_LISTED: usize = 10_000;

impl HeldWarrants {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        HeldWarrants { store, sealer }
    }

    fn key(&self, authority: &str, warrant_id: &str) -> Vec<u8> {
        let mut key = HELD.to_vec();
        key.extend_from_slice(&warrant_blind(&self.sealer, authority, warrant_id));
        key
    }

    fn part_key(&self, authority: &str, warrant_id: &str, part: u32) -> Vec<u8> {
        let mut key = PART.to_vec();
        key.extend_from_slice(&warrant_blind(&self.sealer, authority, warrant_id));
        key.extend_from_slice(&part.to_be_bytes());
        key
    }

    fn open(&self, key: &[u8], sealed: &[u8]) -> Result<HeldWarrant, RelayError> {
        HeldWarrant::decode(
            self.sealer
                .open_padded(Tree::Warrants, key, sealed)?
                .as_slice(),
        )
        .map_err(|_| RelayError::Corrupt("a held warrant"))
    }

    pub fn get(
        &self,
        authority: &str,
        warrant_id: &str,
    ) -> Result<Option<HeldWarrant>, RelayError> {
        let key = self.key(authority, warrant_id);
        match self.store.get(Tree::Warrants, &key)? {
            Some(sealed) => Ok(Some(self.open(&key, &sealed)?)),
            None => Ok(None),
        }
    }

    /// Holds a warrant not held before: `false` (nothing written) when it is. Not yet durable.
    pub fn hold(&self, held: &HeldWarrant) -> Result<bool, RelayError> {
        let key = self.key(&held.authority, &held.warrant_id);
        let sealed = self
            .sealer
            .seal_padded(Tree::Warrants, &key, &held.encode_to_vec());
        Ok(matches!(
            self.store
                .apply(Batch::guarded(Tree::Warrants, key, sealed))?,
            Applied::Written
        ))
    }

    /// Writes `held` over what was kept, with its disclosure's parts if
    /// given, in one batch. Not yet durable.
    pub fn update(&self, held: &HeldWarrant, parts: &[v1::SealedBundle]) -> Result<(), RelayError> {
        let key = self.key(&held.authority, &held.warrant_id);
        let mut batch = Batch::default();
        for (n, part) in parts.iter().enumerate() {
            let n = u32::try_from(n).map_err(|_| RelayError::Corrupt("a disclosure's parts"))?;
            let pkey = self.part_key(&held.authority, &held.warrant_id, n);
            let sealed = self
                .sealer
                .seal_padded(Tree::Warrants, &pkey, &part.encode_to_vec());
            batch.put(Tree::Warrants, pkey, sealed);
        }
        let sealed = self
            .sealer
            .seal_padded(Tree::Warrants, &key, &held.encode_to_vec());
        batch.put(Tree::Warrants, key, sealed);
        self.store.apply(batch)?;
        Ok(())
    }

    /// The sealed parts of a disclosed warrant, as they were handed out first.
    pub fn parts(&self, held: &HeldWarrant) -> Result<Vec<v1::SealedBundle>, RelayError> {
        (0..held.parts)
            .map(|n| {
                let key = self.part_key(&held.authority, &held.warrant_id, n);
                let sealed = self
                    .store
                    .get(Tree::Warrants, &key)?
                    .ok_or(RelayError::Corrupt("a disclosure's part is missing"))?;
                let plain = self.sealer.open_padded(Tree::Warrants, &key, &sealed)?;
                v1::SealedBundle::decode(plain.as_slice())
                    .map_err(|_| RelayError::Corrupt("a disclosure's part"))
            })
            .collect()
    }

    /// Every held warrant, oldest first (at most [`MAX_LISTED`]).
    pub fn all(&self) -> Result<Vec<HeldWarrant>, RelayError> {
        let mut all = self
            .store
            .range(Tree::Warrants, HELD, HELD_END, MAX_LISTED)?
            .iter()
            .map(|(key, sealed)| self.open(key, sealed))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by_key(|h| h.held_at);
        Ok(all)
    }
}
