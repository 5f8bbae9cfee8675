//! The normal archive: every normal-mode message, sealed, with its indexes.
//!
//! Invariant: nothing readable reaches disk. Every record is sealed under its
//! own key; index keys and values hold only blinded names, ids and the
//! random client ids that senders chose.
//!
//! Layout. With sled 0.34 each key written costs about as much as the rest of
//! a send, so a send writes no key of its own:
//! - **segments** (`Messages`): one per write batch, keyed by its first message
//!   id; the value holds the batch's records, each sealed on its own under
//!   (segment, index in it);
//! - **ids** are time-ordered, `sent_at_ms << 16 | n`, strictly increasing in
//!   commit order (also across restarts): a time window is an id range, and an
//!   acknowledgement can never skip a message committed later;
//! - **postings**: for each participant of a message, (id, index, whether they
//!   sent it). The newest live in memory; every [`CHECKPOINT_EVERY`] messages a
//!   checkpoint writes them as one chunk per user (`ByParticipant`: blind ‖ last
//!   id), with each sender's latest client ids for deduplication (`ClientIds`,
//!   see [`DEDUP_WINDOW`]), then marks the last id covered (`Meta`). At open,
//!   the segments after the mark are read again, so what was only in memory
//!   is rebuilt from disk after a crash;
//! - **inbox**: per user, the id up to which they acknowledged (`Inbox`); what
//!   they still have to fetch is every posting after it that they did not send.
//!
//! One person's records in a window cost what those records cost (their
//! postings, then one segment read each), never a scan of the archive.
//! [`NormalArchive::reader`] hands out [`ArchiveReader`], the read-only view
//! the warrant module is given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use prost::Message;

use crate::accounts::{blind_user, user_scoped_key as user_key};
use crate::records::{GroupRecord, NormalRecord, SegmentRecord, StoredReceipt};
use crate::seal::Sealer;
use crate::store::{Batch, Op, Store, Tree};
use crate::{RelayError, now_ms};

/// Bits of an id below its millisecond.
const ID_SHIFT: u32 = 16;
/// A checkpoint is due once this many messages are only in memory.
pub const CHECKPOINT_EVERY: usize = 4096;
/// A segment holds at most this many bytes of text (a batch may make several).
const SEGMENT_TEXT_BYTES: usize = 256 * 1024;
const CHECKPOINT_KEY: &[u8] = b"archive_checkpoint";
const FORMAT_KEY: &[u8] = b"archive_format";
const FORMAT: u64 = 2;

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

/// One entry of a user's inbox: its delivery sequence number and the record.
pub struct InboxEntry {
    pub seq: u64,
    pub record: NormalRecord,
}

/// One message a user took part in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Posting {
    id: u64,
    /// Its place in its segment, whose key is `id - index`.
    index: u16,
    /// The user sent it (so it is not in their inbox).
    sent: bool,
}

const POSTING_LEN: usize = 11;

impl Posting {
    fn segment(self) -> u64 {
        self.id - u64::from(self.index)
    }

    fn encode_all(postings: &[Posting]) -> Vec<u8> {
        let mut out = Vec::with_capacity(postings.len() * POSTING_LEN);
        for p in postings {
            out.extend_from_slice(&p.id.to_be_bytes());
            out.extend_from_slice(&p.index.to_be_bytes());
            out.push(u8::from(p.sent));
        }
        out
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Posting>, RelayError> {
        if !bytes.len().is_multiple_of(POSTING_LEN) {
            return Err(RelayError::Corrupt("a chunk of postings"));
        }
        Ok(bytes
            .chunks_exact(POSTING_LEN)
            .map(|c| Posting {
                id: u64::from_be_bytes(c[..8].try_into().expect("8 bytes")),
                index: u16::from_be_bytes(c[8..10].try_into().expect("2 bytes")),
                sent: c[10] == 1,
            })
            .collect())
    }
}

/// What was appended since the last checkpoint: only in memory (and in the
/// segments on disk, from which [`NormalArchive::open`] rebuilds it).
#[derive(Default)]
struct Recent {
    postings: HashMap<[u8; 16], Vec<Posting>>,
    /// dedup key (blind sender ‖ client id) → the first store's answer.
    receipts: HashMap<Vec<u8>, StoredReceipt>,
    /// The client id windows the last checkpoint wrote, of the senders active
    /// before it: what the store holds for them, without reading it.
    windows: HashMap<[u8; 16], Vec<u8>>,
    /// The newest id applied (0: none yet).
    last_id: u64,
}

impl Recent {
    fn remember(
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
}

/// A segment's key: its first message id.
fn segment_key(segment: u64) -> [u8; 8] {
    segment.to_be_bytes()
}

/// The associated data of one record: its segment and its index there.
fn record_key(segment: u64, index: u16) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..8].copy_from_slice(&segment.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The `index`-th sealed record of an encoded [`SegmentRecord`], found
/// without decoding (or copying) the others.
fn segment_entry(segment: &[u8], index: u16) -> Result<Option<&[u8]>, RelayError> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut buf = segment;
    let mut seen = 0u16;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag != 1 || wire_type != WireType::LengthDelimited {
            return Err(RelayError::Corrupt("a segment"));
        }
        let len = usize::try_from(decode_varint(&mut buf)?)
            .map_err(|_| RelayError::Corrupt("a segment"))?;
        if len > buf.len() {
            return Err(RelayError::Corrupt("a segment"));
        }
        let (entry, rest) = buf.split_at(len);
        if seen == index {
            return Ok(Some(entry));
        }
        seen += 1;
        buf = rest;
    }
    Ok(None)
}

/// The first id of millisecond `ms` (saturating: far-future windows are open-ended).
fn first_id_of(ms: i64) -> u64 {
    let ms = ms.max(0) as u64;
    if ms > u64::MAX >> ID_SHIFT {
        u64::MAX
    } else {
        ms << ID_SHIFT
    }
}

fn sent_at_of(id: u64) -> i64 {
    (id >> ID_SHIFT) as i64
}

/// The end of everything under `blind` in a user-scoped tree.
fn user_end(blind: &[u8; 16]) -> Vec<u8> {
    let mut end = blind.to_vec();
    end.extend_from_slice(&[0xff; 9]);
    end
}

fn read_u64(bytes: &[u8], what: &'static str) -> Result<u64, RelayError> {
    Ok(u64::from_be_bytes(
        bytes.try_into().map_err(|_| RelayError::Corrupt(what))?,
    ))
}

/// How many of a sender's latest client ids are remembered, so that a retry
/// is recognised (and not stored twice) as long as the first store is among
/// the sender's latest this many messages. A client retries what it has
/// not heard back about before it sends anything newer, so the window only
/// has to cover what a client can have in flight, with a wide margin.
pub const DEDUP_WINDOW: usize = 256;
/// client id(16) ‖ message id(8).
const WINDOW_ENTRY: usize = 24;

/// The message id stored under `client_id` in a sender's window, if any.
fn window_find(window: &[u8], client_id: &[u8]) -> Result<Option<u64>, RelayError> {
    if !window.len().is_multiple_of(WINDOW_ENTRY) {
        return Err(RelayError::Corrupt("a client id window"));
    }
    Ok(window
        .chunks_exact(WINDOW_ENTRY)
        .find(|entry| &entry[..16] == client_id)
        .map(|entry| u64::from_be_bytes(entry[16..].try_into().expect("8 bytes"))))
}

/// `window` followed by `latest` (oldest first; ids the window already holds
/// are skipped, as after a checkpoint written twice), cut to the newest
/// [`DEDUP_WINDOW`] entries.
fn window_extend(window: &[u8], latest: &[(&[u8], u64)]) -> Result<Vec<u8>, RelayError> {
    if !window.len().is_multiple_of(WINDOW_ENTRY) {
        return Err(RelayError::Corrupt("a client id window"));
    }
    let newest = window.chunks_exact(WINDOW_ENTRY).last().map_or(0, |entry| {
        u64::from_be_bytes(entry[16..].try_into().expect("8 bytes"))
    });
    let mut out = window.to_vec();
    for (client_id, id) in latest.iter().filter(|(_, id)| *id > newest) {
        out.extend_from_slice(client_id);
        out.extend_from_slice(&id.to_be_bytes());
    }
    let keep = DEDUP_WINDOW * WINDOW_ENTRY;
    if out.len() > keep {
        out.drain(..out.len() - keep);
    }
    Ok(out)
}

/// Postings gathered in id order by [`NormalArchive::postings`].
struct Found<F> {
    keep: F,
    limit: usize,
    out: Vec<Posting>,
    /// The newest id offered: chunks rewritten after a crash may overlap, and
    /// recent postings may also be in a chunk just written; ids only grow.
    newest: Option<u64>,
    /// See [`NormalArchive::postings`].
    rejected_to: u64,
}

impl<F: Fn(&Posting) -> bool> Found<F> {
    fn full(&self) -> bool {
        self.out.len() >= self.limit
    }

    /// Takes the next posting (a repeat is ignored); false once full.
    fn offer(&mut self, p: Posting) -> bool {
        if self.newest.is_some_and(|n| p.id <= n) {
            return !self.full();
        }
        self.newest = Some(p.id);
        if (self.keep)(&p) {
            self.out.push(p);
        } else if self.out.is_empty() {
            self.rejected_to = p.id;
        }
        !self.full()
    }
}

/// The writes of one segment, staged before they are applied.
#[derive(Default)]
struct Staged {
    sealed: Vec<Vec<u8>>,
    text_bytes: usize,
    postings: Vec<([u8; 16], Posting)>,
    receipts: Vec<(Vec<u8>, StoredReceipt)>,
}

impl NormalArchive {
    /// Opens the archive in `store`, rebuilding from its segments what the
    /// last checkpoint did not cover.
    pub fn open(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Result<Self, RelayError> {
        match store.get(Tree::Meta, FORMAT_KEY)? {
            Some(v) if v == FORMAT.to_be_bytes() => {}
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
        };
        archive.recover()?;
        Ok(archive)
    }

    /// Reads the segments after the last checkpoint back into memory.
    fn recover(&self) -> Result<(), RelayError> {
        let checkpointed = match self.store.get(Tree::Meta, CHECKPOINT_KEY)? {
            Some(v) => read_u64(&v, "the archive checkpoint")?,
            None => 0,
        };
        let mut recent = Recent {
            last_id: checkpointed,
            ..Recent::default()
        };
        if let Some((key, value)) = self.store.last(Tree::Messages, &[], &[0xff; 9])? {
            let first = read_u64(&key, "a segment key")?;
            let records = SegmentRecord::decode(value.as_slice())?.sealed.len() as u64;
            recent.last_id = recent.last_id.max(first + records.saturating_sub(1));
        }
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

    fn dm_conversation(&self, a: &str, b: &str) -> [u8; 16] {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut pair = Vec::with_capacity(lo.len() + hi.len() + 1);
        pair.extend_from_slice(lo.as_bytes());
        pair.push(0);
        pair.extend_from_slice(hi.as_bytes());
        self.sealer.blind("dm", &pair)
    }

    fn dedup_key(&self, from: &str, client_id: &[u8]) -> Vec<u8> {
        let mut key = blind_user(&self.sealer, from).to_vec();
        key.extend_from_slice(client_id);
        key
    }

    /// Appends one message. Not yet durable.
    pub fn append(&self, msg: NewNormal) -> Result<Appended, RelayError> {
        self.append_many(vec![msg])
            .pop()
            .unwrap_or(Err(RelayError::Corrupt("an append returned no result")))
    }

    /// Appends messages (in order): each run of them that fits a segment is
    /// one write, so many sends share one key. A message whose client id was
    /// stored before (or earlier in the same call) is a duplicate and writes
    /// nothing. Not yet durable: the caller waits for the group commit.
    pub fn append_many(&self, msgs: Vec<NewNormal>) -> Vec<Result<Appended, RelayError>> {
        let _serial = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut results = Vec::with_capacity(msgs.len());
        let mut fresh: HashMap<Vec<u8>, StoredReceipt> = HashMap::new();
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let first = (self.read_recent().last_id + 1).max(first_id_of(now_ms()));
            let mut staged = Staged::default();
            let mut part = Vec::new();
            while staged.text_bytes < SEGMENT_TEXT_BYTES
                && staged.sealed.len() < usize::from(u16::MAX)
            {
                let Some(msg) = msgs.next() else { break };
                part.push(self.stage(msg, first, &mut staged, &mut fresh));
            }
            results.extend(self.write_segment(first, staged, part));
        }
        results
    }

    /// Writes one staged segment; every message of it fails if the write does.
    fn write_segment(
        &self,
        first: u64,
        staged: Staged,
        results: Vec<Result<Appended, RelayError>>,
    ) -> Vec<Result<Appended, RelayError>> {
        if staged.sealed.is_empty() {
            return results;
        }
        let value = SegmentRecord {
            sealed: staged.sealed,
        }
        .encode_to_vec();
        let mut batch = Batch::default();
        batch.put(Tree::Messages, segment_key(first).to_vec(), value);
        match self.store.apply(batch) {
            Ok(_) => {
                self.recent
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remember(staged.postings, staged.receipts);
                results
            }
            Err(e) => crate::failed_with(results, &e),
        }
    }

    fn read_recent(&self) -> std::sync::RwLockReadGuard<'_, Recent> {
        self.recent.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one message to the segment starting at id `first` (or finds it is a duplicate).
    fn stage(
        &self,
        msg: NewNormal,
        first: u64,
        staged: &mut Staged,
        fresh: &mut HashMap<Vec<u8>, StoredReceipt>,
    ) -> Result<Appended, RelayError> {
        let dedup_key = self.dedup_key(&msg.from, &msg.client_id);
        if let Some(receipt) = fresh.get(&dedup_key) {
            return Ok(Appended::Duplicate(receipt.clone()));
        }
        let (sender, client_id) = dedup_key.split_at(16);
        let earlier = {
            let recent = self.read_recent();
            match recent.receipts.get(&dedup_key) {
                Some(receipt) => Some(receipt.id),
                None => match recent.windows.get(sender) {
                    Some(window) => window_find(window, client_id)?,
                    None => None,
                },
            }
        };
        let earlier = match earlier {
            Some(id) => Some(id),
            None if self.read_recent().windows.contains_key(sender) => None,
            None => match self.store.get(Tree::ClientIds, sender)? {
                Some(window) => window_find(&window, client_id)?,
                None => None,
            },
        };
        if let Some(id) = earlier {
            return Ok(Appended::Duplicate(StoredReceipt {
                id,
                sent_at: sent_at_of(id),
            }));
        }
        let (conversation, to, group, participants) = match msg.to {
            Destination::User(to) => {
                let conversation = self.dm_conversation(&msg.from, &to);
                let mut participants = vec![msg.from.clone(), to.clone()];
                participants.dedup();
                (conversation, to, String::new(), participants)
            }
            Destination::Group(group) => (
                self.sealer.blind("group", group.name.as_bytes()),
                String::new(),
                group.name,
                group.members,
            ),
        };
        let index = u16::try_from(staged.sealed.len())
            .map_err(|_| RelayError::Corrupt("a segment is full"))?;
        let id = first + u64::from(index);
        let record = NormalRecord {
            id,
            conversation: conversation.to_vec(),
            from: msg.from,
            to,
            group,
            participants,
            text: msg.text,
            sent_at: sent_at_of(id),
            client_id: msg.client_id.to_vec(),
        };
        staged.sealed.push(self.sealer.seal(
            Tree::Messages,
            &record_key(first, index),
            &record.encode_to_vec(),
        ));
        staged.text_bytes += record.text.len();
        fresh.insert(
            dedup_key.clone(),
            StoredReceipt {
                id,
                sent_at: record.sent_at,
            },
        );
        let recipients = self.index(&record, index, dedup_key, staged);
        Ok(Appended::New { record, recipients })
    }

    /// Stages `record`'s postings and receipt (under `dedup_key`, which starts
    /// with the sender's blind); returns who receives it.
    fn index(
        &self,
        record: &NormalRecord,
        index: u16,
        dedup_key: Vec<u8>,
        staged: &mut Staged,
    ) -> Vec<String> {
        let mut recipients = Vec::new();
        for person in &record.participants {
            let sent = *person == record.from;
            let blind = match dedup_key.get(..16) {
                Some(sender) if sent => sender.try_into().expect("16 bytes"),
                _ => blind_user(&self.sealer, person),
            };
            let posting = Posting {
                id: record.id,
                index,
                sent,
            };
            staged.postings.push((blind, posting));
            if !sent {
                recipients.push(person.clone());
            }
        }
        staged.receipts.push((
            dedup_key,
            StoredReceipt {
                id: record.id,
                sent_at: record.sent_at,
            },
        ));
        recipients
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
        let end = user_end(blind);
        let mut cursor = user_key(blind, lo);
        'chunks: while !found.full() {
            let rows = self.store.range(Tree::ByParticipant, &cursor, &end, 64)?;
            let Some((last, _)) = rows.last() else { break };
            cursor = last.clone();
            cursor.push(0);
            for (_, chunk) in rows {
                let chunk = Posting::decode_all(&chunk)?;
                if chunk.first().is_some_and(|p| p.id >= hi) {
                    break 'chunks;
                }
                for p in chunk.into_iter().filter(|p| in_range(p)) {
                    if !found.offer(p) {
                        break 'chunks;
                    }
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

    /// Loads the record a posting points at, copying only it out of its segment.
    fn load(&self, posting: Posting) -> Result<NormalRecord, RelayError> {
        let segment = posting.segment();
        let mut sealed = None;
        let found = self
            .store
            .read(Tree::Messages, &segment_key(segment), &mut |value| {
                sealed = Some(segment_entry(value, posting.index).map(|e| e.map(<[u8]>::to_vec)));
            })?;
        if !found {
            return Err(RelayError::Corrupt("a posting without its segment"));
        }
        let sealed = sealed
            .expect("read hands over the value it found")?
            .ok_or(RelayError::Corrupt("a posting past the end of its segment"))?;
        let plain =
            self.sealer
                .open(Tree::Messages, &record_key(segment, posting.index), &sealed)?;
        Ok(NormalRecord::decode(plain.as_slice())?)
    }

    /// The id up to which `blind` acknowledged (0: nothing yet).
    fn acked(&self, blind: &[u8; 16]) -> Result<u64, RelayError> {
        match self.store.get(Tree::Inbox, blind)? {
            Some(v) => read_u64(&v, "an inbox cursor"),
            None => Ok(0),
        }
    }

    /// What `user` has not acknowledged yet, oldest first; `more` when the limit cut it.
    pub fn inbox(&self, user: &str, limit: usize) -> Result<(Vec<InboxEntry>, bool), RelayError> {
        let blind = blind_user(&self.sealer, user);
        let after = self.acked(&blind)?;
        let (postings, sent_to) = self.postings(
            &blind,
            after.saturating_add(1),
            u64::MAX,
            |p| !p.sent,
            limit + 1,
        )?;
        // What the user sent right after their cursor is never in their inbox:
        // move past it, so the next fetch does not read it again.
        if sent_to > after {
            self.move_cursor(&blind, sent_to)?;
        }
        let more = postings.len() > limit;
        let entries = postings
            .into_iter()
            .take(limit)
            .map(|p| {
                Ok(InboxEntry {
                    seq: p.id,
                    record: self.load(p)?,
                })
            })
            .collect::<Result<_, RelayError>>()?;
        Ok((entries, more))
    }

    /// Marks `user`'s messages up to and including `upto` as delivered (never
    /// past the newest message stored, so nothing later is skipped). Not yet durable.
    pub fn ack(&self, user: &str, upto: u64) -> Result<(), RelayError> {
        let blind = blind_user(&self.sealer, user);
        self.move_cursor(&blind, upto.min(self.read_recent().last_id))
    }

    /// Moves `blind`'s inbox cursor forward to `upto` (never back).
    fn move_cursor(&self, blind: &[u8; 16], upto: u64) -> Result<(), RelayError> {
        let _one = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        if upto <= self.acked(blind)? {
            return Ok(());
        }
        let mut batch = Batch::default();
        batch.put(Tree::Inbox, blind.to_vec(), upto.to_be_bytes().to_vec());
        self.store.apply(batch)?;
        Ok(())
    }

    /// The read-only view of the archive that the warrant module is given.
    pub fn reader(self: &Arc<Self>) -> ArchiveReader {
        ArchiveReader {
            archive: self.clone(),
        }
    }
}

/// A read-only view of the normal archive: records by participant and time.
/// It can read normal records and nothing else; it cannot write.
#[derive(Clone)]
pub struct ArchiveReader {
    archive: Arc<NormalArchive>,
}

impl ArchiveReader {
    /// Every normal record `user` took part in with `from_ms <= sent_at <= until_ms`,
    /// oldest first. Costs what those records cost: that user's postings in the window.
    pub fn records_of(
        &self,
        user: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<NormalRecord>, RelayError> {
        let a = &self.archive;
        let blind = blind_user(&a.sealer, user);
        let lo = first_id_of(from_ms);
        let hi = first_id_of(until_ms.saturating_add(1));
        a.postings(&blind, lo, hi, |_| true, usize::MAX)?
            .0
            .into_iter()
            .map(|p| a.load(p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;

    type Fixture = TestDir;

    impl TestDir {
        fn open(&self, store: &Arc<dyn Store>) -> NormalArchive {
            NormalArchive::open(store.clone(), self.sealer.clone()).unwrap()
        }
    }

    fn dm(from: &str, to: &str, text: &str, n: u8) -> NewNormal {
        NewNormal {
            from: from.into(),
            to: Destination::User(to.into()),
            text: text.into(),
            client_id: [n; 16],
        }
    }

    fn texts(entries: &[InboxEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.record.text.as_str()).collect()
    }

    fn stored(result: Result<Appended, RelayError>) -> NormalRecord {
        match result.unwrap() {
            Appended::New { record, .. } => record,
            Appended::Duplicate(_) => panic!("a fresh message was taken for a duplicate"),
        }
    }

    #[test]
    fn ids_grow_in_commit_order_and_carry_the_send_time() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        let before = now_ms();
        let first = archive.append_many(vec![dm("ann", "bob", "1", 1), dm("ann", "bob", "2", 2)]);
        let second = stored(archive.append(dm("bob", "ann", "3", 3)));
        let ids: Vec<u64> = first
            .into_iter()
            .map(|r| stored(r).id)
            .chain([second.id])
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(second.sent_at >= before && second.sent_at <= now_ms());
        assert_eq!(sent_at_of(second.id), second.sent_at);
    }

    #[test]
    fn the_inbox_holds_what_others_sent_until_acknowledged() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        archive.append(dm("ann", "bob", "hello bob", 1)).unwrap();
        archive.append(dm("bob", "ann", "hello ann", 2)).unwrap();
        archive.append(dm("ann", "bob", "again", 3)).unwrap();
        let (inbox, more) = archive.inbox("bob", 10).unwrap();
        assert_eq!(texts(&inbox), ["hello bob", "again"]);
        assert!(!more);
        let (first, more) = archive.inbox("bob", 1).unwrap();
        assert_eq!(texts(&first), ["hello bob"]);
        assert!(more);
        archive.ack("bob", first[0].seq).unwrap();
        assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["again"]);
        assert_eq!(texts(&archive.inbox("ann", 10).unwrap().0), ["hello ann"]);
    }

    #[test]
    fn a_fetch_moves_past_what_the_user_sent_themselves() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        let mut sent = 0;
        for n in 0..5u8 {
            sent = stored(archive.append(dm("ann", "bob", "from ann", n))).id;
        }
        assert!(archive.inbox("ann", 10).unwrap().0.is_empty());
        let cursor =
            |archive: &NormalArchive| archive.acked(&blind_user(&f.sealer, "ann")).unwrap();
        assert_eq!(cursor(&archive), sent);
        // Not past what ann has yet to read.
        let unread = stored(archive.append(dm("bob", "ann", "for ann", 9))).id;
        archive.append(dm("ann", "bob", "later", 10)).unwrap();
        assert_eq!(texts(&archive.inbox("ann", 10).unwrap().0), ["for ann"]);
        assert!(cursor(&archive) < unread);
        archive.ack("ann", unread).unwrap();
        assert!(archive.inbox("ann", 10).unwrap().0.is_empty());
    }

    #[test]
    fn an_ack_past_the_newest_message_does_not_swallow_later_ones() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        archive.append(dm("ann", "bob", "before", 1)).unwrap();
        archive.ack("bob", u64::MAX).unwrap();
        archive.append(dm("ann", "bob", "after", 2)).unwrap();
        assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["after"]);
    }

    #[test]
    fn a_client_id_is_stored_once_before_and_after_a_checkpoint_and_a_restart() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        let first = stored(archive.append(dm("ann", "bob", "once", 7)));
        let duplicate = |archive: &NormalArchive| match archive.append(dm("ann", "bob", "once", 7))
        {
            Ok(Appended::Duplicate(receipt)) => receipt.id,
            _ => panic!("a retry was stored again"),
        };
        assert_eq!(duplicate(&archive), first.id);
        assert_eq!(archive.checkpoint().unwrap(), 1);
        assert_eq!(duplicate(&archive), first.id);
        // Another sender may use the same client id.
        stored(archive.append(dm("bob", "ann", "mine", 7)));
        drop(archive);
        let archive = f.open(&store);
        assert_eq!(duplicate(&archive), first.id);
        assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["once"]);
    }

    #[test]
    fn a_retry_is_recognised_within_the_senders_latest_messages() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        let send = |n: u16| {
            let mut client_id = [0u8; 16];
            client_id[..2].copy_from_slice(&n.to_be_bytes());
            archive.append(NewNormal {
                from: "ann".into(),
                to: Destination::User("bob".into()),
                text: format!("{n}"),
                client_id,
            })
        };
        let first = stored(send(0));
        for n in 1..DEDUP_WINDOW as u16 {
            stored(send(n));
        }
        archive.checkpoint().unwrap();
        // The oldest of the window is still recognised...
        assert!(matches!(send(0), Ok(Appended::Duplicate(r)) if r.id == first.id));
        stored(send(DEDUP_WINDOW as u16));
        archive.checkpoint().unwrap();
        // ...until newer messages pushed it out of the window.
        stored(send(0));
    }

    #[test]
    fn what_no_checkpoint_covered_is_rebuilt_from_the_segments() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        archive.append(dm("ann", "bob", "checkpointed", 1)).unwrap();
        archive.checkpoint().unwrap();
        let last = stored(archive.append(dm("ann", "bob", "only in a segment", 2)));
        // A crash: the archive is gone without a checkpoint.
        drop(archive);
        let archive = f.open(&store);
        assert_eq!(
            texts(&archive.inbox("bob", 10).unwrap().0),
            ["checkpointed", "only in a segment"]
        );
        assert!(stored(archive.append(dm("ann", "bob", "next", 3))).id > last.id);
        assert!(matches!(
            archive.append(dm("ann", "bob", "only in a segment", 2)),
            Ok(Appended::Duplicate(_))
        ));
    }

    #[test]
    fn chunks_written_twice_after_a_crash_do_not_repeat_messages() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        archive.append(dm("ann", "bob", "a", 1)).unwrap();
        archive.append(dm("ann", "bob", "b", 2)).unwrap();
        archive.checkpoint().unwrap();
        // The checkpoint mark is lost (a crash before it reached disk): the
        // next checkpoint covers the same messages again, and more.
        let mut rewind = Batch::default();
        rewind.put(
            Tree::Meta,
            CHECKPOINT_KEY.to_vec(),
            0u64.to_be_bytes().to_vec(),
        );
        store.apply(rewind).unwrap();
        drop(archive);
        let archive = Arc::new(f.open(&store));
        archive.append(dm("ann", "bob", "c", 3)).unwrap();
        archive.checkpoint().unwrap();
        assert!(store.count(Tree::ByParticipant).unwrap() >= 3);
        assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["a", "b", "c"]);
        let all = archive
            .reader()
            .records_of("ann", 0, i64::MAX / 1000)
            .unwrap();
        assert_eq!(
            all.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn a_window_returns_exactly_the_records_sent_in_it() {
        let f = Fixture::new();
        let store = f.store();
        let archive = Arc::new(f.open(&store));
        let mut records = Vec::new();
        for n in 0..6u8 {
            records.push(stored(archive.append(dm("ann", "bob", &n.to_string(), n))));
            if n == 2 {
                archive.checkpoint().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        let reader = archive.reader();
        let (from, until) = (records[1].sent_at, records[4].sent_at);
        let got = reader.records_of("bob", from, until).unwrap();
        let want: Vec<_> = records
            .iter()
            .filter(|r| r.sent_at >= from && r.sent_at <= until)
            .map(|r| r.id)
            .collect();
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), want);
        assert_eq!(want.first(), Some(&records[1].id));
        assert_eq!(want.last(), Some(&records[4].id));
        assert!(reader.records_of("carol", 0, i64::MAX).unwrap().is_empty());
    }

    #[test]
    fn group_messages_reach_every_member_but_the_sender() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        let group = GroupRecord {
            name: "team".into(),
            members: vec!["ann".into(), "bob".into(), "cid".into()],
            created_by: "ann".into(),
            created_at: 0,
        };
        let appended = archive
            .append(NewNormal {
                from: "ann".into(),
                to: Destination::Group(group),
                text: "hi team".into(),
                client_id: [1; 16],
            })
            .unwrap();
        let Appended::New { recipients, .. } = appended else {
            panic!("stored as a duplicate")
        };
        assert_eq!(recipients, ["bob", "cid"]);
        assert!(archive.inbox("ann", 10).unwrap().0.is_empty());
        assert_eq!(texts(&archive.inbox("cid", 10).unwrap().0), ["hi team"]);
    }

    #[test]
    fn large_batches_split_into_segments() {
        let f = Fixture::new();
        let store = f.store();
        let archive = f.open(&store);
        let big = "x".repeat(60 * 1024);
        let batch = (0..10u8).map(|n| dm("ann", "bob", &big, n)).collect();
        for result in archive.append_many(batch) {
            stored(result);
        }
        // A segment closes once it holds 256 KiB of text: five of these each.
        assert_eq!(store.count(Tree::Messages).unwrap(), 2);
        assert_eq!(archive.inbox("bob", 20).unwrap().0.len(), 10);
    }

    #[test]
    fn a_segment_entry_is_found_without_decoding_the_others() {
        let sealed: Vec<Vec<u8>> = vec![b"first".to_vec(), Vec::new(), vec![7; 300]];
        let encoded = SegmentRecord {
            sealed: sealed.clone(),
        }
        .encode_to_vec();
        for (i, want) in sealed.iter().enumerate() {
            assert_eq!(
                segment_entry(&encoded, i as u16).unwrap(),
                Some(want.as_slice())
            );
        }
        assert_eq!(segment_entry(&encoded, 3).unwrap(), None);
        assert!(segment_entry(&encoded[..encoded.len() - 1], 2).is_err());
        assert!(segment_entry(&[0x08, 0x01], 0).is_err());
    }

    #[test]
    fn an_archive_of_an_older_layout_is_refused_by_name() {
        let f = Fixture::new();
        let store = f.store();
        let mut old = Batch::default();
        old.put(Tree::Messages, vec![7; 32], b"sealed".to_vec());
        store.apply(old).unwrap();
        let err = NormalArchive::open(store, f.sealer.clone())
            .err()
            .expect("an old layout is refused");
        assert!(err.to_string().contains("older sotto"), "{err}");
    }
}
