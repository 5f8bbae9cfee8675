//! The normal archive on the cluster: every normal message, sealed, one copy
//! per participant in the stream [`HIST`](crate::cluster::HIST), on the subject
//! `hist.<owner token>.<conversation token>` (keyed blinds, the second one
//! per owner: the cluster's operator sees how many copies someone holds,
//! never whose, and cannot match two people's copies of one conversation).
//!
//! - A message's **id** is the stream sequence of its sender's copy, which
//!   the stream's Raft log hands out in commit order across every node; the
//!   other copies carry it in their record. An id says nothing of the time
//!   (the record's `sent_at` does).
//! - A user's **inbox** is their copies after their cursor that they did not
//!   send; an entry's delivery sequence is its copy's stream sequence, so an
//!   acknowledgement never skips a copy committed later, whichever node wrote
//!   it. The cursor is a sealed value in the bucket [`CURSORS`]; two nodes
//!   moving one user's cursor at once may leave the lower value (the
//!   compare-and-set that would prevent it is unsound on servers before
//!   2.9.21, see [`crate::cluster::records`]): then messages are handed out again,
//!   and the client, which knows their ids, drops them. Never lost.
//! - A **retry** of a send (same sender, same client id) is recognised by the
//!   stream's duplicate window ([`DEDUP_WINDOW`]), which answers with the first
//!   copy's sequence; the other copies are published again under message ids
//!   of their own, so a relay node that stopped between two copies leaves
//!   nothing missing once the sender retries.
//! - The warrant desk reads through [`ClusterArchiveReader`], made on the
//!   desk's own NATS user, whom the server lets read this stream and nothing
//!   of the secret queue.
//!
//! - **Delivery receipts** (`crate::delivery`): a message is delivered to a
//!   recipient once their copy of it is at or below their cursor. Copies are
//!   in commit order, not id order, so a recipient's copies are read per
//!   conversation ([`ClusterArchive::delivered_to`]): a message is
//!   delivered with every older one of its sender's there once its copy is
//!   at or below the cursor and none of those older ones still waits. Reads
//!   are bounded; a reading cut short claims nothing.
//!
//! Not yet here: a faster way to a window of a long history than reading
//! the target's copies from the first.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{kv, stream};
use prost::Message;

use super::{Appended, InboxEntry, NewNormal, addressed};
use crate::accounts::blind_user;
use crate::cluster::HIST;
use crate::cluster::jetstream::{Cluster, ClusterError, backend, next_on};
use crate::records::{NormalRecord, StoredReceipt, read_u64};
use crate::seal::Sealer;
use crate::store::Tree;
use crate::{Clock, RelayError};

/// user token → sealed stream sequence up to which they acknowledged.
pub const CURSORS: &str = "cursors";
/// What an acknowledgement tells: the senders of 1:1 messages told now,
/// and the group messages acknowledged (their senders are told once every
/// other member has them).
#[derive(Default)]
pub struct AckTells {
    pub told: Vec<(String, sotto_proto::v1::Delivered)>,
    pub posts: Vec<NormalRecord>,
}

/// How many of one sender's messages in one group an acknowledgement
/// checks for a receipt (the newest first: one delivered covers the older).
pub const GROUP_CANDIDATES: usize = 8;
/// How long the stream recognises a retried send.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(600);

const OWNER_DOMAIN: &str = "cluster/hist owner";
const CONVERSATION_DOMAIN: &str = "cluster/hist conversation";
const SENT_DOMAIN: &str = "cluster/hist sent";
const COPY_DOMAIN: &str = "cluster/hist copy";
const CURSOR_DOMAIN: &str = "cluster/cursor";

/// One bounded read of a subject's copies.
enum Read {
    Copy {
        sequence: u64,
        sent: bool,
        record: NormalRecord,
    },
    /// There is none at or after where the read began.
    End,
    /// The reads' budget is spent: nothing was read.
    OutOfReads,
}

/// What reads a user's copies: the sealer and the stream, on whichever NATS
/// user (the relay's, or the warrant desk's).
#[derive(Clone)]
struct Copies {
    cluster: Cluster,
    sealer: Arc<Sealer>,
    hist: stream::Stream,
}

impl Copies {
    fn owner(&self, user: &str) -> String {
        hex::encode(
            self.sealer
                .blind(OWNER_DOMAIN, &blind_user(&self.sealer, user)),
        )
    }

    /// Where `owner`'s copies of a conversation go. The conversation's
    /// token is the owner's own: two people's copies of one message share
    /// nothing the operator could match (but the moment they were written).
    fn subject(&self, owner: &str, conversation: &[u8]) -> String {
        let owner_blind = blind_user(&self.sealer, owner);
        format!(
            "hist.{}.{}",
            self.owner(owner),
            hex::encode(self.sealer.blind(
                CONVERSATION_DOMAIN,
                &[owner_blind.as_slice(), conversation].concat()
            ))
        )
    }

    /// A copy as stored: whether its owner sent it, and the record.
    fn seal(&self, subject: &str, sent: bool, record: &NormalRecord) -> Vec<u8> {
        let mut plain = vec![u8::from(sent)];
        record.encode(&mut plain).expect("a Vec grows");
        self.sealer
            .seal_padded(Tree::Messages, subject.as_bytes(), &plain)
    }

    /// Opens a copy read at `sequence`: whether its owner sent it, and the
    /// record, with its id (a sender's copy's is its own sequence).
    fn open(
        &self,
        subject: &str,
        sequence: u64,
        sealed: &[u8],
    ) -> Result<(bool, NormalRecord), RelayError> {
        let plain = self
            .sealer
            .open_padded(Tree::Messages, subject.as_bytes(), sealed)?;
        let (&sent, record) = plain
            .split_first()
            .ok_or(RelayError::Corrupt("an empty copy of a normal message"))?;
        let mut record = NormalRecord::decode(record)?;
        if sent == 1 {
            record.id = sequence;
        }
        Ok((sent == 1, record))
    }

    /// The first copy on `subject` at or after `from`, one of `budget` reads.
    async fn next_copy(
        &self,
        subject: &str,
        from: u64,
        budget: &mut usize,
    ) -> Result<Read, RelayError> {
        if *budget == 0 {
            return Ok(Read::OutOfReads);
        }
        *budget -= 1;
        let Some(message) = next_on(&self.hist, subject, from, "read of a normal message").await?
        else {
            return Ok(Read::End);
        };
        let (sent, record) = self.open(&message.subject, message.sequence, &message.payload)?;
        Ok(Read::Copy {
            sequence: message.sequence,
            sent,
            record,
        })
    }

    /// `user`'s copies after stream sequence `after`, oldest first, for as
    /// long as `take` wants more: `take` gets (sequence, sent, record).
    /// Whether it read them all (`take` never said stop).
    async fn scan(
        &self,
        user: &str,
        after: u64,
        mut take: impl FnMut(u64, bool, NormalRecord) -> bool,
    ) -> Result<bool, RelayError> {
        let filter = format!("hist.{}.*", self.owner(user));
        let mut from = after.saturating_add(1);
        loop {
            let Some(message) =
                next_on(&self.hist, &filter, from, "read of a normal message").await?
            else {
                return Ok(true);
            };
            from = message.sequence + 1;
            let (sent, record) = self.open(&message.subject, message.sequence, &message.payload)?;
            if !take(message.sequence, sent, record) {
                return Ok(false);
            }
        }
    }
}

pub struct ClusterArchive {
    copies: Copies,
    cursors: kv::Store,
    clock: Clock,
}

impl ClusterArchive {
    /// Makes (or finds) the stream and the cursors' bucket.
    pub async fn open(cluster: &Cluster, sealer: Arc<Sealer>) -> Result<Self, ClusterError> {
        let hist = cluster
            .stream(stream::Config {
                name: HIST.to_owned(),
                subjects: vec!["hist.>".to_owned()],
                duplicate_window: DEDUP_WINDOW,
                allow_direct: true,
                deny_delete: true,
                deny_purge: true,
                ..Default::default()
            })
            .await?;
        Ok(ClusterArchive {
            cursors: cluster.bucket(CURSORS).await?,
            copies: Copies {
                cluster: cluster.clone(),
                sealer,
                hist,
            },
            clock: Clock::system(),
        })
    }

    /// The archive with its records' times read from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn sealer(&self) -> &Sealer {
        &self.copies.sealer
    }

    /// Publishes a copy under message id `id` (deduplicated by the stream).
    async fn publish(
        &self,
        subject: String,
        sealed: Vec<u8>,
        id: [u8; 16],
    ) -> Result<async_nats::jetstream::publish::PublishAck, RelayError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", hex::encode(id).as_str());
        self.copies
            .cluster
            .context()
            .publish_with_headers(subject, headers, sealed.into())
            .await
            .map_err(|e| backend("publish of a normal message", e))?
            .await
            .map_err(|e| backend("acknowledgement of a normal message", e).into())
    }

    async fn append(&self, msg: NewNormal) -> Result<Appended, RelayError> {
        let sender = blind_user(self.sealer(), &msg.from);
        let (conversation, to, group, participants) = addressed(self.sealer(), &msg.from, msg.to);
        let mut record = NormalRecord {
            id: 0,
            conversation: conversation.to_vec(),
            from: msg.from,
            to,
            group,
            participants,
            text: msg.text,
            sent_at: self.clock.now_ms(),
            client_id: msg.client_id.to_vec(),
        };
        // The sender's copy first: its sequence is the message's id.
        let subject = self.copies.subject(&record.from, &conversation);
        let sealed = self.copies.seal(&subject, true, &record);
        let sent_id = self
            .sealer()
            .blind(SENT_DOMAIN, &[sender.as_slice(), &msg.client_id].concat());
        let ack = self.publish(subject.clone(), sealed, sent_id).await?;
        record.id = ack.sequence;
        if ack.duplicate {
            // A retry: the first attempt's record is the one that stands.
            let first = self
                .copies
                .hist
                .get_raw_message(ack.sequence)
                .await
                .map_err(|e| backend("read of a retried message", e))?;
            let (_, first) = self
                .copies
                .open(&first.subject, first.sequence, &first.payload)?;
            record = first;
        }
        // One copy for each other participant, each deduplicated on its own.
        let mut recipients = Vec::new();
        for person in record.participants.clone() {
            if person == record.from {
                continue;
            }
            let subject = self.copies.subject(&person, &conversation);
            let sealed = self.copies.seal(&subject, false, &record);
            let copy_id = self.sealer().blind(
                COPY_DOMAIN,
                &[
                    blind_user(self.sealer(), &person).as_slice(),
                    &record.id.to_be_bytes(),
                ]
                .concat(),
            );
            self.publish(subject, sealed, copy_id).await?;
            recipients.push(person);
        }
        Ok(match ack.duplicate {
            true => Appended::Duplicate(StoredReceipt {
                id: record.id,
                sent_at: record.sent_at,
            }),
            false => Appended::New { record, recipients },
        })
    }

    /// Appends messages, all at once (each stands alone: its copies, its
    /// retry); each is held by a majority of the replicas (every copy) when
    /// this returns.
    pub fn append_many(&self, msgs: Vec<NewNormal>) -> Vec<Result<Appended, RelayError>> {
        let appends = msgs.into_iter().map(|msg| self.append(msg));
        self.copies
            .cluster
            .wait(futures_util::future::join_all(appends))
    }

    fn cursor_key(&self, user: &str) -> String {
        hex::encode(
            self.sealer()
                .blind(CURSOR_DOMAIN, &blind_user(self.sealer(), user)),
        )
    }

    async fn cursor(&self, user: &str) -> Result<u64, RelayError> {
        let key = self.cursor_key(user);
        match self
            .cursors
            .get(key.clone())
            .await
            .map_err(|e| backend("read of an inbox cursor", e))?
        {
            Some(sealed) => read_u64(
                &self.sealer().open(Tree::Inbox, key.as_bytes(), &sealed)?,
                "an inbox cursor",
            ),
            None => Ok(0),
        }
    }

    async fn move_cursor(&self, user: &str, upto: u64) -> Result<(), RelayError> {
        if upto <= self.cursor(user).await? {
            return Ok(());
        }
        let key = self.cursor_key(user);
        let sealed = self
            .sealer()
            .seal(Tree::Inbox, key.as_bytes(), &upto.to_be_bytes());
        self.cursors
            .put(key, sealed.into())
            .await
            .map_err(|e| backend("write of an inbox cursor", e))?;
        Ok(())
    }

    /// Whether `user` has any copy in the history.
    pub fn has_history(&self, user: &str) -> Result<bool, RelayError> {
        let filter = format!("hist.{}.*", self.copies.owner(user));
        let found = self.copies.cluster.wait(next_on(
            &self.copies.hist,
            &filter,
            1,
            "read of a history",
        ))?;
        Ok(found.is_some())
    }

    /// What `user`'s acknowledgement from `before` to `after` (their cursor,
    /// stream sequences) tells the senders of 1:1 messages: for each sender,
    /// the newest id up to which every message of theirs to `user` is
    /// delivered. Copies are in commit order, not id order (two nodes), so a
    /// message acknowledged counts only below the oldest of the sender's
    /// still waiting; reads are bounded both ways, and a scan cut short
    /// tells nobody. Also the group messages acknowledged (the newest
    /// [`GROUP_CANDIDATES`] of each sender's in each group), whose senders
    /// are told once every other member has them (`crate::delivery`).
    pub fn delivered_one_to_one(
        &self,
        user: &str,
        before: u64,
        after: u64,
    ) -> Result<AckTells, RelayError> {
        use std::collections::BTreeMap;
        // sender → (ids acknowledged now, oldest id still waiting)
        let mut threads: BTreeMap<String, (Vec<u64>, Option<u64>)> = BTreeMap::new();
        // (sender, group) → the group messages acknowledged now
        let mut posts: BTreeMap<(String, String), Vec<NormalRecord>> = BTreeMap::new();
        // Bounded reads, both ways; a scan cut short tells nobody (a
        // receipt must never claim what it did not see).
        let (mut acked_read, mut ahead_read) = (0usize, 0usize);
        let limit = sotto_proto::MAX_FETCH as usize;
        let whole =
            self.copies
                .cluster
                .wait(self.copies.scan(user, before, |seq, sent, record| {
                    if seq <= after {
                        acked_read += 1;
                    } else {
                        ahead_read += 1;
                    }
                    if acked_read > limit || ahead_read > 4 * limit {
                        return false;
                    }
                    if !sent && !record.group.is_empty() && seq <= after {
                        posts
                            .entry((record.from.clone(), record.group.clone()))
                            .or_default()
                            .push(record);
                        return true;
                    }
                    if !sent && record.group.is_empty() {
                        let thread = threads.entry(record.from).or_default();
                        if seq <= after {
                            thread.0.push(record.id);
                        } else {
                            thread.1 = Some(thread.1.map_or(record.id, |w| w.min(record.id)));
                        }
                    }
                    true
                }))?;
        if !whole {
            return Ok(AckTells::default());
        }
        let posts = posts
            .into_values()
            .flat_map(|mut list| {
                list.sort_by_key(|r| std::cmp::Reverse(r.id));
                list.truncate(GROUP_CANDIDATES);
                list
            })
            .collect();
        let told = threads
            .into_iter()
            .filter_map(|(sender, (acked, waiting))| {
                let upto = acked
                    .into_iter()
                    .filter(|id| waiting.is_none_or(|w| *id < w))
                    .max()?;
                let delivered = sotto_proto::v1::Delivered {
                    peer: user.to_owned(),
                    group: String::new(),
                    upto,
                };
                Some((sender, delivered))
            })
            .collect();
        Ok(AckTells { told, posts })
    }

    /// `sender`'s own messages among `ids`, as their sender's copies hold
    /// them (an id that is not one of `sender`'s is passed over).
    pub fn sent_among(&self, sender: &str, ids: &[u64]) -> Result<Vec<NormalRecord>, RelayError> {
        let owner = format!("hist.{}.", self.copies.owner(sender));
        // Sequences start at 1 (0 is not a message, and the server refuses it).
        let ids: std::collections::BTreeSet<u64> =
            ids.iter().copied().filter(|&id| id > 0).collect();
        let reads = ids.into_iter().map(|id| async move {
            match self.copies.hist.get_raw_message(id).await {
                Ok(message) => Ok(Some(message)),
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(backend("read of a sent message", e)),
            }
        });
        let read = self
            .copies
            .cluster
            .wait(futures_util::future::join_all(reads));
        let mut mine = Vec::new();
        for message in read {
            let Some(message) = message? else { continue };
            if !message.subject.starts_with(&owner) {
                continue;
            }
            let (sent, record) =
                self.copies
                    .open(&message.subject, message.sequence, &message.payload)?;
            if sent {
                mine.push(record);
            }
        }
        Ok(mine)
    }

    /// Whether `recipient` acknowledged `sender`'s message `id` in
    /// `conversation`, and every older one of theirs there: their copy of
    /// it is at or below their cursor, and none of `sender`'s older ones
    /// waits after it. Reads at most `budget` of the recipient's copies of
    /// that conversation (and counts them off); `None`: not read to the end,
    /// so nothing is claimed.
    pub fn delivered_to(
        &self,
        recipient: &str,
        conversation: &[u8],
        sender: &str,
        id: u64,
        budget: &mut usize,
    ) -> Result<Option<bool>, RelayError> {
        let subject = self.copies.subject(recipient, conversation);
        self.copies.cluster.wait(async {
            if *budget == 0 {
                return Ok(None);
            }
            *budget -= 1;
            let cursor = self.cursor(recipient).await?;
            // Every copy of a message comes after its sender's, whose
            // sequence is its id: the copy is in (id, cursor], or it waits.
            let mut from = id.saturating_add(1);
            loop {
                if from > cursor {
                    return Ok(Some(false));
                }
                let (sequence, sent, record) =
                    match self.copies.next_copy(&subject, from, budget).await? {
                        Read::Copy {
                            sequence,
                            sent,
                            record,
                        } => (sequence, sent, record),
                        Read::End => return Ok(Some(false)),
                        Read::OutOfReads => return Ok(None),
                    };
                if sequence > cursor {
                    return Ok(Some(false));
                }
                from = sequence + 1;
                if !sent && record.id == id {
                    break;
                }
            }
            // Copies are in commit order, not id order: an older one of the
            // sender's may still wait.
            let mut from = cursor.saturating_add(1);
            loop {
                let (sequence, sent, record) =
                    match self.copies.next_copy(&subject, from, budget).await? {
                        Read::Copy {
                            sequence,
                            sent,
                            record,
                        } => (sequence, sent, record),
                        Read::End => return Ok(Some(true)),
                        Read::OutOfReads => return Ok(None),
                    };
                from = sequence + 1;
                if !sent && record.from == sender && record.id < id {
                    return Ok(Some(false));
                }
            }
        })
    }

    /// The stream sequence up to which `user` acknowledged (0: nothing yet).
    pub fn acknowledged(&self, user: &str) -> Result<u64, RelayError> {
        self.copies.cluster.wait(self.cursor(user))
    }

    /// What `user` has not acknowledged yet, oldest first; `more` when the limit cut it.
    pub fn inbox(&self, user: &str, limit: usize) -> Result<(Vec<InboxEntry>, bool), RelayError> {
        self.copies.cluster.wait(async {
            let after = self.cursor(user).await?;
            let (mut entries, mut sent_to, mut more) = (Vec::new(), after, false);
            self.copies
                .scan(user, after, |seq, sent, record| {
                    if sent {
                        // What they sent right after their cursor: passed over for good.
                        if entries.is_empty() {
                            sent_to = seq;
                        }
                        return true;
                    }
                    if entries.len() == limit {
                        more = true;
                        return false;
                    }
                    entries.push(InboxEntry { seq, record });
                    true
                })
                .await?;
            if sent_to > after {
                self.move_cursor(user, sent_to).await?;
            }
            Ok((entries, more))
        })
    }

    /// Marks `user`'s copies up to and including `upto` as delivered (never
    /// past the newest copy stored, so nothing later is skipped).
    pub fn ack(&self, user: &str, upto: u64) -> Result<(), RelayError> {
        self.copies.cluster.wait(async {
            let last = self
                .copies
                .hist
                .get_info()
                .await
                .map_err(|e| backend("the archive's last sequence", e))?
                .state
                .last_sequence;
            self.move_cursor(user, upto.min(last)).await
        })
    }

    /// The read-only view the warrant desk is given, reading through `desk`
    /// (a connection as the desk's own NATS user).
    pub async fn reader(
        desk: &Cluster,
        sealer: Arc<Sealer>,
    ) -> Result<ClusterArchiveReader, ClusterError> {
        let hist = desk
            .context()
            .get_stream(HIST)
            .await
            .map_err(|e| ClusterError::Provision {
                what: format!("stream {HIST}, as the warrant desk"),
                why: e.to_string(),
            })?;
        Ok(ClusterArchiveReader {
            copies: Arc::new(Copies {
                cluster: desk.clone(),
                sealer,
                hist,
            }),
        })
    }
}

/// A read-only view of the archive on the cluster: records by participant
/// and time. It holds no handle on anything but the history.
#[derive(Clone)]
pub struct ClusterArchiveReader {
    copies: Arc<Copies>,
}

impl ClusterArchiveReader {
    /// Every normal record `user` took part in with `from_ms <= sent_at <
    /// until_ms`, oldest first (their copies, read from their first).
    pub fn records_of(
        &self,
        user: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<NormalRecord>, RelayError> {
        self.copies.cluster.wait(async {
            let mut out = Vec::new();
            self.copies
                .scan(user, 0, |_, _, record| {
                    if (from_ms..until_ms).contains(&record.sent_at) {
                        out.push(record);
                    }
                    true
                })
                .await?;
            Ok(out)
        })
    }
}
