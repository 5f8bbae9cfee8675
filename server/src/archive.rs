//! The normal archive: every normal-mode message, sealed, with its indexes.
//!
//! Invariant: nothing readable reaches disk. A record is sealed under its own
//! key; index keys hold only blinded names, times and ids. Indexes:
//! - by conversation and time (`Messages` keys start with the conversation id),
//! - by participant and time (`ByParticipant`), so one person's records in a
//!   window cost what those records cost, never a scan,
//! - per recipient delivery order (`Inbox`), consumed by fetch and ack.
//!
//! [`NormalArchive::reader`] hands out [`ArchiveReader`], the read-only view the
//! warrant module is given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prost::Message;

use crate::accounts::{blind_user, user_scoped_key as user_key};
use crate::records::{GroupRecord, NormalRecord, StoredReceipt};
use crate::seal::Sealer;
use crate::store::{Batch, Store, Tree};
use crate::{RelayError, now_ms};

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

pub struct NormalArchive {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// Serialises id assignment with the write (see `append_many`).
    append_lock: Mutex<()>,
}

fn message_key(conversation: &[u8; 16], sent_at: i64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(conversation);
    key.extend_from_slice(&(sent_at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl NormalArchive {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        NormalArchive {
            store,
            sealer,
            append_lock: Mutex::new(()),
        }
    }

    fn dm_conversation(&self, a: &str, b: &str) -> [u8; 16] {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut pair = Vec::with_capacity(lo.len() + hi.len() + 1);
        pair.extend_from_slice(lo.as_bytes());
        pair.push(0);
        pair.extend_from_slice(hi.as_bytes());
        self.sealer.blind("dm", &pair)
    }

    /// Appends one message and its index entries atomically. Not yet durable.
    pub fn append(&self, msg: NewNormal) -> Result<Appended, RelayError> {
        self.append_many(vec![msg])
            .pop()
            .unwrap_or(Err(RelayError::Corrupt("an append returned no result")))
    }

    /// Appends messages (in order) and their index entries in one atomic
    /// write: many sends share one transaction. A message whose client id was
    /// stored before (or earlier in the same call) is a duplicate and writes
    /// nothing. Not yet durable: the caller waits for the group commit.
    pub fn append_many(&self, msgs: Vec<NewNormal>) -> Vec<Result<Appended, RelayError>> {
        // One writer at a time: ids are handed out in commit order (so an ack
        // can never skip a message committed later), and the duplicate check
        // below cannot race another writer.
        let _serial = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = Batch::default();
        let mut fresh: HashMap<Vec<u8>, StoredReceipt> = HashMap::new();
        let mut results = Vec::with_capacity(msgs.len());
        for msg in msgs {
            results.push(self.stage(msg, &mut batch, &mut fresh));
        }
        crate::apply_staged(&*self.store, batch, results)
    }

    /// Adds one message's writes to `batch` (or finds it is a duplicate).
    fn stage(
        &self,
        msg: NewNormal,
        batch: &mut Batch,
        fresh: &mut HashMap<Vec<u8>, StoredReceipt>,
    ) -> Result<Appended, RelayError> {
        let sender = blind_user(&self.sealer, &msg.from);
        let mut dedup_key = sender.to_vec();
        dedup_key.extend_from_slice(&msg.client_id);
        if let Some(receipt) = fresh.get(&dedup_key) {
            return Ok(Appended::Duplicate(receipt.clone()));
        }
        if let Some(sealed) = self.store.get(Tree::ClientIds, &dedup_key)? {
            let plain = self.sealer.open(Tree::ClientIds, &dedup_key, &sealed)?;
            return Ok(Appended::Duplicate(StoredReceipt::decode(
                plain.as_slice(),
            )?));
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
        // Ids start at 1: an acknowledgement of 0 means "nothing yet".
        let id = self.store.next_id()? + 1;
        let sent_at = now_ms();
        let receipt = StoredReceipt { id, sent_at };
        batch.put(
            Tree::ClientIds,
            dedup_key.clone(),
            self.sealer
                .seal(Tree::ClientIds, &dedup_key, &receipt.encode_to_vec()),
        );
        fresh.insert(dedup_key, receipt);
        let record = NormalRecord {
            id,
            conversation: conversation.to_vec(),
            from: msg.from,
            to,
            group,
            participants,
            text: msg.text,
            sent_at,
            client_id: msg.client_id.to_vec(),
        };
        let mkey = message_key(&conversation, sent_at, id);
        let sealed = self
            .sealer
            .seal(Tree::Messages, &mkey, &record.encode_to_vec());
        batch.put(Tree::Messages, mkey.clone(), sealed);
        let mut recipients = Vec::new();
        for person in &record.participants {
            let blind = blind_user(&self.sealer, person);
            let mut pkey = blind.to_vec();
            pkey.extend_from_slice(&(sent_at.max(0) as u64).to_be_bytes());
            pkey.extend_from_slice(&id.to_be_bytes());
            batch.put(Tree::ByParticipant, pkey, conversation.to_vec());
            if *person != record.from {
                batch.put(Tree::Inbox, user_key(&blind, id), mkey.clone());
                recipients.push(person.clone());
            }
        }
        Ok(Appended::New { record, recipients })
    }

    fn load(&self, mkey: &[u8]) -> Result<Option<NormalRecord>, RelayError> {
        let Some(sealed) = self.store.get(Tree::Messages, mkey)? else {
            return Ok(None);
        };
        let plain = self.sealer.open(Tree::Messages, mkey, &sealed)?;
        Ok(Some(NormalRecord::decode(plain.as_slice())?))
    }

    /// What `user` has not acknowledged yet, oldest first; `more` when the limit cut it.
    pub fn inbox(&self, user: &str, limit: usize) -> Result<(Vec<InboxEntry>, bool), RelayError> {
        let blind = blind_user(&self.sealer, user);
        let rows = self.store.range(
            Tree::Inbox,
            &user_key(&blind, 0),
            &user_key(&blind, u64::MAX),
            limit + 1,
        )?;
        let more = rows.len() > limit;
        let mut entries = Vec::with_capacity(rows.len().min(limit));
        for (key, mkey) in rows.into_iter().take(limit) {
            let seq = u64::from_be_bytes(
                key[16..24]
                    .try_into()
                    .map_err(|_| RelayError::Corrupt("inbox key"))?,
            );
            let record = self
                .load(&mkey)?
                .ok_or(RelayError::Corrupt("inbox entry without its message"))?;
            entries.push(InboxEntry { seq, record });
        }
        Ok((entries, more))
    }

    /// Removes `user`'s inbox entries up to and including `upto`. Not yet durable.
    pub fn ack(&self, user: &str, upto: u64) -> Result<usize, RelayError> {
        let blind = blind_user(&self.sealer, user);
        let end = user_key(&blind, upto.saturating_add(1));
        let mut removed = 0;
        loop {
            let rows = self
                .store
                .range(Tree::Inbox, &user_key(&blind, 0), &end, 1024)?;
            if rows.is_empty() {
                return Ok(removed);
            }
            removed += rows.len();
            let mut batch = Batch::default();
            for (key, _) in rows {
                batch.delete(Tree::Inbox, key);
            }
            self.store.apply(batch)?;
        }
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
    /// oldest first. Costs what those records cost: one range of the participant index.
    pub fn records_of(
        &self,
        user: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<NormalRecord>, RelayError> {
        let a = &self.archive;
        let blind = blind_user(&a.sealer, user);
        let from = user_key(&blind, from_ms.max(0) as u64);
        let to = user_key(&blind, (until_ms.max(0) as u64).saturating_add(1));
        let mut out = Vec::new();
        let mut cursor = from;
        loop {
            let rows = a.store.range(Tree::ByParticipant, &cursor, &to, 1024)?;
            let Some((last, _)) = rows.last() else {
                return Ok(out);
            };
            let mut next = last.clone();
            next.push(0);
            for (key, conversation) in rows {
                let conversation: [u8; 16] = conversation
                    .as_slice()
                    .try_into()
                    .map_err(|_| RelayError::Corrupt("participant index value"))?;
                let sent_at = u64::from_be_bytes(key[16..24].try_into().expect("24-byte key"));
                let id = u64::from_be_bytes(key[24..32].try_into().expect("32-byte key"));
                if let Some(record) = a.load(&message_key(&conversation, sent_at as i64, id))? {
                    out.push(record);
                }
            }
            cursor = next;
        }
    }
}
