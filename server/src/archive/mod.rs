//! The normal archive: every normal-mode message, sealed, with its indexes.
//!
//! Invariant: nothing readable reaches disk, not even the indexes. Every
//! record and every index value is sealed; keys are numbers that say nothing
//! (segment numbers) or keyed blinds. Without the master key, `db/` shows
//! neither a message id nor a time, nor who wrote to whom, nor a record's
//! size beyond its 256-byte bucket.
//!
//! Layout. With sled 0.34 each key written costs about as much as the rest of
//! a send, so a send writes no key of its own:
//! - **segments** (`Messages`): one per write batch, keyed by its number (1,
//!   2, …); the value holds the batch's records, each padded to a multiple of
//!   256 bytes and sealed on its own under (segment, index in it);
//! - **ids** are time-ordered, `sent_at_ms << 16 | n`, strictly increasing in
//!   commit order (also across restarts): a time window is an id range, and an
//!   acknowledgement can never skip a message committed later. They live only
//!   inside sealed values;
//! - **postings**: for each participant of a message, (id, segment, index,
//!   whether they sent it). The newest live in memory; every
//!   [`CHECKPOINT_EVERY`] messages a checkpoint writes them as one sealed
//!   chunk per user under a blinded chunk key, and a sealed directory of the
//!   user's chunks under the user's blind (`ByParticipant`), with each
//!   sender's latest client ids for deduplication (`ClientIds`, sealed, see
//!   [`DEDUP_WINDOW`]), then marks (sealed) the last id and segment covered
//!   (`Meta`). At open, the segments after the mark are read again, so what
//!   was only in memory is rebuilt from disk after a crash;
//! - **inbox**: per user, the id up to which they acknowledged (`Inbox`,
//!   sealed); what they still have to fetch is every posting after it that
//!   they did not send.
//!
//! One person's records in a window cost what those records cost (their
//! postings, then one segment read each), never a scan of the archive.
//! [`NormalArchive::reader`] hands out [`ArchiveReader`], the read-only view
//! the warrant module is given.

use std::sync::{Arc, Mutex, RwLock};

use prost::Message;

use crate::accounts::blind_user;
use crate::records::{GroupRecord, NormalRecord, StoredReceipt, read_u64};
use crate::seal::Sealer;
use crate::store::{Batch, Store, Tree};
use crate::{Clock, RelayError};

mod append;
mod backing;
mod checkpoint;
pub mod cluster;
mod dedup;
mod delivery;
mod inbox;
mod posting;
mod segment;
mod upgrade;

pub(crate) use append::addressed;
pub use backing::Archive;
pub use checkpoint::CHECKPOINT_EVERY;
use checkpoint::Recent;
pub use cluster::{ClusterArchive, ClusterArchiveReader};
pub use dedup::DEDUP_WINDOW;
pub use delivery::Posted;
pub use inbox::InboxEntry;
use posting::{Found, Posting};
use segment::{first_id_of, record_key, segment_entry, segment_key};

/// A segment holds at most this many bytes of text (a batch may make several).
const SEGMENT_TEXT_BYTES: usize = 256 * 1024;
const FORMAT_KEY: &[u8] = b"archive_format";
const FORMAT: u64 = 3;

/// Where a normal message goes.
pub enum Destination {
    User(String),
    Group(GroupRecord),
}

/// A message to append, already checked by the handler (membership, sizes).
pub struct NewNormal {
    pub from: String,
    pub to: Destination,
    pub text: String,
    pub client_id: [u8; 16],
}

pub enum Appended {
    /// Stored now; to be delivered to `recipients` once durable.
    New {
        record: NormalRecord,
        recipients: Vec<String>,
    },
    /// This client id was stored before; nothing was written.
    Duplicate(StoredReceipt),
}

pub struct NormalArchive {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// One writer at a time: ids are handed out in commit order, and the
    /// duplicate check cannot race another writer.
    writer: Mutex<()>,
    /// One checkpoint at a time.
    checkpointer: Mutex<()>,
    /// Acknowledgements read and move a cursor: one at a time, so it never goes back.
    acks: Mutex<()>,
    recent: RwLock<Recent>,
    /// See [`checkpoint::CHUNK_POSTINGS`] (smaller in tests).
    chunk_postings: usize,
    /// Where a record's time (and so its id) comes from.
    clock: Clock,
}

impl NormalArchive {
    /// Opens the archive in `store`, rebuilding from its segments what the
    /// last checkpoint did not cover.
    pub fn open(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Result<Self, RelayError> {
        match store.get(Tree::Meta, FORMAT_KEY)? {
            Some(v) if v == FORMAT.to_be_bytes() => {}
            Some(v) if v == 2u64.to_be_bytes() => {
                tracing::info!("sealing the normal archive's indexes (layout 2 to 3), once");
                upgrade::from_layout_2(&*store, &sealer)?;
            }
            Some(_) => {
                return Err(RelayError::Corrupt(
                    "the normal archive has a layout this relay does not know",
                ));
            }
            None => {
                if store.last(Tree::Messages, &[], &[0xff; 9])?.is_some() {
                    return Err(RelayError::Corrupt(
                        "the normal archive was written by an older sotto (there is no migration)",
                    ));
                }
                let mut batch = Batch::default();
                batch.put(
                    Tree::Meta,
                    FORMAT_KEY.to_vec(),
                    FORMAT.to_be_bytes().to_vec(),
                );
                store.apply(batch)?;
            }
        }
        let archive = NormalArchive {
            store,
            sealer,
            writer: Mutex::new(()),
            checkpointer: Mutex::new(()),
            acks: Mutex::new(()),
            recent: RwLock::new(Recent::default()),
            chunk_postings: checkpoint::CHUNK_POSTINGS,
            clock: Clock::system(),
        };
        archive.recover()?;
        Ok(archive)
    }

    /// `blind`'s postings with `lo <= id < hi` that `keep` accepts, oldest
    /// first, at most `limit`: the checkpointed chunks, then the recent ones.
    /// Also returns the last id of the run of postings, from `lo` on, that
    /// `keep` rejected before the first it accepted (`lo - 1` if none).
    fn postings(
        &self,
        blind: &[u8; 16],
        lo: u64,
        hi: u64,
        keep: impl Fn(&Posting) -> bool,
        limit: usize,
    ) -> Result<(Vec<Posting>, u64), RelayError> {
        let in_range = |p: &Posting| lo <= p.id && p.id < hi;
        // Recent first: a checkpoint running meanwhile writes its chunks before
        // it forgets them here, so between the two reads nothing is missed.
        let recent: Vec<Posting> = self
            .read_recent()
            .postings
            .get(blind)
            .map(|list| list.iter().filter(|p| in_range(p)).copied().collect())
            .unwrap_or_default();
        let mut found = Found {
            keep,
            limit,
            out: Vec::new(),
            newest: None,
            rejected_to: lo.saturating_sub(1),
        };
        // The directory after the recent postings, for the same reason.
        let directory = match self.read_recent().directories.get(blind) {
            Some(directory) => directory.clone(),
            None => self.stored_directory(blind)?,
        };
        // Chunks are in id order: skip those that end before `lo`.
        let first = directory.partition_point(|last| *last < lo);
        'chunks: for n in first..directory.len() {
            if found.full() {
                break;
            }
            let chunk = self.chunk(blind, n)?;
            if chunk.first().is_some_and(|p| p.id >= hi) {
                break;
            }
            for p in chunk.into_iter().filter(|p| in_range(p)) {
                if !found.offer(p) {
                    break 'chunks;
                }
            }
        }
        for p in recent {
            if !found.offer(p) {
                break;
            }
        }
        Ok((found.out, found.rejected_to))
    }

    /// Whether `user` took part in any normal message.
    pub fn has_history(&self, user: &str) -> Result<bool, RelayError> {
        let blind = blind_user(&self.sealer, user);
        Ok(!self
            .postings(&blind, 0, u64::MAX, |_| true, 1)?
            .0
            .is_empty())
    }

    /// Loads the record a posting points at, copying only it out of its segment.
    fn load(&self, posting: Posting) -> Result<NormalRecord, RelayError> {
        let segment = posting.segment;
        let sealed = self
            .store
            .read(Tree::Messages, &segment_key(segment), |value| {
                segment_entry(value, posting.index).map(|e| e.map(<[u8]>::to_vec))
            })?
            .ok_or(RelayError::Corrupt("a posting without its segment"))??
            .ok_or(RelayError::Corrupt("a posting past the end of its segment"))?;
        let plain = self.sealer.open_padded(
            Tree::Messages,
            &record_key(segment, posting.index),
            &sealed,
        )?;
        Ok(NormalRecord::decode(plain.as_slice())?)
    }

    /// The read-only view of the archive that the warrant module is given.
    /// The archive with its records' times read from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn reader(self: &Arc<Self>) -> ArchiveReader {
        ArchiveReader {
            of: ReaderOf::Local(self.clone()),
        }
    }
}

/// A read-only view of the normal archive: records by participant and time.
/// It can read normal records and nothing else; it cannot write.
#[derive(Clone)]
pub struct ArchiveReader {
    of: ReaderOf,
}

#[derive(Clone)]
enum ReaderOf {
    Local(Arc<NormalArchive>),
    /// On a cluster: through the warrant desk's own NATS user.
    Cluster(ClusterArchiveReader),
}

/// How far behind the clock a cluster's archive is taken to be settled:
/// records are stamped by each node's clock as it publishes them.
const CLUSTER_SETTLING_MS: i64 = 10_000;

impl ArchiveReader {
    /// The view of an archive on the cluster.
    pub fn on_cluster(reader: ClusterArchiveReader) -> Self {
        ArchiveReader {
            of: ReaderOf::Cluster(reader),
        }
    }

    /// Every normal record `user` took part in with `from_ms <= sent_at < until_ms`,
    /// oldest first. Costs what those records cost: that user's postings in the window.
    pub fn records_of(
        &self,
        user: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<NormalRecord>, RelayError> {
        let a = match &self.of {
            ReaderOf::Local(a) => a,
            ReaderOf::Cluster(reader) => return reader.records_of(user, from_ms, until_ms),
        };
        let blind = blind_user(&a.sealer, user);
        let lo = first_id_of(from_ms);
        let hi = first_id_of(until_ms);
        a.postings(&blind, lo, hi, |_| true, usize::MAX)?
            .0
            .into_iter()
            .map(|p| a.load(p))
            .collect()
    }

    /// A time before which the archive already holds every record it ever
    /// will: no append is under way (it waits for the writer's turn), and
    /// every later one is stamped at or after it (ids never go back, and the
    /// clock is read before the writer is free again). On a cluster, a
    /// margin behind the clock ([`CLUSTER_SETTLING_MS`]): no node holds a
    /// turn the others wait for.
    pub fn settled_before(&self) -> i64 {
        match &self.of {
            ReaderOf::Local(archive) => {
                let _no_append = archive.writer.lock().unwrap_or_else(|p| p.into_inner());
                archive.clock.now_ms()
            }
            ReaderOf::Cluster(_) => crate::now_ms() - CLUSTER_SETTLING_MS,
        }
    }
}

#[cfg(test)]
mod tests;
