//! Warrants the relay holds: those waiting for the operators' review, and
//! every warrant served since review came, with its disclosure as it was
//! sealed (so a fetch again is the same bytes), sealed padded in the
//! `Warrants` tree under the keyed blind of (authority, warrant id).
//!
//! Invariant: a held warrant is `Pending` until enough different operators
//! approved it, then `Disclosed` (its parts stored with it in one batch), or
//! `Rejected`, which is final. Nothing of a pending warrant is disclosed.

use std::collections::BTreeMap;
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
    /// Deliveries made (0 for one disclosed before deliveries: then its
    /// disclosure is delivery 1, and final), each kept as it was sealed.
    #[prost(uint64, tag = "15")]
    pub deliveries: u64,
    /// Where the last delivery ended (milliseconds): the next starts there.
    #[prost(int64, tag = "16")]
    pub delivered_until: i64,
    /// The last delivery was final: the window had ended, all of it delivered.
    #[prost(bool, tag = "17")]
    pub finished: bool,
    /// How many deliveries were handed out as "the next" (`Collect` without a number).
    #[prost(uint64, tag = "18")]
    pub collected: u64,
    /// The parts of deliveries 2, 3, … (delivery 1's are `parts`).
    #[prost(uint32, repeated, tag = "19")]
    pub delivery_parts: Vec<u32>,
    /// When the people disclosed are told (seconds since the epoch; 0 in
    /// warrants held before notices: then the relay's default delay).
    #[prost(int64, tag = "20")]
    pub notify_after: i64,
    /// How many times the authority postponed the notices.
    #[prost(uint32, tag = "21")]
    pub extensions: u32,
    /// In how many disclosed records each person appeared, over every
    /// delivery: targets by name, everyone else by pseudonym.
    #[prost(btree_map = "string, uint64", tag = "22")]
    pub appeared: BTreeMap<String, u64>,
    /// Pseudonyms revealed under the warrant whose people are not told yet → names.
    #[prost(btree_map = "string, string", tag = "23")]
    pub unmasked: BTreeMap<String, String>,
    /// When the targets were told (milliseconds; 0 until then), and how
    /// many people were told in all.
    #[prost(int64, tag = "24")]
    pub notified_at: i64,
    #[prost(uint64, tag = "25")]
    pub notified: u64,
    /// The audit index, plus one, of notices logged and not all written yet
    /// (0: none): written again under the same id, never logged twice.
    #[prost(uint64, tag = "26")]
    pub notice_pending: u64,
}

impl HeldWarrant {
    /// Deliveries made so far.
    pub fn made(&self) -> u64 {
        match (self.stage(), self.deliveries) {
            (Stage::Disclosed, 0) => 1,
            (_, made) => made,
        }
    }

    /// Whether its last delivery was made.
    pub fn all_delivered(&self) -> bool {
        self.finished || (self.stage() == Stage::Disclosed && self.deliveries == 0)
    }

    /// How many parts delivery `delivery` has, if it was made.
    fn parts_of(&self, delivery: u64) -> Option<u32> {
        match delivery {
            1 if self.made() >= 1 => Some(self.parts),
            0 | 1 => None,
            n => usize::try_from(n - 2)
                .ok()
                .and_then(|i| self.delivery_parts.get(i).copied()),
        }
    }

    /// Adds a delivery's appearances to the warrant's.
    pub fn add_appeared(&mut self, appeared: &BTreeMap<String, u64>) {
        for (name, count) in appeared {
            let total = self.appeared.entry(name.clone()).or_insert(0);
            *total = total.saturating_add(*count);
        }
    }

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
/// Parts of deliveries after the first.
const DELIVERY_PART: &[u8] = b"dpart\0";
/// The most held warrants listed at once.
pub(crate) const MAX_LISTED: usize = 10_000;
/// A held warrant's key in the store (see [`HeldWarrants::page`]).
pub(crate) type Key = Vec<u8>;
/// A held warrant read from the store, or why it could not be.
pub(crate) type Opened = Result<HeldWarrant, RelayError>;

impl HeldWarrants {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        HeldWarrants { store, sealer }
    }

    fn key(&self, authority: &str, warrant_id: &str) -> Vec<u8> {
        let mut key = HELD.to_vec();
        key.extend_from_slice(&warrant_blind(&self.sealer, authority, warrant_id));
        key
    }

    fn part_key(&self, authority: &str, warrant_id: &str, delivery: u64, part: u32) -> Vec<u8> {
        let mut key = if delivery <= 1 { PART } else { DELIVERY_PART }.to_vec();
        key.extend_from_slice(&warrant_blind(&self.sealer, authority, warrant_id));
        if delivery > 1 {
            key.extend_from_slice(&delivery.to_be_bytes());
        }
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

    /// Writes `held` over what was kept, with its first delivery's parts if
    /// given, in one batch. Not yet durable.
    pub fn update(&self, held: &HeldWarrant, parts: &[v1::SealedBundle]) -> Result<(), RelayError> {
        self.deliver(held, 1, parts)
    }

    /// Writes `held` over what was kept, with the parts of its delivery
    /// number `delivery`, in one batch. Not yet durable.
    pub fn deliver(
        &self,
        held: &HeldWarrant,
        delivery: u64,
        parts: &[v1::SealedBundle],
    ) -> Result<(), RelayError> {
        let mut batch = Batch::default();
        for (n, part) in parts.iter().enumerate() {
            let n = u32::try_from(n).map_err(|_| RelayError::Corrupt("a disclosure's parts"))?;
            let pkey = self.part_key(&held.authority, &held.warrant_id, delivery, n);
            let sealed = self
                .sealer
                .seal_padded(Tree::Warrants, &pkey, &part.encode_to_vec());
            batch.put(Tree::Warrants, pkey, sealed);
        }
        self.put(&mut batch, held);
        self.store.apply(batch)?;
        Ok(())
    }

    /// Adds writing `held` over what was kept to `batch`.
    pub fn put(&self, batch: &mut Batch, held: &HeldWarrant) {
        let key = self.key(&held.authority, &held.warrant_id);
        let sealed = self
            .sealer
            .seal_padded(Tree::Warrants, &key, &held.encode_to_vec());
        batch.put(Tree::Warrants, key, sealed);
    }

    /// Applies `batch`. Not yet durable.
    pub fn apply(&self, batch: Batch) -> Result<(), RelayError> {
        self.store.apply(batch)?;
        Ok(())
    }

    /// Applies `batch`, on stable storage when this returns.
    pub fn apply_durably(&self, batch: Batch) -> Result<(), RelayError> {
        self.store.apply(batch)?;
        self.store.flush()?;
        Ok(())
    }

    /// The sealed parts of delivery `delivery` of a disclosed warrant, as
    /// they were handed out first; `None` if it was not made.
    pub fn delivery(
        &self,
        held: &HeldWarrant,
        delivery: u64,
    ) -> Result<Option<Vec<v1::SealedBundle>>, RelayError> {
        let Some(parts) = held.parts_of(delivery) else {
            return Ok(None);
        };
        (0..parts)
            .map(|n| {
                let key = self.part_key(&held.authority, &held.warrant_id, delivery, n);
                let sealed = self
                    .store
                    .get(Tree::Warrants, &key)?
                    .ok_or(RelayError::Corrupt("a disclosure's part is missing"))?;
                let plain = self.sealer.open_padded(Tree::Warrants, &key, &sealed)?;
                v1::SealedBundle::decode(plain.as_slice())
                    .map_err(|_| RelayError::Corrupt("a disclosure's part"))
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Every held warrant, oldest first (at most [`MAX_LISTED`]).
    /// Up to `limit` held warrants (each opened, or why not) with keys
    /// after `after` (from the first if `None`), in key order, and the key
    /// to go on after if there may be more: unlike [`HeldWarrants::all`],
    /// a walk through these pages sees every held warrant, however many.
    pub fn page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Opened>, Option<Key>), RelayError> {
        let from = match after {
            // The first key after `after`.
            Some(key) => [key, &[0]].concat(),
            None => HELD.to_vec(),
        };
        let entries = self.store.range(Tree::Warrants, &from, HELD_END, limit)?;
        let next = if entries.len() < limit {
            None
        } else {
            entries.last().map(|(key, _)| key.clone())
        };
        let held = entries
            .iter()
            .map(|(key, sealed)| self.open(key, sealed))
            .collect();
        Ok((held, next))
    }

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
