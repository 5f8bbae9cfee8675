//! What the archive keeps only in memory (postings, the latest client ids),
//! how a checkpoint writes it, and how it is rebuilt from the segments after a
//! crash. Invariant: everything in memory is also in a segment on disk.

use std::collections::HashMap;

use prost::Message;

use super::append::Staged;
use super::dedup::window_extend;
use super::posting::Posting;
use super::segment::{record_key, segment_key};
use super::{NormalArchive, read_u64, user_key};
use crate::RelayError;
use crate::records::{NormalRecord, SegmentRecord, StoredReceipt};
use crate::store::{Batch, Op, Tree};

/// A checkpoint is due once this many messages are only in memory.
pub const CHECKPOINT_EVERY: usize = 4096;
pub(super) const CHECKPOINT_KEY: &[u8] = b"archive_checkpoint";

/// What was appended since the last checkpoint: only in memory (and in the
/// segments on disk, from which [`NormalArchive::open`] rebuilds it).
#[derive(Default)]
pub(super) struct Recent {
    pub postings: HashMap<[u8; 16], Vec<Posting>>,
    /// dedup key (blind sender ‖ client id) → the first store's answer.
    pub receipts: HashMap<Vec<u8>, StoredReceipt>,
    /// The client id windows the last checkpoint wrote, of the senders active
    /// before it: what the store holds for them, without reading it.
    pub windows: HashMap<[u8; 16], Vec<u8>>,
    /// The newest id applied (0: none yet).
    pub last_id: u64,
}

impl Recent {
    pub fn remember(
        &mut self,
        postings: Vec<([u8; 16], Posting)>,
        receipts: Vec<(Vec<u8>, StoredReceipt)>,
    ) {
        for (blind, posting) in postings {
            self.last_id = self.last_id.max(posting.id);
            self.postings.entry(blind).or_default().push(posting);
        }
        self.receipts.extend(receipts);
    }
}

impl NormalArchive {
    /// Reads the segments after the last checkpoint back into memory.
    pub(super) fn recover(&self) -> Result<(), RelayError> {
        let checkpointed = match self.store.get(Tree::Meta, CHECKPOINT_KEY)? {
            Some(v) => read_u64(&v, "the archive checkpoint")?,
            None => 0,
        };
        // The mark is the last id of a whole segment: with nothing after it,
        // it is the newest id; else the segments read below raise it.
        let mut recent = Recent {
            last_id: checkpointed,
            ..Recent::default()
        };
        let mut cursor = segment_key(checkpointed.saturating_add(1)).to_vec();
        loop {
            let rows = self.store.range(Tree::Messages, &cursor, &[0xff; 9], 64)?;
            let Some((last, _)) = rows.last() else { break };
            cursor = last.clone();
            cursor.push(0);
            for (key, value) in rows {
                let segment = read_u64(&key, "a segment key")?;
                let sealed = SegmentRecord::decode(value.as_slice())?.sealed;
                for (index, sealed) in sealed.iter().enumerate() {
                    let index =
                        u16::try_from(index).map_err(|_| RelayError::Corrupt("segment size"))?;
                    let plain =
                        self.sealer
                            .open(Tree::Messages, &record_key(segment, index), sealed)?;
                    let record = NormalRecord::decode(plain.as_slice())?;
                    let mut staged = Staged::default();
                    let dedup_key = self.dedup_key(&record.from, &record.client_id);
                    self.index(&record, index, dedup_key, &mut staged);
                    recent.remember(staged.postings, staged.receipts);
                }
            }
        }
        *self.recent.write().unwrap_or_else(|p| p.into_inner()) = recent;
        Ok(())
    }

    pub(super) fn read_recent(&self) -> std::sync::RwLockReadGuard<'_, Recent> {
        self.recent.read().unwrap_or_else(|p| p.into_inner())
    }

    /// True when enough messages wait in memory for a checkpoint.
    pub fn checkpoint_due(&self) -> bool {
        self.read_recent().receipts.len() >= CHECKPOINT_EVERY
    }

    /// Writes what is only in memory (postings, client ids) to the store, then
    /// marks it covered. Appends go on meanwhile. Returns how many messages it covered.
    pub fn checkpoint(&self) -> Result<usize, RelayError> {
        let _one = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner());
        let (postings, receipts, upto) = {
            let recent = self.read_recent();
            if recent.receipts.is_empty() {
                return Ok(0);
            }
            (
                recent.postings.clone(),
                recent.receipts.clone(),
                recent.last_id,
            )
        };
        let covered = receipts.len();
        let mut by_sender: HashMap<&[u8], Vec<(&[u8], u64)>> = HashMap::new();
        for (key, receipt) in &receipts {
            let (sender, client_id) = key.split_at(16);
            by_sender
                .entry(sender)
                .or_default()
                .push((client_id, receipt.id));
        }
        let mut windows = HashMap::with_capacity(by_sender.len());
        for (sender, mut latest) in by_sender {
            latest.sort_unstable_by_key(|(_, id)| *id);
            let sender: [u8; 16] = sender.try_into().expect("16-byte blind");
            let cached = self.read_recent().windows.get(&sender).cloned();
            let old = match cached {
                Some(window) => window,
                None => self
                    .store
                    .get(Tree::ClientIds, &sender)?
                    .unwrap_or_default(),
            };
            windows.insert(sender, window_extend(&old, &latest)?);
        }
        let ids = windows
            .iter()
            .map(|(sender, window)| Op::Put(Tree::ClientIds, sender.to_vec(), window.clone()));
        let chunks = postings.iter().filter_map(|(blind, list)| {
            let last = list.last()?;
            Some(Op::Put(
                Tree::ByParticipant,
                user_key(blind, last.id),
                Posting::encode_all(list),
            ))
        });
        self.store.apply_each(ids.chain(chunks).collect())?;
        // The mark must not reach disk before what it covers.
        self.store.flush()?;
        let mut mark = Batch::default();
        mark.put(
            Tree::Meta,
            CHECKPOINT_KEY.to_vec(),
            upto.to_be_bytes().to_vec(),
        );
        self.store.apply(mark)?;
        let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
        recent.receipts.retain(|_, r| r.id > upto);
        recent.windows = windows;
        recent.postings.retain(|_, list| {
            list.retain(|p| p.id > upto);
            !list.is_empty()
        });
        Ok(covered)
    }
}
