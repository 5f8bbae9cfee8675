//! The secret queue: end-to-end encrypted envelopes waiting for their recipient.
//!
//! Invariants: an envelope is ciphertext made on the sender's device; the relay
//! keeps it only until the recipient acknowledges it or its time-to-live ends,
//! and it is never part of the normal archive or its history. This queue is a
//! separate set of trees from the archive, and the warrant module has no way to
//! reach it (see `crate::warrant`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use prost::Message;
use sotto_proto::v1;

use crate::accounts::blind_user;
use crate::records::{SecretBodyRecord, SecretEnvelopeRecord};
use crate::seal::Sealer;
use crate::store::{Applied, Batch, Op, Store, Tree};

pub mod cluster;
use crate::{RelayError, now_ms};
pub use cluster::ClusterSecretQueue;

pub struct SecretQueue {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// What is queued, for duplicates and time-to-live; also serialises writers.
    index: Mutex<Index>,
    /// Where every recipient's ids start (see [`SecretQueue::open`]).
    id_base: u64,
    quota: Quota,
}

/// blind(sender) ‖ client id.
type DedupKey = [u8; 32];

/// blind(recipient) ‖ the recipient's envelope id: how the index names an
/// envelope. The store's key is a blind of it ([`SecretQueue::store_key`]),
/// so `db/` tells neither whose an envelope is nor its id.
type QueueKey = [u8; 24];

/// Layout 1 of the queue stored envelopes under their [`QueueKey`] itself.
const OLD_KEY_LEN: usize = 24;

/// A secret group message's body (its ciphertext, kept once for all its
/// recipients) is stored under `body` ‖ its random id.
const BODY: &[u8] = b"body";
type BodyId = [u8; 16];

fn body_key(id: &BodyId) -> Vec<u8> {
    [BODY, id.as_slice()].concat()
}

fn body_of(record: &SecretEnvelopeRecord) -> Result<Option<BodyId>, RelayError> {
    match record.body.len() {
        0 => Ok(None),
        _ => record
            .body
            .as_slice()
            .try_into()
            .map(Some)
            .map_err(|_| RelayError::Corrupt("a secret envelope's body id")),
    }
}

/// Marks, in the meta tree, where per-recipient envelope ids start.
pub(crate) const ID_BASE_KEY: &[u8] = b"secret_id_base";

fn queue_key(recipient: &[u8; 16], id: u64) -> QueueKey {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(recipient);
    key[16..].copy_from_slice(&id.to_be_bytes());
    key
}

/// The index's name for a stored envelope, from what is sealed in it.
fn queue_key_of(record: &SecretEnvelopeRecord) -> Result<QueueKey, RelayError> {
    let recipient: [u8; 16] = record
        .recipient
        .as_slice()
        .try_into()
        .map_err(|_| RelayError::Corrupt("a secret envelope's recipient"))?;
    Ok(queue_key(&recipient, record.id))
}

fn id_of(key: &QueueKey) -> u64 {
    u64::from_be_bytes(key[16..].try_into().expect("eight bytes"))
}

/// The queue's index, in memory only: one key per envelope is all the queue
/// writes, and [`SecretQueue::open`] rebuilds this from the queue itself.
#[derive(Default)]
struct Index {
    by_dedup: HashMap<DedupKey, QueueKey>,
    /// Each recipient's envelope ids, in order.
    by_recipient: HashMap<[u8; 16], BTreeSet<u64>>,
    by_key: HashMap<QueueKey, Waiting>,
    by_expiry: BTreeSet<(i64, QueueKey)>,
    /// What waits for each recipient, and from each sender to each
    /// recipient, against their quotas.
    usage: HashMap<[u8; 16], Usage>,
    pairs: HashMap<Pair, Usage>,
    /// What waits for everyone.
    total: Usage,
    /// Envelopes whose write failed (and may be on disk all the same), by
    /// duplicate key: a retry deletes them. Bounded; see [`ABANDONED`].
    abandoned: HashMap<DedupKey, QueueKey>,
    /// Recipients' last envelope ids and their ceilings as written, so that
    /// a send reads no counter from the store. Bounded; see [`KNOWN_COUNTERS`].
    counters: HashMap<[u8; 16], Counter>,
    /// How many waiting envelopes refer to each group message body: it is
    /// deleted with the last of them.
    bodies: HashMap<BodyId, u32>,
}

/// At most this many recipients' last ids are kept in memory (the others are
/// read from the store when next needed).
const KNOWN_COUNTERS: usize = 65_536;

/// How far ahead of a recipient's last envelope id its stored counter is
/// set: the store holds a ceiling, written once per this many ids rather
/// than with every envelope, and a queue opened again counts on from it
/// (skipping what the ceiling held in reserve). As the store's own id
/// ceiling does.
const COUNTER_BLOCK: u64 = 1024;

/// A recipient's last envelope id, and the ceiling the store holds for it.
#[derive(Debug, Clone, Copy)]
struct Counter {
    last: u64,
    ceiling: u64,
}

/// At most this many failed envelopes are remembered for their retries.
const ABANDONED: usize = 10_000;

struct Waiting {
    dedup: DedupKey,
    expires_at: i64,
    bytes: u64,
    body: Option<BodyId>,
}

/// Envelopes and their bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub envelopes: u64,
    pub bytes: u64,
}

impl Usage {
    fn add(&mut self, bytes: u64) {
        self.envelopes += 1;
        self.bytes += bytes;
    }

    fn sub(&mut self, bytes: u64) {
        self.envelopes = self.envelopes.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Whether one more envelope of `bytes` fits under `limit`, with what
    /// waits and what this call adds.
    fn fits(self, staged: Usage, bytes: u64, limit: Usage) -> bool {
        self.envelopes + staged.envelopes < limit.envelopes
            && self.bytes + staged.bytes + bytes <= limit.bytes
    }
}

/// How much may wait: for one recipient, from one sender to one recipient,
/// and in the whole queue.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub recipient: Usage,
    pub pair: Usage,
    pub total: Usage,
}

/// Which quota an envelope did not fit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Recipient,
    FromSender,
    Relay,
}

/// blind(sender) ‖ blind(recipient).
type Pair = [u8; 32];

/// What waits under `key`, and what the current call adds to it.
fn usage<K: Eq + std::hash::Hash>(
    waiting: &HashMap<K, Usage>,
    staged: &HashMap<K, Usage>,
    key: &K,
) -> (Usage, Usage) {
    (
        waiting.get(key).copied().unwrap_or_default(),
        staged.get(key).copied().unwrap_or_default(),
    )
}

fn recipient_of(key: &QueueKey) -> [u8; 16] {
    key[..16].try_into().expect("sixteen bytes")
}

fn pair_of(dedup: &DedupKey, key: &QueueKey) -> Pair {
    let mut pair = [0u8; 32];
    pair[..16].copy_from_slice(&dedup[..16]);
    pair[16..].copy_from_slice(&key[..16]);
    pair
}

impl Index {
    fn remember_counter(&mut self, recipient: [u8; 16], counter: Counter) {
        if self.counters.len() >= KNOWN_COUNTERS && !self.counters.contains_key(&recipient) {
            self.counters.clear();
        }
        self.counters.insert(recipient, counter);
    }

    fn insert(&mut self, key: QueueKey, waiting: Waiting) {
        self.usage
            .entry(recipient_of(&key))
            .or_default()
            .add(waiting.bytes);
        self.pairs
            .entry(pair_of(&waiting.dedup, &key))
            .or_default()
            .add(waiting.bytes);
        self.total.add(waiting.bytes);
        self.by_recipient
            .entry(recipient_of(&key))
            .or_default()
            .insert(id_of(&key));
        self.by_dedup.insert(waiting.dedup, key);
        self.by_expiry.insert((waiting.expires_at, key));
        if let Some(body) = waiting.body {
            *self.bodies.entry(body).or_insert(0) += 1;
        }
        self.by_key.insert(key, waiting);
    }

    /// The bodies that deleting the envelopes `keys` leaves unreferenced.
    fn bodies_freed_by(&self, keys: &[QueueKey]) -> Vec<BodyId> {
        let mut dropping: HashMap<BodyId, u32> = HashMap::new();
        for key in keys {
            if let Some(body) = self.by_key.get(key).and_then(|w| w.body) {
                *dropping.entry(body).or_insert(0) += 1;
            }
        }
        dropping
            .into_iter()
            .filter(|(body, n)| self.bodies.get(body) == Some(n))
            .map(|(body, _)| body)
            .collect()
    }

    fn remove(&mut self, key: &QueueKey) {
        if let Some(w) = self.by_key.remove(key) {
            if let Some(body) = w.body
                && let Some(refs) = self.bodies.get_mut(&body)
            {
                *refs = refs.saturating_sub(1);
                if *refs == 0 {
                    self.bodies.remove(&body);
                }
            }
            self.by_dedup.remove(&w.dedup);
            self.by_expiry.remove(&(w.expires_at, *key));
            self.total.sub(w.bytes);
            let recipient = recipient_of(key);
            if let Some(ids) = self.by_recipient.get_mut(&recipient) {
                ids.remove(&id_of(key));
                if ids.is_empty() {
                    self.by_recipient.remove(&recipient);
                }
            }
            if let Some(usage) = self.usage.get_mut(&recipient) {
                usage.sub(w.bytes);
                if usage.envelopes == 0 {
                    self.usage.remove(&recipient);
                }
            }
            let pair = pair_of(&w.dedup, key);
            if let Some(usage) = self.pairs.get_mut(&pair) {
                usage.sub(w.bytes);
                if usage.envelopes == 0 {
                    self.pairs.remove(&pair);
                }
            }
        }
    }
}

/// What one call of [`SecretQueue::enqueue_many`] is about to write.
#[derive(Default)]
struct Staging {
    writes: Vec<Op>,
    /// Each recipient's last id after this call.
    counters: HashMap<[u8; 16], Counter>,
    /// The ceilings this call raises: written before its envelopes.
    ceilings: HashMap<[u8; 16], u64>,
    /// Envelopes new in this call, by duplicate key.
    fresh: HashMap<DedupKey, QueueKey>,
    staged: Vec<(QueueKey, Waiting)>,
    /// What this call adds for each recipient, each pair, and in all.
    usage: HashMap<[u8; 16], Usage>,
    pairs: HashMap<Pair, Usage>,
    total: Usage,
}

fn read_u64(bytes: &[u8]) -> Result<u64, RelayError> {
    crate::records::read_u64(bytes, "a secret envelope counter")
}

/// An envelope to queue, already checked by the handler.
pub struct NewSecret {
    pub from: String,
    pub to: String,
    pub client_id: [u8; 16],
    pub ciphertext: Vec<u8>,
    pub ttl_ms: i64,
}

/// A secret group message to queue for each of `recipients`, already
/// checked by the handler: its ciphertext is stored once.
pub struct NewGroupSecret {
    pub from: String,
    pub group: Vec<u8>,
    pub recipients: Vec<String>,
    pub client_id: [u8; 16],
    pub ciphertext: Vec<u8>,
    pub ttl_ms: i64,
}

/// What enqueuing a group message did.
pub enum GroupQueued {
    /// Queued for every recipient: each one's envelope.
    New(Vec<(String, v1::SecretEnvelope)>),
    /// A retry of one queued before (for every recipient that still waits).
    Duplicate,
    /// A quota is used up for `String` (a recipient), or the relay's; nothing was written.
    Full(Full, String),
}

/// One recipient's copy of a group message: its own duplicate key (the
/// sender's blind, and a blind of the client id with the recipient).
struct Copy<'a> {
    body: BodyId,
    group: &'a [u8],
    bytes: u64,
}

/// What enqueuing did.
pub enum Queued {
    New(v1::SecretEnvelope),
    Duplicate(u64),
    /// A quota is used up; nothing was written.
    Full(Full),
}

impl SecretQueue {
    /// Opens the queue in `store` and indexes what waits in it.
    pub fn open(
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        quota: Quota,
    ) -> Result<Self, RelayError> {
        let mut index = Index::default();
        let mut bodies: BTreeSet<BodyId> = BTreeSet::new();
        let mut cursor = Vec::new();
        loop {
            let rows = store.range(Tree::SecretQueue, &cursor, &[0xff; 25], 1024)?;
            let Some((last, _)) = rows.last() else { break };
            cursor = last.clone();
            cursor.push(0);
            let mut upgrades = Vec::new();
            for (key, sealed) in rows {
                if key.len() == BODY.len() + 16 && key.starts_with(BODY) {
                    bodies.insert(key[BODY.len()..].try_into().expect("sixteen bytes"));
                    continue;
                }
                let record = if key.len() == OLD_KEY_LEN {
                    // Layout 1: move it under its blinded key, padded.
                    let mut record = SecretEnvelopeRecord::decode(
                        sealer.open(Tree::SecretQueue, &key, &sealed)?.as_slice(),
                    )?;
                    record.recipient = key[..16].to_vec();
                    let new_key = Self::store_key_with(&sealer, &queue_key_of(&record)?);
                    let sealed =
                        sealer.seal_padded(Tree::SecretQueue, &new_key, &record.encode_to_vec());
                    upgrades.push(Op::Put(Tree::SecretQueue, new_key.to_vec(), sealed));
                    upgrades.push(Op::Delete(Tree::SecretQueue, key));
                    record
                } else {
                    SecretEnvelopeRecord::decode(
                        sealer
                            .open_padded(Tree::SecretQueue, &key, &sealed)?
                            .as_slice(),
                    )?
                };
                let waiting = Waiting {
                    dedup: record
                        .dedup_key
                        .as_slice()
                        .try_into()
                        .map_err(|_| RelayError::Corrupt("a secret envelope's dedup key"))?,
                    expires_at: record.expires_at,
                    bytes: record.ciphertext.len() as u64,
                    body: body_of(&record)?,
                };
                let key = queue_key_of(&record)?;
                // One moved from layout 1 may be met again under its new key.
                if index.by_key.contains_key(&key) {
                    continue;
                }
                // Two copies of one send (a failed write whose retry the
                // relay did not live to clean up): the newer stays.
                if let Some(&other) = index.by_dedup.get(&waiting.dedup) {
                    let (older, _) = if id_of(&other) < id_of(&key) {
                        (other, key)
                    } else {
                        (key, other)
                    };
                    if older == other {
                        index.remove(&other);
                    } else {
                        upgrades.push(Op::Delete(
                            Tree::SecretQueue,
                            Self::store_key_with(&sealer, &key).to_vec(),
                        ));
                        continue;
                    }
                    upgrades.push(Op::Delete(
                        Tree::SecretQueue,
                        Self::store_key_with(&sealer, &other).to_vec(),
                    ));
                }
                index.insert(key, waiting);
            }
            if !upgrades.is_empty() {
                store.apply_each(upgrades)?;
                store.flush()?;
            }
        }
        // Bodies no envelope refers to any more (the relay stopped between
        // deleting the last envelope and its body): deleted now.
        let orphans: Vec<Op> = bodies
            .iter()
            .filter(|body| !index.bodies.contains_key(*body))
            .map(|body| Op::Delete(Tree::SecretQueue, body_key(body)))
            .collect();
        if !orphans.is_empty() {
            store.apply_each(orphans)?;
            store.flush()?;
        }
        let id_base = Self::id_base(&*store)?;
        Ok(SecretQueue {
            store,
            sealer,
            index: Mutex::new(index),
            id_base,
            quota,
        })
    }

    /// Envelope ids count per recipient, so nobody learns the relay-wide
    /// volume from them. They start above every id a relay-wide counter
    /// handed out before (a client remembers the ids it has seen): the
    /// counter's value when the first queue of this kind was opened, once.
    fn id_base(store: &dyn Store) -> Result<u64, RelayError> {
        if let Some(v) = store.get(Tree::Meta, ID_BASE_KEY)? {
            return read_u64(&v);
        }
        let base = store.next_id()?;
        match store.apply(Batch::guarded(
            Tree::Meta,
            ID_BASE_KEY.to_vec(),
            base.to_be_bytes().to_vec(),
        ))? {
            Applied::Written => {
                store.flush()?;
                Ok(base)
            }
            Applied::GuardExists(v) => read_u64(&v),
        }
    }

    /// Where the recipient `blind`'s ids go on from, when memory does not
    /// know: the ceiling the store holds (an older relay's exact last id,
    /// or the id base if none yet), and never below an envelope waiting
    /// for them.
    fn stored_counter(&self, blind: &[u8; 16], index: &Index) -> Result<u64, RelayError> {
        let waiting = index
            .by_recipient
            .get(blind)
            .and_then(|ids| ids.last().copied())
            .unwrap_or(0);
        // Under a key of its own (see `Sealer::tree_key`); an older relay
        // kept it under the blind itself, which is read if the other is not there.
        let key = self.sealer.tree_key(Tree::SecretCounters, blind);
        for at in [&key, blind] {
            if let Some(sealed) = self.store.get(Tree::SecretCounters, at)? {
                let stored = read_u64(&self.sealer.open(Tree::SecretCounters, at, &sealed)?)?;
                return Ok(stored.max(waiting));
            }
        }
        Ok(self.id_base.max(waiting))
    }

    /// Where the envelope `key` names is stored: a keyed blind of it.
    fn store_key(&self, key: &QueueKey) -> [u8; 16] {
        Self::store_key_with(&self.sealer, key)
    }

    fn store_key_with(sealer: &Sealer, key: &QueueKey) -> [u8; 16] {
        sealer.blind("secret envelope", key)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues envelopes, one key each. A retry with the same client id
    /// (while the first is still queued, or earlier in the same call) is not
    /// queued twice. Not yet durable.
    pub fn enqueue_many(&self, envelopes: Vec<NewSecret>) -> Vec<Result<Queued, RelayError>> {
        // One writer at a time, so the duplicate check cannot race another.
        let mut index = self.index();
        let mut staging = Staging::default();
        let results: Vec<_> = envelopes
            .into_iter()
            .map(|e| self.stage(e, None, &index, &mut staging))
            .collect();
        match self.commit(&mut index, staging, None) {
            Ok(()) => results,
            Err(e) => crate::failed_with(results, &e),
        }
    }

    /// Queues a secret group message for each recipient: its ciphertext
    /// once (a body), and in each recipient's queue an envelope that refers
    /// to it. A retry with the same client id queues it only for the
    /// recipients it is not queued for. Not yet durable.
    pub fn enqueue_group(&self, new: NewGroupSecret) -> Result<GroupQueued, RelayError> {
        let mut index = self.index();
        let mut staging = Staging::default();
        let mut body = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut body);
        let copy = Copy {
            body,
            group: &new.group,
            bytes: new.ciphertext.len() as u64,
        };
        let mut queued = Vec::with_capacity(new.recipients.len());
        for to in &new.recipients {
            let one = NewSecret {
                from: new.from.clone(),
                to: to.clone(),
                client_id: new.client_id,
                ciphertext: Vec::new(),
                ttl_ms: new.ttl_ms,
            };
            match self.stage(one, Some(&copy), &index, &mut staging)? {
                Queued::New(envelope) => queued.push((to.clone(), envelope)),
                Queued::Duplicate(_) => {}
                Queued::Full(full) => return Ok(GroupQueued::Full(full, to.clone())),
            }
        }
        if queued.is_empty() {
            return Ok(GroupQueued::Duplicate);
        }
        let sealed = self.sealer.seal_padded(
            Tree::SecretQueue,
            &body_key(&body),
            &SecretBodyRecord {
                ciphertext: new.ciphertext.clone(),
            }
            .encode_to_vec(),
        );
        self.commit(&mut index, staging, Some((body, sealed)))?;
        let ciphertext = bytes::Bytes::from(new.ciphertext);
        for (_, envelope) in &mut queued {
            envelope.ciphertext = ciphertext.clone();
        }
        Ok(GroupQueued::New(queued))
    }

    /// Writes what `staging` holds (and a group message's body, first), and
    /// then indexes it; or, if the write failed, takes back what it can.
    fn commit(
        &self,
        index: &mut Index,
        mut staging: Staging,
        body: Option<(BodyId, Vec<u8>)>,
    ) -> Result<(), crate::store::StoreError> {
        // The body and the raised ceilings go first: the store keeps writes
        // in order, so an envelope found after a crash always has its body
        // and a ceiling at or above its id, and no id is handed out twice.
        // Each envelope stands alone, and nobody hears of it before the
        // flush: no need to write them atomically together.
        let mut writes: Vec<Op> = body
            .iter()
            .map(|(id, sealed)| Op::Put(Tree::SecretQueue, body_key(id), sealed.clone()))
            .collect();
        writes.extend(staging.ceilings.iter().map(|(blind, ceiling)| {
            let key = self.sealer.tree_key(Tree::SecretCounters, blind);
            let sealed = self
                .sealer
                .seal(Tree::SecretCounters, &key, &ceiling.to_be_bytes());
            Op::Put(Tree::SecretCounters, key.to_vec(), sealed)
        }));
        writes.append(&mut staging.writes);
        match self.store.apply_each(writes) {
            Ok(_) => {
                for (recipient, counter) in staging.counters {
                    index.remember_counter(recipient, counter);
                }
                for (key, waiting) in staging.staged {
                    index.abandoned.remove(&waiting.dedup);
                    index.insert(key, waiting);
                }
                Ok(())
            }
            Err(e) => {
                // Whether the ceilings reached the store is unknown: they are
                // read from it again.
                for recipient in staging.counters.keys() {
                    index.counters.remove(recipient);
                }
                // Some envelopes may be written. Take them back, and should
                // that fail too, remember their places: a retry (which the
                // index does not know) then deletes its first copy. Should
                // the relay stop first, `open` keeps one copy of each (and
                // drops a body nothing refers to). The counters stay: ids
                // never repeat.
                let mut undo: Vec<Op> = staging
                    .staged
                    .iter()
                    .map(|(key, _)| Op::Delete(Tree::SecretQueue, self.store_key(key).to_vec()))
                    .collect();
                undo.extend(
                    body.iter()
                        .map(|(id, _)| Op::Delete(Tree::SecretQueue, body_key(id))),
                );
                if let Err(undo) = self.store.apply_each(undo) {
                    tracing::warn!(error = %undo, "cannot take back envelopes of a failed write");
                }
                if index.abandoned.len() + staging.staged.len() > ABANDONED {
                    index.abandoned.clear();
                }
                for (key, waiting) in &staging.staged {
                    index.abandoned.insert(waiting.dedup, *key);
                }
                Err(e)
            }
        }
    }

    /// Stages one envelope (with `copy`, a recipient's copy of a group
    /// message, whose ciphertext is in the body it names).
    fn stage(
        &self,
        new: NewSecret,
        copy: Option<&Copy<'_>>,
        index: &Index,
        staging: &mut Staging,
    ) -> Result<Queued, RelayError> {
        let recipient = blind_user(&self.sealer, &new.to);
        let mut dedup: DedupKey = [0; 32];
        dedup[..16].copy_from_slice(&blind_user(&self.sealer, &new.from));
        match copy {
            None => dedup[16..].copy_from_slice(&new.client_id),
            // One client id, one envelope per recipient.
            Some(_) => dedup[16..].copy_from_slice(
                &self
                    .sealer
                    .blind("group copy", &[new.client_id, recipient].concat()),
            ),
        }
        if let Some(key) = staging.fresh.get(&dedup).or(index.by_dedup.get(&dedup)) {
            return Ok(Queued::Duplicate(id_of(key)));
        }
        let bytes = copy.map_or(new.ciphertext.len() as u64, |c| c.bytes);
        let mut pair: Pair = [0; 32];
        pair[..16].copy_from_slice(&dedup[..16]);
        pair[16..].copy_from_slice(&recipient);
        let (waiting, staged) = usage(&index.usage, &staging.usage, &recipient);
        if !waiting.fits(staged, bytes, self.quota.recipient) {
            return Ok(Queued::Full(Full::Recipient));
        }
        let (waiting, staged) = usage(&index.pairs, &staging.pairs, &pair);
        if !waiting.fits(staged, bytes, self.quota.pair) {
            return Ok(Queued::Full(Full::FromSender));
        }
        if !index.total.fits(staging.total, bytes, self.quota.total) {
            return Ok(Queued::Full(Full::Relay));
        }
        staging.usage.entry(recipient).or_default().add(bytes);
        staging.pairs.entry(pair).or_default().add(bytes);
        staging.total.add(bytes);
        let counter = match staging
            .counters
            .get(&recipient)
            .or(index.counters.get(&recipient))
        {
            Some(counter) => *counter,
            None => {
                let stored = self.stored_counter(&recipient, index)?;
                Counter {
                    last: stored,
                    ceiling: stored,
                }
            }
        };
        let id = counter
            .last
            .checked_add(1)
            .ok_or(RelayError::Corrupt("a recipient's envelope ids ran out"))?;
        let ceiling = if id > counter.ceiling {
            let raised = id.saturating_add(COUNTER_BLOCK - 1);
            staging.ceilings.insert(recipient, raised);
            raised
        } else {
            counter.ceiling
        };
        staging
            .counters
            .insert(recipient, Counter { last: id, ceiling });
        let queued_at = now_ms();
        let record = SecretEnvelopeRecord {
            id,
            from: new.from,
            ciphertext: new.ciphertext,
            queued_at,
            expires_at: queued_at.saturating_add(new.ttl_ms),
            dedup_key: dedup.to_vec(),
            recipient: recipient.to_vec(),
            body: copy.map(|c| c.body.to_vec()).unwrap_or_default(),
            group: copy.map(|c| c.group.to_vec()).unwrap_or_default(),
        };
        let qkey = queue_key(&recipient, id);
        let store_key = self.store_key(&qkey);
        let sealed =
            self.sealer
                .seal_padded(Tree::SecretQueue, &store_key, &record.encode_to_vec());
        staging
            .writes
            .push(Op::Put(Tree::SecretQueue, store_key.to_vec(), sealed));
        // A retry of a write that failed: what that write may have left on
        // disk goes once this one is there. Its id is not reused: when its
        // counter did not reach the disk, neither did it, and another
        // envelope may have that id (and place) by now: that one stays.
        let taken = |old: &QueueKey| {
            index.by_key.contains_key(old) || staging.fresh.values().any(|k| k == old)
        };
        // (Not this one's own place: a write whose counter failed hands the
        // same id out again, and its first copy's place is this one.)
        if let Some(old) = index
            .abandoned
            .get(&dedup)
            .filter(|old| !taken(old) && **old != qkey)
        {
            staging
                .writes
                .push(Op::Delete(Tree::SecretQueue, self.store_key(old).to_vec()));
        }
        staging.fresh.insert(dedup, qkey);
        staging.staged.push((
            qkey,
            Waiting {
                dedup,
                expires_at: record.expires_at,
                bytes,
                body: copy.map(|c| c.body),
            },
        ));
        Ok(Queued::New(envelope(&record)))
    }

    /// Envelopes waiting for `user`, oldest first; `more` when the limit cut it.
    pub fn pending(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<(Vec<v1::SecretEnvelope>, bool), RelayError> {
        let blind = blind_user(&self.sealer, user);
        let keys: Vec<QueueKey> = self
            .index()
            .by_recipient
            .get(&blind)
            .map(|ids| {
                ids.iter()
                    .take(limit + 1)
                    .map(|id| queue_key(&blind, *id))
                    .collect()
            })
            .unwrap_or_default();
        let more = keys.len() > limit;
        let mut out = Vec::with_capacity(keys.len().min(limit));
        for key in keys.into_iter().take(limit) {
            let store_key = self.store_key(&key);
            // Acknowledged or expired since the index was read: gone, not missing.
            let Some(sealed) = self.store.get(Tree::SecretQueue, &store_key)? else {
                continue;
            };
            let mut record = SecretEnvelopeRecord::decode(
                self.sealer
                    .open_padded(Tree::SecretQueue, &store_key, &sealed)?
                    .as_slice(),
            )?;
            if let Some(body) = body_of(&record)? {
                // Its last other reference was acknowledged, or it expired,
                // between the two reads (or a damaged store lost the body):
                // the others still go out, not an error for the whole fetch.
                let Some(ciphertext) = self.body(&body)? else {
                    if self.store.get(Tree::SecretQueue, &store_key)?.is_some() {
                        tracing::warn!("a secret group message's body is missing: skipped");
                    }
                    continue;
                };
                record.ciphertext = ciphertext;
            }
            out.push(envelope(&record));
        }
        Ok((out, more))
    }

    /// A group message's ciphertext, kept in its body (`None`: gone).
    fn body(&self, id: &BodyId) -> Result<Option<Vec<u8>>, RelayError> {
        let key = body_key(id);
        let Some(sealed) = self.store.get(Tree::SecretQueue, &key)? else {
            return Ok(None);
        };
        Ok(Some(
            SecretBodyRecord::decode(
                self.sealer
                    .open_padded(Tree::SecretQueue, &key, &sealed)?
                    .as_slice(),
            )?
            .ciphertext,
        ))
    }

    /// Deletes `user`'s envelopes named in `ids` (others' are out of reach:
    /// only envelopes queued for `user` count). Returns how many were deleted.
    /// Not yet durable.
    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<usize, RelayError> {
        let blind = blind_user(&self.sealer, user);
        let mut index = self.index();
        let mut mine: Vec<QueueKey> = ids
            .iter()
            .map(|id| queue_key(&blind, *id))
            .filter(|key| index.by_key.contains_key(key))
            .collect();
        mine.sort_unstable();
        mine.dedup();
        self.delete(&mut index, &mine)?;
        Ok(mine.len())
    }

    /// Deletes the queued envelopes under `keys` (all known to the index).
    fn delete(&self, index: &mut Index, keys: &[QueueKey]) -> Result<(), RelayError> {
        if keys.is_empty() {
            return Ok(());
        }
        // A body goes after the last envelope that refers to it.
        let mut deletes: Vec<Op> = keys
            .iter()
            .map(|key| Op::Delete(Tree::SecretQueue, self.store_key(key).to_vec()))
            .collect();
        deletes.extend(
            index
                .bodies_freed_by(keys)
                .iter()
                .map(|body| Op::Delete(Tree::SecretQueue, body_key(body))),
        );
        self.store.apply_each(deletes)?;
        for key in keys {
            index.remove(key);
        }
        Ok(())
    }

    /// Deletes every envelope whose time-to-live has ended by `now`. Not yet durable.
    pub fn expire(&self, now: i64) -> Result<usize, RelayError> {
        let mut index = self.index();
        let mut removed = 0;
        loop {
            let due: Vec<QueueKey> = index
                .by_expiry
                .range(..=(now, [0xff; 24]))
                .take(512)
                .map(|(_, key)| *key)
                .collect();
            if due.is_empty() {
                return Ok(removed);
            }
            self.delete(&mut index, &due)?;
            removed += due.len();
        }
    }

    /// Envelopes, and their bytes, waiting in the whole queue (from the index).
    pub fn totals(&self) -> (u64, u64) {
        let index = self.index();
        (index.total.envelopes, index.total.bytes)
    }

    /// How many envelopes wait in the whole queue (for tests and metrics;
    /// a group message's body is not one).
    pub fn envelopes(&self) -> Result<usize, RelayError> {
        Ok(self.index().by_key.len())
    }
}

/// Where the secret queue is kept: the relay's own store ([`SecretQueue`])
/// or the cluster ([`ClusterSecretQueue`]). The relay's handlers and its
/// writer use [`Queue`] and never ask which.
// One of them per relay, behind an `Arc`: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Queue {
    Local(SecretQueue),
    Cluster(ClusterSecretQueue),
}

impl Queue {
    pub fn enqueue_many(&self, envelopes: Vec<NewSecret>) -> Vec<Result<Queued, RelayError>> {
        match self {
            Queue::Local(q) => q.enqueue_many(envelopes),
            Queue::Cluster(q) => q.enqueue_many(envelopes),
        }
    }

    /// Whether a group message's ciphertext is kept once (one relay), not
    /// once per recipient (a cluster).
    pub fn keeps_group_bodies_once(&self) -> bool {
        matches!(self, Queue::Local(_))
    }

    pub fn enqueue_group(&self, new: NewGroupSecret) -> Result<GroupQueued, RelayError> {
        match self {
            Queue::Local(q) => q.enqueue_group(new),
            Queue::Cluster(q) => q.enqueue_group(new),
        }
    }

    pub fn pending(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<(Vec<v1::SecretEnvelope>, bool), RelayError> {
        match self {
            Queue::Local(q) => q.pending(user, limit),
            Queue::Cluster(q) => q.pending(user, limit),
        }
    }

    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<usize, RelayError> {
        match self {
            Queue::Local(q) => q.acknowledge(user, ids),
            Queue::Cluster(q) => q.acknowledge(user, ids),
        }
    }

    /// Deletes what outlived its time-to-live (on a cluster the stream
    /// does, by its `max_age`).
    pub fn expire(&self, now: i64) -> Result<usize, RelayError> {
        match self {
            Queue::Local(q) => q.expire(now),
            Queue::Cluster(_) => Ok(0),
        }
    }

    /// Envelopes, and their bytes, waiting in the whole queue.
    pub fn totals(&self) -> (u64, u64) {
        match self {
            Queue::Local(q) => q.totals(),
            Queue::Cluster(q) => q.totals(),
        }
    }

    pub fn envelopes(&self) -> Result<usize, RelayError> {
        match self {
            Queue::Local(q) => q.envelopes(),
            Queue::Cluster(q) => q.envelopes(),
        }
    }
}

pub(crate) fn envelope(record: &SecretEnvelopeRecord) -> v1::SecretEnvelope {
    v1::SecretEnvelope {
        id: record.id,
        from: record.from.clone(),
        ciphertext: record.ciphertext.clone().into(),
        queued_at: record.queued_at,
        group: record.group.clone().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;

    type Fixture = TestDir;

    const QUOTA: Quota = Quota {
        recipient: Usage {
            envelopes: 1_000,
            bytes: 1 << 20,
        },
        pair: Usage {
            envelopes: 1_000,
            bytes: 1 << 20,
        },
        total: Usage {
            envelopes: 100_000,
            bytes: 1 << 30,
        },
    };

    impl TestDir {
        /// The queue as a relay opening the data directory finds it.
        fn queue(&self) -> SecretQueue {
            SecretQueue::open(self.store(), self.sealer.clone(), QUOTA).unwrap()
        }
    }

    fn envelope_to(to: &str, n: u8, ttl_ms: i64) -> NewSecret {
        NewSecret {
            from: "ann".into(),
            to: to.into(),
            client_id: [n; 16],
            ciphertext: vec![n; 40],
            ttl_ms,
        }
    }

    /// A queue over a store whose writes can be made to fail, the double
    /// itself, and the store as the queue sees it.
    fn over_a_faulty_disk(
        f: &Fixture,
    ) -> (
        Arc<crate::store::faulty::Faulty>,
        Arc<dyn Store>,
        SecretQueue,
    ) {
        over_a_faulty_disk_with(f, QUOTA)
    }

    fn over_a_faulty_disk_with(
        f: &Fixture,
        quota: Quota,
    ) -> (
        Arc<crate::store::faulty::Faulty>,
        Arc<dyn Store>,
        SecretQueue,
    ) {
        let faulty = Arc::new(crate::store::faulty::Faulty::new(f.store()));
        let store: Arc<dyn Store> = faulty.clone();
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), quota).unwrap();
        (faulty, store, q)
    }

    /// Room for more than a counter block to wait for one recipient.
    const ROOMY: Quota = Quota {
        recipient: Usage {
            envelopes: 10_000,
            bytes: 1 << 24,
        },
        pair: Usage {
            envelopes: 10_000,
            bytes: 1 << 24,
        },
        total: QUOTA.total,
    };

    fn queued(q: &SecretQueue, e: NewSecret) -> u64 {
        match q.enqueue_many(vec![e]).pop().unwrap().unwrap() {
            Queued::New(env) => env.id,
            Queued::Duplicate(_) | Queued::Full(_) => {
                panic!("a fresh envelope was not queued")
            }
        }
    }

    fn group_to(recipients: &[&str], n: u8) -> NewGroupSecret {
        NewGroupSecret {
            from: "ann".into(),
            group: vec![7; 16],
            recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
            client_id: [n; 16],
            ciphertext: vec![n; 300],
            ttl_ms: 60_000,
        }
    }

    #[test]
    fn a_retry_after_a_failed_counter_write_keeps_its_envelope() {
        let f = Fixture::new();
        let (faulty, _store, q) = over_a_faulty_disk(&f);
        // The counter, written first, does not reach the disk: the retry
        // is handed the same id, so the same place as the first copy.
        faulty.fail_once_after(0);
        assert!(q.enqueue_many(vec![envelope_to("bob", 1, 60_000)])[0].is_err());
        let id = queued(&q, envelope_to("bob", 1, 60_000));
        let (waiting, _) = q.pending("bob", 10).unwrap();
        assert_eq!(waiting.iter().map(|e| e.id).collect::<Vec<_>>(), [id]);
    }

    #[test]
    fn a_body_nothing_refers_to_is_dropped_when_the_queue_opens() {
        let f = Fixture::new();
        let store = f.store();
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        assert!(matches!(
            q.enqueue_group(group_to(&["bob", "cyd"], 1)).unwrap(),
            GroupQueued::New(_)
        ));
        assert_eq!(store.count(Tree::SecretQueue).unwrap(), 3);
        // The relay stops after deleting the envelopes, before the body.
        let envelopes: Vec<Op> = store
            .range(Tree::SecretQueue, &[], &[0xff; 25], 10)
            .unwrap()
            .into_iter()
            .filter(|(key, _)| !key.starts_with(BODY))
            .map(|(key, _)| Op::Delete(Tree::SecretQueue, key))
            .collect();
        assert_eq!(envelopes.len(), 2);
        store.apply_each(envelopes).unwrap();
        drop(q);
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        assert_eq!(q.envelopes().unwrap(), 0);
        assert_eq!(store.count(Tree::SecretQueue).unwrap(), 0);
    }

    #[test]
    fn an_envelope_whose_body_is_gone_does_not_break_its_recipients_fetch() {
        // As when another fetch acknowledged it, or it expired, between
        // reading the envelope and its body; or a damaged store.
        let f = Fixture::new();
        let store = f.store();
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        assert!(matches!(
            q.enqueue_group(group_to(&["bob", "cyd"], 1)).unwrap(),
            GroupQueued::New(_)
        ));
        let body: Vec<Op> = store
            .range(Tree::SecretQueue, &[], &[0xff; 25], 10)
            .unwrap()
            .into_iter()
            .filter(|(key, _)| key.starts_with(BODY))
            .map(|(key, _)| Op::Delete(Tree::SecretQueue, key))
            .collect();
        assert_eq!(body.len(), 1);
        store.apply_each(body).unwrap();
        let id = queued(&q, envelope_to("bob", 2, 60_000));
        let (waiting, _) = q.pending("bob", 10).expect("bob's fetch still works");
        assert_eq!(waiting.iter().map(|e| e.id).collect::<Vec<_>>(), [id]);
    }

    #[test]
    fn a_group_message_whose_write_failed_leaves_no_body_behind() {
        let f = Fixture::new();
        let (faulty, store, q) = over_a_faulty_disk(&f);
        // The body is written, the disk is full for the next write, then not.
        faulty.fail_once_after(1);
        assert!(q.enqueue_group(group_to(&["bob", "cyd"], 2)).is_err());
        assert_eq!(q.envelopes().unwrap(), 0);
        assert_eq!(store.count(Tree::SecretQueue).unwrap(), 0);
        // The retry is queued, once for each.
        assert!(matches!(
            q.enqueue_group(group_to(&["bob", "cyd"], 2)).unwrap(),
            GroupQueued::New(e) if e.len() == 2
        ));
        assert_eq!(store.count(Tree::SecretQueue).unwrap(), 3);
    }

    #[test]
    fn a_retry_is_queued_once_also_after_a_restart() {
        let f = Fixture::new();
        let q = f.queue();
        let id = queued(&q, envelope_to("bob", 1, 60_000));
        let results = q.enqueue_many(vec![
            envelope_to("bob", 1, 60_000),
            envelope_to("bob", 2, 60_000),
            envelope_to("bob", 2, 60_000),
        ]);
        assert!(matches!(results[0], Ok(Queued::Duplicate(d)) if d == id));
        assert!(matches!(results[1], Ok(Queued::New(_))));
        assert!(matches!(results[2], Ok(Queued::Duplicate(_))));
        drop(q);
        let q = f.queue();
        assert!(matches!(
            q.enqueue_many(vec![envelope_to("bob", 1, 60_000)]).pop().unwrap(),
            Ok(Queued::Duplicate(d)) if d == id
        ));
        assert_eq!(q.pending("bob", 10).unwrap().0.len(), 2);
    }

    #[test]
    fn only_the_recipient_can_acknowledge_and_then_it_is_gone() {
        let f = Fixture::new();
        let q = f.queue();
        let id = queued(&q, envelope_to("bob", 1, 60_000));
        assert_eq!(q.acknowledge("eve", &[id]).unwrap(), 0);
        assert_eq!(q.envelopes().unwrap(), 1);
        assert_eq!(q.acknowledge("bob", &[id, id + 1000]).unwrap(), 1);
        assert_eq!(q.envelopes().unwrap(), 0);
        // Gone, so the same client id may be queued again.
        queued(&q, envelope_to("bob", 1, 60_000));
    }

    #[test]
    fn time_to_live_is_kept_across_a_restart() {
        let f = Fixture::new();
        let q = f.queue();
        queued(&q, envelope_to("bob", 1, 1_000));
        queued(&q, envelope_to("bob", 2, 3_600_000));
        drop(q);
        let q = f.queue();
        assert_eq!(q.expire(now_ms()).unwrap(), 0);
        assert_eq!(q.expire(now_ms() + 2_000).unwrap(), 1);
        let (left, _) = q.pending("bob", 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].ciphertext.as_ref(), [2u8; 40]);
    }

    #[test]
    fn ids_count_per_recipient_and_never_go_back() {
        let f = Fixture::new();
        let q = f.queue();
        let bob = [1, 2, 3].map(|n| queued(&q, envelope_to("bob", n, 60_000)));
        let carol = queued(&q, envelope_to("carol", 4, 60_000));
        assert_eq!(bob, [1, 2, 3], "a fresh relay counts each recipient from 1");
        assert_eq!(carol, 1, "carol learns nothing of what bob receives");
        // Everything acknowledged, then a restart: bob's ids still go on,
        // from the ceiling the store held.
        assert_eq!(q.acknowledge("bob", &bob).unwrap(), 3);
        drop(q);
        let q = f.queue();
        let after = COUNTER_BLOCK + 1;
        assert_eq!(queued(&q, envelope_to("bob", 5, 60_000)), after);
        let both = q.enqueue_many(vec![
            envelope_to("bob", 6, 60_000),
            envelope_to("bob", 7, 60_000),
        ]);
        let ids: Vec<u64> = both
            .into_iter()
            .map(|r| match r.unwrap() {
                Queued::New(e) => e.id,
                Queued::Duplicate(_) | Queued::Full(_) => panic!("not queued"),
            })
            .collect();
        assert_eq!(
            ids,
            [after + 1, after + 2],
            "one batch to one recipient counts on"
        );
        // An id is only ever the recipient's: carol's 1 is not bob's 1.
        assert_eq!(
            q.acknowledge("carol", &[after, after + 1, after + 2])
                .unwrap(),
            0
        );
        assert_eq!(q.pending("bob", 10).unwrap().0.len(), 3);
    }

    #[test]
    fn ids_start_above_those_a_relay_wide_counter_handed_out_before() {
        // A data directory from before: its clients remember relay-wide ids.
        let f = Fixture::new();
        let store = f.store();
        let before = (0..500).map(|_| store.next_id().unwrap()).max().unwrap();
        store.flush().unwrap();
        drop(store);
        let q = f.queue();
        let first = queued(&q, envelope_to("bob", 1, 60_000));
        assert!(first > before);
        drop(q);
        // The base is fixed once: the counter moving on does not move it.
        let store = f.store();
        (0..5000).for_each(|_| {
            store.next_id().unwrap();
        });
        drop(store);
        let q = f.queue();
        let next = queued(&q, envelope_to("bob", 2, 60_000));
        // On from the ceiling stored with the first.
        assert_eq!(next, first + COUNTER_BLOCK);
    }

    /// The ids one recipient was handed, `n` sends in a row.
    fn queue_many(q: &SecretQueue, to: &str, n: usize, tag: u8) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let mut e = envelope_to(to, tag, 60_000);
                e.client_id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                queued(q, e)
            })
            .collect()
    }

    #[test]
    fn ids_never_repeat_across_a_restart_wherever_the_count_stands_in_its_block() {
        // Before, at and past a ceiling: whatever was handed out before the
        // restart, the next id is above it (the ceiling is written ahead).
        let block = COUNTER_BLOCK as usize;
        for sent in [1, block - 1, block, block + 1, 2 * block + 3] {
            let f = Fixture::new();
            let q = SecretQueue::open(f.store(), f.sealer.clone(), ROOMY).unwrap();
            let ids = queue_many(&q, "bob", sent, 1);
            // Acknowledged: nothing waits that could lift the count.
            assert_eq!(q.acknowledge("bob", &ids).unwrap(), sent);
            drop(q);
            let q = f.queue();
            let next = queued(&q, envelope_to("bob", 2, 60_000));
            let before = *ids.iter().max().unwrap();
            assert!(
                next > before,
                "after {sent}: id {next} was handed out before"
            );
        }
    }

    #[test]
    fn the_ceiling_is_written_once_a_block_not_with_every_envelope() {
        let f = Fixture::new();
        let (faulty, _store, q) = over_a_faulty_disk_with(&f, ROOMY);
        let first = queued(&q, envelope_to("bob", 1, 60_000));
        // The rest of the block: one write each, the envelope (a counter
        // written with any of them would use up the writes the disk allows).
        let rest = COUNTER_BLOCK as usize - 1;
        faulty.fail_once_after(rest);
        let ids = queue_many(&q, "bob", rest, 2);
        assert_eq!(ids.last(), Some(&(first + COUNTER_BLOCK - 1)));
        assert!(
            q.enqueue_many(vec![envelope_to("bob", 3, 60_000)])[0].is_err(),
            "no write was left, yet a send went through"
        );
        // Past the block: two writes, the raised ceiling first.
        faulty.fail_once_after(1);
        assert!(
            q.enqueue_many(vec![envelope_to("bob", 3, 60_000)])[0].is_err(),
            "the envelope past the block was written without a ceiling"
        );
        queued(&q, envelope_to("bob", 3, 60_000));
    }

    #[test]
    fn an_envelope_waiting_keeps_its_id_even_if_the_ceiling_was_lost() {
        // A disk that lost the counter but kept the envelope (say, a
        // restored backup of one tree): the id still is not handed out again.
        let f = Fixture::new();
        let store = f.store();
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        let ids = queue_many(&q, "bob", 3, 1);
        drop(q);
        let counters: Vec<Op> = store
            .range(Tree::SecretCounters, &[], &[0xff; 33], 10)
            .unwrap()
            .into_iter()
            .map(|(key, _)| Op::Delete(Tree::SecretCounters, key))
            .collect();
        assert_eq!(counters.len(), 1);
        store.apply_each(counters).unwrap();
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        let next = queued(&q, envelope_to("bob", 2, 60_000));
        assert!(next > *ids.iter().max().unwrap());
        assert_eq!(q.pending("bob", 10).unwrap().0.len(), 4, "none overwritten");
    }

    #[test]
    fn a_recipient_s_quota_holds_in_count_and_bytes_and_frees_as_they_fetch() {
        let f = Fixture::new();
        let quota = Quota {
            recipient: Usage {
                envelopes: 3,
                bytes: 100,
            },
            ..QUOTA
        };
        let q = SecretQueue::open(f.store(), f.sealer.clone(), quota).unwrap();
        // 40 bytes each: two fit in 100 bytes, the third would not.
        let first = queued(&q, envelope_to("bob", 1, 60_000));
        queued(&q, envelope_to("bob", 2, 60_000));
        assert!(matches!(
            q.enqueue_many(vec![envelope_to("bob", 3, 60_000)])
                .pop()
                .unwrap(),
            Ok(Queued::Full(Full::Recipient))
        ));
        // Another recipient has a quota of their own.
        queued(&q, envelope_to("carol", 4, 60_000));
        // In one batch too, and by count: three small ones, then full.
        let small = |n: u8| NewSecret {
            ciphertext: vec![n; 1],
            ..envelope_to("dave", n, 60_000)
        };
        let results = q.enqueue_many((10..14).map(small).collect());
        assert!(matches!(results[2], Ok(Queued::New(_))));
        assert!(matches!(results[3], Ok(Queued::Full(Full::Recipient))));
        // Bob fetches one: room again, also after a restart.
        assert_eq!(q.acknowledge("bob", &[first]).unwrap(), 1);
        drop(q);
        let q = SecretQueue::open(f.store(), f.sealer.clone(), quota).unwrap();
        queued(&q, envelope_to("bob", 3, 60_000));
        assert!(matches!(
            q.enqueue_many(vec![envelope_to("bob", 5, 60_000)])
                .pop()
                .unwrap(),
            Ok(Queued::Full(Full::Recipient))
        ));
    }

    #[test]
    fn one_sender_cannot_fill_a_queue_and_the_relay_has_a_cap_of_its_own() {
        let f = Fixture::new();
        let quota = Quota {
            pair: Usage {
                envelopes: 2,
                bytes: 1 << 20,
            },
            total: Usage {
                envelopes: 4,
                bytes: 1 << 20,
            },
            ..QUOTA
        };
        let q = SecretQueue::open(f.store(), f.sealer.clone(), quota).unwrap();
        let from = |sender: &str, to: &str, n: u8| NewSecret {
            from: sender.into(),
            ..envelope_to(to, n, 60_000)
        };
        let results = q.enqueue_many(vec![
            from("mallory", "bob", 1),
            from("mallory", "bob", 2),
            from("mallory", "bob", 3),
        ]);
        assert!(matches!(results[2], Ok(Queued::Full(Full::FromSender))));
        // Others still reach bob, up to the relay's own cap.
        queued(&q, from("ann", "bob", 4));
        queued(&q, from("ann", "carol", 5));
        assert!(matches!(
            q.enqueue_many(vec![from("dave", "erin", 6)]).pop().unwrap(),
            Ok(Queued::Full(Full::Relay))
        ));
        assert_eq!(q.totals().0, 4);
    }

    #[test]
    fn envelopes_of_layout_1_move_under_blinded_keys_once_and_keep_their_place() {
        let f = Fixture::new();
        let store = f.store();
        let bob = blind_user(&f.sealer, "bob");
        let mut dedup = blind_user(&f.sealer, "ann").to_vec();
        dedup.extend_from_slice(&[5; 16]);
        let mut batch = Batch::default();
        for id in [7u64, 9] {
            let record = SecretEnvelopeRecord {
                id,
                from: "ann".into(),
                ciphertext: vec![id as u8; 40],
                queued_at: now_ms(),
                expires_at: now_ms() + 60_000,
                dedup_key: [&dedup[..31], &[id as u8]].concat(),
                recipient: Vec::new(),
                ..Default::default()
            };
            let key = queue_key(&bob, id);
            let sealed = f
                .sealer
                .seal(Tree::SecretQueue, &key, &record.encode_to_vec());
            batch.put(Tree::SecretQueue, key.to_vec(), sealed);
        }
        store.apply(batch).unwrap();
        let open = || SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        for _ in 0..2 {
            let q = open();
            let ids: Vec<u64> = q
                .pending("bob", 10)
                .unwrap()
                .0
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(ids, [7, 9]);
            assert_eq!(q.totals(), (2, 80));
            let keys = store
                .range(Tree::SecretQueue, &[], &[0xff; 25], 10)
                .unwrap();
            assert_eq!(keys.len(), 2);
            assert!(
                keys.iter().all(|(k, _)| k.len() == 16),
                "moved under blinded keys"
            );
        }
        let q = open();
        assert_eq!(q.acknowledge("bob", &[7]).unwrap(), 1);
        assert_eq!(q.pending("bob", 10).unwrap().0[0].id, 9);
    }

    #[test]
    fn a_stored_envelope_says_neither_whose_it_is_nor_its_id_nor_its_exact_size() {
        let f = Fixture::new();
        let store = f.store();
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        let mut ids = Vec::new();
        for (n, len) in [(1u8, 10usize), (2, 100), (3, 1000)] {
            let mut e = envelope_to("bob", n, 60_000);
            e.ciphertext = vec![n; len];
            ids.push(queued(&q, e));
        }
        let bob = blind_user(&f.sealer, "bob");
        let rows = store
            .range(Tree::SecretQueue, &[], &[0xff; 25], 10)
            .unwrap();
        assert_eq!(rows.len(), 3);
        let overhead = f.sealer.seal(Tree::SecretQueue, b"k", b"").len();
        for (key, value) in &rows {
            assert_eq!(key.len(), 16);
            assert!(
                !key.windows(8)
                    .any(|w| ids.iter().any(|id| w == id.to_be_bytes()))
            );
            assert!(!key.starts_with(&bob[..4]));
            assert_eq!((value.len() - overhead) % crate::seal::PAD_BUCKET, 0);
        }
        // The two small ones share a bucket.
        let mut sizes: Vec<usize> = rows.iter().map(|(_, v)| v.len()).collect();
        sizes.sort_unstable();
        assert_eq!(sizes[0], sizes[1]);
    }

    #[test]
    fn a_write_that_fails_halfway_is_stored_once_when_retried_whatever_it_left_on_disk() {
        let f = Fixture::new();
        let (faulty, store, q) = over_a_faulty_disk(&f);
        let batch = || {
            (1..=4)
                .map(|n| envelope_to("bob", n, 60_000))
                .collect::<Vec<_>>()
        };
        // The counter and two envelopes are written, then the disk is full.
        faulty.fail_after(3);
        let results = q.enqueue_many(batch());
        assert!(
            results.iter().all(|r| r.is_err()),
            "every sender hears of it"
        );
        // Taking them back failed too (the disk is still full): two are left.
        faulty.fail_after(usize::MAX);
        assert_eq!(store.count(Tree::SecretQueue).unwrap(), 2);
        // The senders retry: each envelope is stored once, also after a restart.
        let ids: Vec<u64> = batch().into_iter().map(|e| queued(&q, e)).collect();
        assert_eq!(store.count(Tree::SecretQueue).unwrap(), 4, "no second copy");
        drop(q);
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        let pending: Vec<u64> = q
            .pending("bob", 10)
            .unwrap()
            .0
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(pending, ids);
    }

    #[test]
    fn a_write_that_fails_once_is_taken_back_at_once() {
        let f = Fixture::new();
        let (faulty, store, q) = over_a_faulty_disk(&f);
        // The counter and one envelope are written, the second write fails,
        // then the disk has room again: the undo takes the first back.
        faulty.fail_once_after(2);
        let results = q.enqueue_many(vec![
            envelope_to("bob", 1, 60_000),
            envelope_to("bob", 2, 60_000),
        ]);
        assert!(results.iter().all(|r| r.is_err()));
        assert_eq!(store.count(Tree::SecretQueue).unwrap(), 0, "taken back");
        drop(q);
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        assert!(
            q.pending("bob", 10).unwrap().0.is_empty(),
            "nothing reaches bob"
        );
    }

    #[test]
    fn a_retry_never_takes_an_id_another_envelope_may_have_by_now() {
        // Found in review: a retry that reused its failed write's id could
        // overwrite another sender's envelope given that id meanwhile.
        let f = Fixture::new();
        let (faulty, _store, q) = over_a_faulty_disk(&f);
        // ann's counter write fails; the undo succeeds.
        faulty.fail_once_after(0);
        assert!(q.enqueue_many(vec![envelope_to("bob", 1, 60_000)])[0].is_err());
        let carol_id = queued(
            &q,
            NewSecret {
                from: "carol".into(),
                ..envelope_to("bob", 2, 60_000)
            },
        );
        let ann_id = queued(&q, envelope_to("bob", 1, 60_000));
        assert_ne!(ann_id, carol_id, "two envelopes were given one id");
        let pending = q.pending("bob", 10).unwrap().0;
        let senders: Vec<&str> = pending.iter().map(|e| e.from.as_str()).collect();
        assert_eq!(senders, ["carol", "ann"], "an envelope was lost");
        assert_eq!(q.totals().0, 2);
    }

    #[test]
    fn a_counter_a_failed_send_wrote_is_not_handed_out_again_from_memory() {
        // The last ids are kept in memory after a send; a send whose counter
        // reached the disk but whose envelope did not must not leave the
        // memory behind the disk.
        let f = Fixture::new();
        let (faulty, _store, q) = over_a_faulty_disk_with(&f, ROOMY);
        // A block's worth, so that the next send raises the ceiling.
        let ids = queue_many(&q, "bob", COUNTER_BLOCK as usize, 1);
        let last = *ids.last().unwrap();
        // The raised ceiling is written, the envelope is not.
        faulty.fail_once_after(1);
        assert!(q.enqueue_many(vec![envelope_to("bob", 2, 60_000)])[0].is_err());
        let next = queued(&q, envelope_to("bob", 3, 60_000));
        assert_eq!(
            next,
            last + COUNTER_BLOCK + 1,
            "an id below the ceiling the disk holds was handed out again"
        );
    }

    #[test]
    fn two_copies_of_one_send_left_by_a_failure_are_one_after_a_restart() {
        let f = Fixture::new();
        let (faulty, store, q) = over_a_faulty_disk(&f);
        // The counter and the envelope are written, the next write fails, and
        // so does the undo: a copy is left.
        faulty.fail_after(2);
        let failed = q.enqueue_many(vec![
            envelope_to("bob", 1, 60_000),
            envelope_to("bob", 2, 60_000),
        ]);
        assert!(failed.iter().all(|r| r.is_err()));
        faulty.fail_after(usize::MAX);
        // The relay forgot it (as past the bound of what it remembers).
        q.index().abandoned.clear();
        let retried = queued(&q, envelope_to("bob", 1, 60_000));
        assert_eq!(
            store.count(Tree::SecretQueue).unwrap(),
            2,
            "two copies on disk"
        );
        drop(q);
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        let pending: Vec<u64> = q
            .pending("bob", 10)
            .unwrap()
            .0
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(pending, [retried], "one copy, the retry's");
        assert_eq!(store.count(Tree::SecretQueue).unwrap(), 1);
        assert_eq!(q.totals().0, 1);
    }

    #[test]
    fn a_counter_an_older_relay_kept_under_the_blind_itself_goes_on_counting() {
        let f = Fixture::new();
        let store = f.store();
        let bob = blind_user(&f.sealer, "bob");
        let sealed = f
            .sealer
            .seal(Tree::SecretCounters, &bob, &41u64.to_be_bytes());
        let mut batch = Batch::default();
        batch.put(Tree::SecretCounters, bob.to_vec(), sealed);
        store.apply(batch).unwrap();
        let q = SecretQueue::open(store.clone(), f.sealer.clone(), QUOTA).unwrap();
        assert_eq!(queued(&q, envelope_to("bob", 1, 60_000)), 42);
        assert_eq!(queued(&q, envelope_to("bob", 2, 60_000)), 43);
        let new_key = f.sealer.tree_key(Tree::SecretCounters, &bob);
        assert!(store.get(Tree::SecretCounters, &new_key).unwrap().is_some());
    }
}
