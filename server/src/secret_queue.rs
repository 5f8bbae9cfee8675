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

use crate::accounts::{blind_user, user_scoped_key as queue_key};
use crate::records::SecretEnvelopeRecord;
use crate::seal::Sealer;
use crate::store::{Op, Store, Tree};
use crate::{RelayError, now_ms};

pub struct SecretQueue {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// What is queued, for duplicates and time-to-live; also serialises writers.
    index: Mutex<Index>,
}

/// blind(sender) ‖ client id.
type DedupKey = [u8; 32];

/// The queue's index, in memory only: one key per envelope is all the queue
/// writes, and [`SecretQueue::open`] rebuilds this from the queue itself.
#[derive(Default)]
struct Index {
    by_dedup: HashMap<DedupKey, u64>,
    by_id: HashMap<u64, Waiting>,
    by_expiry: BTreeSet<(i64, u64)>,
}

struct Waiting {
    recipient: [u8; 16],
    dedup: DedupKey,
    expires_at: i64,
}

impl Index {
    fn insert(&mut self, id: u64, waiting: Waiting) {
        self.by_dedup.insert(waiting.dedup, id);
        self.by_expiry.insert((waiting.expires_at, id));
        self.by_id.insert(id, waiting);
    }

    fn remove(&mut self, id: u64) {
        if let Some(w) = self.by_id.remove(&id) {
            self.by_dedup.remove(&w.dedup);
            self.by_expiry.remove(&(w.expires_at, id));
        }
    }
}

/// An envelope to queue, already checked by the handler.
pub struct NewSecret {
    pub from: String,
    pub to: String,
    pub client_id: [u8; 16],
    pub ciphertext: Vec<u8>,
    pub ttl_ms: i64,
}

/// What enqueuing did.
pub enum Queued {
    New(v1::SecretEnvelope),
    Duplicate(u64),
}

impl SecretQueue {
    /// Opens the queue in `store` and indexes what waits in it.
    pub fn open(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Result<Self, RelayError> {
        let mut index = Index::default();
        let mut cursor = Vec::new();
        loop {
            let rows = store.range(Tree::SecretQueue, &cursor, &[0xff; 25], 1024)?;
            let Some((last, _)) = rows.last() else { break };
            cursor = last.clone();
            cursor.push(0);
            for (key, sealed) in rows {
                let record = SecretEnvelopeRecord::decode(
                    sealer.open(Tree::SecretQueue, &key, &sealed)?.as_slice(),
                )?;
                let waiting = Waiting {
                    recipient: key
                        .get(..16)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(RelayError::Corrupt("a secret queue key"))?,
                    dedup: record
                        .dedup_key
                        .as_slice()
                        .try_into()
                        .map_err(|_| RelayError::Corrupt("a secret envelope's dedup key"))?,
                    expires_at: record.expires_at,
                };
                index.insert(record.id, waiting);
            }
        }
        Ok(SecretQueue {
            store,
            sealer,
            index: Mutex::new(index),
        })
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
        let mut writes = Vec::with_capacity(envelopes.len());
        let mut fresh: HashMap<DedupKey, u64> = HashMap::new();
        let mut staged = Vec::new();
        let results: Vec<_> = envelopes
            .into_iter()
            .map(|e| self.stage(e, &index, &mut writes, &mut fresh, &mut staged))
            .collect();
        // Each envelope stands alone, and nobody hears of it before the flush:
        // no need to write them atomically together.
        match self.store.apply_each(writes) {
            Ok(_) => {
                for (id, waiting) in staged {
                    index.insert(id, waiting);
                }
                results
            }
            Err(e) => crate::failed_with(results, &e),
        }
    }

    fn stage(
        &self,
        new: NewSecret,
        index: &Index,
        writes: &mut Vec<Op>,
        fresh: &mut HashMap<DedupKey, u64>,
        staged: &mut Vec<(u64, Waiting)>,
    ) -> Result<Queued, RelayError> {
        let mut dedup: DedupKey = [0; 32];
        dedup[..16].copy_from_slice(&blind_user(&self.sealer, &new.from));
        dedup[16..].copy_from_slice(&new.client_id);
        if let Some(id) = fresh.get(&dedup).or(index.by_dedup.get(&dedup)) {
            return Ok(Queued::Duplicate(*id));
        }
        let id = self.store.next_id()? + 1;
        let queued_at = now_ms();
        let record = SecretEnvelopeRecord {
            id,
            from: new.from,
            ciphertext: new.ciphertext,
            queued_at,
            expires_at: queued_at.saturating_add(new.ttl_ms),
            dedup_key: dedup.to_vec(),
        };
        let recipient = blind_user(&self.sealer, &new.to);
        let qkey = queue_key(&recipient, id);
        let sealed = self
            .sealer
            .seal(Tree::SecretQueue, &qkey, &record.encode_to_vec());
        writes.push(Op::Put(Tree::SecretQueue, qkey, sealed));
        fresh.insert(dedup, id);
        staged.push((
            id,
            Waiting {
                recipient,
                dedup,
                expires_at: record.expires_at,
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
        let rows = self.store.range(
            Tree::SecretQueue,
            &queue_key(&blind, 0),
            &queue_key(&blind, u64::MAX),
            limit + 1,
        )?;
        let more = rows.len() > limit;
        let mut out = Vec::with_capacity(rows.len().min(limit));
        for (key, sealed) in rows.into_iter().take(limit) {
            let record = SecretEnvelopeRecord::decode(
                self.sealer
                    .open(Tree::SecretQueue, &key, &sealed)?
                    .as_slice(),
            )?;
            out.push(envelope(&record));
        }
        Ok((out, more))
    }

    /// Deletes `user`'s envelopes named in `ids` (others' are out of reach:
    /// only envelopes queued for `user` count). Returns how many were deleted.
    /// Not yet durable.
    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<usize, RelayError> {
        let blind = blind_user(&self.sealer, user);
        let mut index = self.index();
        let mine: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| index.by_id.get(id).is_some_and(|w| w.recipient == blind))
            .collect();
        self.delete(&mut index, &mine)?;
        Ok(mine.len())
    }

    /// Deletes the queued envelopes `ids` (all known to the index).
    fn delete(&self, index: &mut Index, ids: &[u64]) -> Result<(), RelayError> {
        if ids.is_empty() {
            return Ok(());
        }
        let deletes = ids
            .iter()
            .filter_map(|id| {
                let w = index.by_id.get(id)?;
                Some(Op::Delete(Tree::SecretQueue, queue_key(&w.recipient, *id)))
            })
            .collect();
        self.store.apply_each(deletes)?;
        for id in ids {
            index.remove(*id);
        }
        Ok(())
    }

    /// Deletes every envelope whose time-to-live has ended by `now`. Not yet durable.
    pub fn expire(&self, now: i64) -> Result<usize, RelayError> {
        let mut index = self.index();
        let mut removed = 0;
        loop {
            let due: Vec<u64> = index
                .by_expiry
                .range(..=(now, u64::MAX))
                .take(512)
                .map(|(_, id)| *id)
                .collect();
            if due.is_empty() {
                return Ok(removed);
            }
            self.delete(&mut index, &due)?;
            removed += due.len();
        }
    }

    /// How many envelopes wait in the whole queue (for tests and metrics).
    pub fn len(&self) -> Result<usize, RelayError> {
        Ok(self.store.count(Tree::SecretQueue)?)
    }
}

fn envelope(record: &SecretEnvelopeRecord) -> v1::SecretEnvelope {
    v1::SecretEnvelope {
        id: record.id,
        from: record.from.clone(),
        ciphertext: record.ciphertext.clone().into(),
        queued_at: record.queued_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;

    type Fixture = TestDir;

    impl TestDir {
        /// The queue as a relay opening the data directory finds it.
        fn queue(&self) -> SecretQueue {
            SecretQueue::open(self.store(), self.sealer.clone()).unwrap()
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

    fn queued(q: &SecretQueue, e: NewSecret) -> u64 {
        match q.enqueue_many(vec![e]).pop().unwrap().unwrap() {
            Queued::New(env) => env.id,
            Queued::Duplicate(_) => panic!("a fresh envelope was taken for a duplicate"),
        }
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
        assert_eq!(q.len().unwrap(), 1);
        assert_eq!(q.acknowledge("bob", &[id, id + 1000]).unwrap(), 1);
        assert_eq!(q.len().unwrap(), 0);
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
}
