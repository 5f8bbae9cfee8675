//! The secret queue: end-to-end encrypted envelopes waiting for their recipient.
//!
//! Invariants: an envelope is ciphertext made on the sender's device; the relay
//! keeps it only until the recipient acknowledges it or its time-to-live ends,
//! and it is never part of the normal archive or its history. This queue is a
//! separate set of trees from the archive, and the warrant module has no way to
//! reach it (see `crate::warrant`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prost::Message;
use sotto_proto::v1;

use crate::accounts::{blind_user, user_scoped_key as queue_key};
use crate::records::{SecretEnvelopeRecord, StoredReceipt};
use crate::seal::Sealer;
use crate::store::{Batch, Store, Tree};
use crate::{RelayError, now_ms};

pub struct SecretQueue {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    write_lock: Mutex<()>,
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

fn expiry_key(expires_at: i64, queue_key: &[u8]) -> Vec<u8> {
    let mut key = (expires_at.max(0) as u64).to_be_bytes().to_vec();
    key.extend_from_slice(queue_key);
    key
}

impl SecretQueue {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        SecretQueue {
            store,
            sealer,
            write_lock: Mutex::new(()),
        }
    }

    /// Queues envelopes in one atomic write. A retry with the same client id
    /// (while the first is still queued, or earlier in the same call) is not
    /// queued twice. Not yet durable.
    pub fn enqueue_many(&self, envelopes: Vec<NewSecret>) -> Vec<Result<Queued, RelayError>> {
        // One writer at a time, so the duplicate check cannot race another.
        let _serial = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = Batch::default();
        let mut fresh: HashMap<Vec<u8>, u64> = HashMap::new();
        let results: Vec<_> = envelopes
            .into_iter()
            .map(|e| self.stage(e, &mut batch, &mut fresh))
            .collect();
        crate::apply_staged(&*self.store, batch, results)
    }

    fn stage(
        &self,
        new: NewSecret,
        batch: &mut Batch,
        fresh: &mut HashMap<Vec<u8>, u64>,
    ) -> Result<Queued, RelayError> {
        let mut dedup_key = blind_user(&self.sealer, &new.from).to_vec();
        dedup_key.extend_from_slice(&new.client_id);
        if let Some(id) = fresh.get(&dedup_key) {
            return Ok(Queued::Duplicate(*id));
        }
        if let Some(sealed) = self.store.get(Tree::SecretDedup, &dedup_key)? {
            let plain = self.sealer.open(Tree::SecretDedup, &dedup_key, &sealed)?;
            return Ok(Queued::Duplicate(
                StoredReceipt::decode(plain.as_slice())?.id,
            ));
        }
        let id = self.store.next_id()? + 1;
        let queued_at = now_ms();
        let record = SecretEnvelopeRecord {
            id,
            from: new.from,
            ciphertext: new.ciphertext,
            queued_at,
            expires_at: queued_at.saturating_add(new.ttl_ms),
            dedup_key: dedup_key.clone(),
        };
        let qkey = queue_key(&blind_user(&self.sealer, &new.to), id);
        let receipt = StoredReceipt {
            id,
            sent_at: queued_at,
        }
        .encode_to_vec();
        batch.put(
            Tree::SecretDedup,
            dedup_key.clone(),
            self.sealer.seal(Tree::SecretDedup, &dedup_key, &receipt),
        );
        fresh.insert(dedup_key, id);
        batch.put(
            Tree::SecretQueue,
            qkey.clone(),
            self.sealer
                .seal(Tree::SecretQueue, &qkey, &record.encode_to_vec()),
        );
        batch.put(
            Tree::SecretExpiry,
            expiry_key(record.expires_at, &qkey),
            Vec::new(),
        );
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
    /// the key starts with the user's blind). Returns how many were deleted.
    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<usize, RelayError> {
        let blind = blind_user(&self.sealer, user);
        let mut batch = Batch::default();
        let mut removed = 0;
        for id in ids {
            let key = queue_key(&blind, *id);
            if let Some(sealed) = self.store.get(Tree::SecretQueue, &key)? {
                let record = SecretEnvelopeRecord::decode(
                    self.sealer
                        .open(Tree::SecretQueue, &key, &sealed)?
                        .as_slice(),
                )?;
                batch.delete(Tree::SecretExpiry, expiry_key(record.expires_at, &key));
                batch.delete(Tree::SecretDedup, record.dedup_key);
                batch.delete(Tree::SecretQueue, key);
                removed += 1;
            }
        }
        if removed > 0 {
            self.store.apply(batch)?;
        }
        Ok(removed)
    }

    /// Deletes every envelope whose time-to-live has ended by `now`. Not yet durable.
    pub fn expire(&self, now: i64) -> Result<usize, RelayError> {
        let end = (now.max(0) as u64).to_be_bytes();
        let mut removed = 0;
        loop {
            let rows = self.store.range(Tree::SecretExpiry, &[], &end, 512)?;
            if rows.is_empty() {
                return Ok(removed);
            }
            let mut batch = Batch::default();
            for (key, _) in rows {
                let qkey = key[8..].to_vec();
                if let Some(sealed) = self.store.get(Tree::SecretQueue, &qkey)? {
                    let record = SecretEnvelopeRecord::decode(
                        self.sealer
                            .open(Tree::SecretQueue, &qkey, &sealed)?
                            .as_slice(),
                    )?;
                    batch.delete(Tree::SecretDedup, record.dedup_key);
                    batch.delete(Tree::SecretQueue, qkey);
                }
                batch.delete(Tree::SecretExpiry, key);
                removed += 1;
            }
            self.store.apply(batch)?;
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
