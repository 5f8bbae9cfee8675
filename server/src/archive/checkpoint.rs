//! What the archive keeps only in memory (postings, the latest client ids),
//! how a checkpoint writes it, and how it is rebuilt from the segments after a
//! crash. Invariant: everything in memory is also in a segment on disk.

use std::collections::HashMap;

use prost::Message;

use super::append::Staged;
use super::dedup::window_extend;
use super::posting::Posting;
use super::segment::{record_key, segment_key};
use super::{NormalArchive, read_u64};
use crate::RelayError;
use crate::records::{NormalRecord, SegmentRecord, StoredReceipt};
use crate::store::{Batch, Op, Tree};

/// A checkpoint is due once this many messages are only in memory.
pub const CHECKPOINT_EVERY: usize = 4096;
pub(super) const CHECKPOINT_KEY: &[u8] = b"archive_checkpoint";
/// A chunk of someone's postings takes more in at a checkpoint while it holds
/// fewer than this many (51 bytes each: about 26 KiB sealed at most).
pub(super) const CHUNK_POSTINGS: usize = 512;

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
    /// The posting directories the last checkpoint wrote, of the users active
    /// before it (see [`Directory`]).
    pub directories: HashMap<[u8; 16], Directory>,
    /// The newest id applied (0: none yet),
    pub last_id: u64,
    /// and the number of its segment (0: none yet).
    pub last_segment: u64,
}

/// Where one user's postings are on disk: the last id of each chunk, in
/// chunk order. Chunk `n` lives under [`NormalArchive::chunk_key`]`(user, n)`,
/// a key nobody can link to the user or to the user's other chunks without
/// the relay's keys; the directory itself is sealed under the user's blind.
pub(super) type Directory = Vec<u64>;

/// The archive's checkpoint mark: the last id and segment it covers.
#[derive(Clone, Copy, Default)]
pub(super) struct Mark {
    pub id: u64,
    pub segment: u64,
}

impl Mark {
    fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.id.to_be_bytes());
        out[8..].copy_from_slice(&self.segment.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, RelayError> {
        let (id, segment) = bytes
            .split_at_checked(8)
            .ok_or(RelayError::Corrupt("the archive checkpoint"))?;
        Ok(Mark {
            id: read_u64(id, "the archive checkpoint")?,
            segment: read_u64(segment, "the archive checkpoint")?,
        })
    }
}

pub(super) fn encode_directory(directory: &[u64]) -> Vec<u8> {
    directory.iter().flat_map(|id| id.to_be_bytes()).collect()
}

pub(super) fn decode_directory(bytes: &[u8]) -> Result<Directory, RelayError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(RelayError::Corrupt("a posting directory"));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

impl Recent {
    pub fn remember(
        &mut self,
        postings: Vec<([u8; 16], Posting)>,
        receipts: Vec<(Vec<u8>, StoredReceipt)>,
    ) {
        for (blind, posting) in postings {
            self.last_id = self.last_id.max(posting.id);
            self.last_segment = self.last_segment.max(posting.segment);
            self.postings.entry(blind).or_default().push(posting);
        }
        self.receipts.extend(receipts);
    }
}

impl NormalArchive {
    /// Reads the segments after the last checkpoint back into memory.
    pub(super) fn recover(&self) -> Result<(), RelayError> {
        let mark = self.mark()?;
        // The mark is the last id of a whole segment: with nothing after it,
        // it is the newest id; else the segments read below raise it.
        let mut recent = Recent {
            last_id: mark.id,
            last_segment: mark.segment,
            ..Recent::default()
        };
        let mut cursor = segment_key(mark.segment.saturating_add(1)).to_vec();
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
                    let plain = self.sealer.open_padded(
                        Tree::Messages,
                        &record_key(segment, index),
                        sealed,
                    )?;
                    let record = NormalRecord::decode(plain.as_slice())?;
                    let mut staged = Staged::default();
                    let dedup_key = self.dedup_key(&record.from, &record.client_id);
                    self.index(&record, segment, index, dedup_key, &mut staged);
                    recent.remember(staged.postings, staged.receipts);
                }
            }
        }
        *self.recent.write().unwrap_or_else(|p| p.into_inner()) = recent;
        Ok(())
    }

    /// The checkpoint mark (nothing covered yet: zeros).
    fn mark(&self) -> Result<Mark, RelayError> {
        match self.store.get(Tree::Meta, CHECKPOINT_KEY)? {
            Some(sealed) => Mark::decode(&self.sealer.open(Tree::Meta, CHECKPOINT_KEY, &sealed)?),
            None => Ok(Mark::default()),
        }
    }

    /// `blind`'s posting directory as the store holds it (empty if none).
    pub(super) fn stored_directory(&self, blind: &[u8; 16]) -> Result<Directory, RelayError> {
        let key = self.sealer.tree_key(Tree::ByParticipant, blind);
        match self.store.get(Tree::ByParticipant, &key)? {
            Some(sealed) => decode_directory(&self.sealer.open_padded(
                Tree::ByParticipant,
                &key,
                &sealed,
            )?),
            None => Ok(Directory::new()),
        }
    }

    /// `blind`'s `n`-th chunk of postings (one its directory names).
    pub(super) fn chunk(&self, blind: &[u8; 16], n: usize) -> Result<Vec<Posting>, RelayError> {
        let key = self.chunk_key(blind, n);
        let sealed = self
            .store
            .get(Tree::ByParticipant, &key)?
            .ok_or(RelayError::Corrupt(
                "a posting directory names a missing chunk",
            ))?;
        Posting::decode_all(
            &self
                .sealer
                .open_padded(Tree::ByParticipant, &key, &sealed)?,
        )
    }

    /// The key of `blind`'s `n`-th chunk of postings.
    pub(super) fn chunk_key(&self, blind: &[u8; 16], n: usize) -> [u8; 16] {
        let mut value = blind.to_vec();
        value.extend_from_slice(&(n as u64).to_be_bytes());
        self.sealer.blind("postings", &value)
    }

    /// `sender`'s client id window as the store holds it (empty if none).
    pub(super) fn stored_window(&self, sender: &[u8; 16]) -> Result<Vec<u8>, RelayError> {
        let key = self.sealer.tree_key(Tree::ClientIds, sender);
        match self.store.get(Tree::ClientIds, &key)? {
            Some(sealed) => Ok(self
                .sealer
                .open_padded(Tree::ClientIds, &key, &sealed)?
                .to_vec()),
            None => Ok(Vec::new()),
        }
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
                Mark {
                    id: recent.last_id,
                    segment: recent.last_segment,
                },
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
                None => self.stored_window(&sender)?,
            };
            windows.insert(sender, window_extend(&old, &latest)?);
        }
        let mut ops: Vec<Op> = windows
            .iter()
            .map(|(sender, window)| {
                let key = self.sealer.tree_key(Tree::ClientIds, sender);
                let sealed = self.sealer.seal_padded(Tree::ClientIds, &key, window);
                Op::Put(Tree::ClientIds, key.to_vec(), sealed)
            })
            .collect();
        // Each user's new chunk goes before the directory that names it (the
        // store keeps writes in order), so a directory never names a chunk
        // that is not there; a chunk whose directory a crash lost is
        // overwritten by the next checkpoint.
        let mut directories = HashMap::with_capacity(postings.len());
        for (blind, list) in &postings {
            let Some(last) = list.last() else { continue };
            let cached = self.read_recent().directories.get(blind).cloned();
            let mut directory = match cached {
                Some(directory) => directory,
                None => self.stored_directory(blind)?,
            };
            // A small last chunk takes the new postings in (rewritten whole:
            // a superset of what it held), so that someone active in many
            // checkpoints has a few large chunks, not one per checkpoint.
            let mut n = directory.len();
            let mut chunk = list.clone();
            if let Some(prev) = n.checked_sub(1) {
                let mut old = self.chunk(blind, prev)?;
                if old.len() + list.len() <= self.chunk_postings {
                    let newest = old.last().map_or(0, |p| p.id);
                    old.extend(list.iter().filter(|p| p.id > newest).copied());
                    (n, chunk) = (prev, old);
                }
            }
            let key = self.chunk_key(blind, n);
            let sealed =
                self.sealer
                    .seal_padded(Tree::ByParticipant, &key, &Posting::encode_all(&chunk));
            ops.push(Op::Put(Tree::ByParticipant, key.to_vec(), sealed));
            directory.truncate(n);
            directory.push(last.id);
            let key = self.sealer.tree_key(Tree::ByParticipant, blind);
            let sealed =
                self.sealer
                    .seal_padded(Tree::ByParticipant, &key, &encode_directory(&directory));
            ops.push(Op::Put(Tree::ByParticipant, key.to_vec(), sealed));
            directories.insert(*blind, directory);
        }
        self.store.apply_each(ops)?;
        // The mark must not reach disk before what it covers.
        self.store.flush()?;
        let mut mark = Batch::default();
        let sealed = self.sealer.seal(Tree::Meta, CHECKPOINT_KEY, &upto.encode());
        mark.put(Tree::Meta, CHECKPOINT_KEY.to_vec(), sealed);
        self.store.apply(mark)?;
        let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
        recent.receipts.retain(|_, r| r.id > upto.id);
        recent.windows = windows;
        recent.directories = directories;
        recent.postings.retain(|_, list| {
            list.retain(|p| p.id > upto.id);
            !list.is_empty()
        });
        Ok(covered)
    }
}
