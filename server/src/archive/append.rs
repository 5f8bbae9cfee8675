//! The write path: a batch of sends becomes one segment. Ids are handed out
//! in commit order (one writer at a time), and a retry found in the sender's
//! window is answered with the first store's id instead of being stored again.

use std::collections::HashMap;

use prost::Message;

use super::dedup::window_find;
use super::posting::Posting;
use super::segment::{first_id_of, record_key, segment_key, sent_at_of};
use super::{Appended, Destination, NewNormal, NormalArchive, SEGMENT_TEXT_BYTES};
use crate::RelayError;
use crate::accounts::blind_user;
use crate::records::{NormalRecord, SegmentRecord, StoredReceipt};
use crate::seal::Sealer;
use crate::store::{Batch, Tree};

/// Where a message goes, as the archive keeps it: its conversation's blind,
/// its recipient (1:1) or its group, and everyone in it, sender included.
pub(crate) fn addressed(
    sealer: &Sealer,
    from: &str,
    to: Destination,
) -> ([u8; 16], String, String, Vec<String>) {
    match to {
        Destination::User(to) => {
            let (lo, hi) = if from <= to.as_str() {
                (from, to.as_str())
            } else {
                (to.as_str(), from)
            };
            let mut pair = Vec::with_capacity(lo.len() + hi.len() + 1);
            pair.extend_from_slice(lo.as_bytes());
            pair.push(0);
            pair.extend_from_slice(hi.as_bytes());
            let conversation = sealer.blind("dm", &pair);
            let mut participants = vec![from.to_owned(), to.clone()];
            participants.dedup();
            (conversation, to, String::new(), participants)
        }
        Destination::Group(group) => (
            sealer.blind("group", group.name.as_bytes()),
            String::new(),
            group.name,
            group.members,
        ),
    }
}

/// The writes of one segment, staged before they are applied.
#[derive(Default)]
pub(super) struct Staged {
    pub sealed: Vec<Vec<u8>>,
    pub text_bytes: usize,
    pub postings: Vec<([u8; 16], Posting)>,
    pub receipts: Vec<(Vec<u8>, StoredReceipt)>,
}

impl NormalArchive {
    pub(super) fn dedup_key(&self, from: &str, client_id: &[u8]) -> Vec<u8> {
        let mut key = blind_user(&self.sealer, from).to_vec();
        key.extend_from_slice(client_id);
        key
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
            let (first, segment) = {
                let recent = self.read_recent();
                let first = (recent.last_id + 1).max(first_id_of(self.clock.now_ms()));
                (first, recent.last_segment + 1)
            };
            let mut staged = Staged::default();
            let mut part = Vec::new();
            while staged.text_bytes < SEGMENT_TEXT_BYTES
                && staged.sealed.len() < usize::from(u16::MAX)
            {
                let Some(msg) = msgs.next() else { break };
                part.push(self.stage(msg, first, segment, &mut staged, &mut fresh));
            }
            results.extend(self.write_segment(segment, staged, part));
        }
        results
    }

    /// Writes one staged segment; every message of it fails if the write does.
    fn write_segment(
        &self,
        segment: u64,
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
        batch.put(Tree::Messages, segment_key(segment).to_vec(), value);
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

    /// The id a sender's client id was stored under, if it is still in their
    /// window (see [`super::DEDUP_WINDOW`]): since the last checkpoint, in the
    /// window the last checkpoint wrote, or else in the store.
    fn stored_before(&self, dedup_key: &[u8]) -> Result<Option<u64>, RelayError> {
        let (sender, client_id) = dedup_key.split_at(16);
        {
            let recent = self.read_recent();
            if let Some(receipt) = recent.receipts.get(dedup_key) {
                return Ok(Some(receipt.id));
            }
            if let Some(window) = recent.windows.get(sender) {
                return window_find(window, client_id);
            }
        }
        let sender: &[u8; 16] = sender.try_into().expect("16-byte blind");
        window_find(&self.stored_window(sender)?, client_id)
    }

    /// Adds one message to segment number `segment`, whose first id is
    /// `first` (or finds it is a duplicate).
    fn stage(
        &self,
        msg: NewNormal,
        first: u64,
        segment: u64,
        staged: &mut Staged,
        fresh: &mut HashMap<Vec<u8>, StoredReceipt>,
    ) -> Result<Appended, RelayError> {
        let dedup_key = self.dedup_key(&msg.from, &msg.client_id);
        if let Some(receipt) = fresh.get(&dedup_key) {
            return Ok(Appended::Duplicate(receipt.clone()));
        }
        let earlier = self.stored_before(&dedup_key)?;
        if let Some(id) = earlier {
            return Ok(Appended::Duplicate(StoredReceipt {
                id,
                sent_at: sent_at_of(id),
            }));
        }
        let (conversation, to, group, participants) = addressed(&self.sealer, &msg.from, msg.to);
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
        staged.sealed.push(self.sealer.seal_padded(
            Tree::Messages,
            &record_key(segment, index),
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
        let recipients = self.index(&record, segment, index, dedup_key, staged);
        Ok(Appended::New { record, recipients })
    }

    /// Stages `record`'s postings and receipt (under `dedup_key`, which starts
    /// with the sender's blind); returns who receives it.
    pub(super) fn index(
        &self,
        record: &NormalRecord,
        segment: u64,
        index: u16,
        dedup_key: Vec<u8>,
        staged: &mut Staged,
    ) -> Vec<String> {
        let mut recipients = Vec::new();
        let from: [u8; 16] = match dedup_key.get(..16) {
            Some(sender) => sender.try_into().expect("16 bytes"),
            None => blind_user(&self.sealer, &record.from),
        };
        let conversation: [u8; 16] = record
            .conversation
            .as_slice()
            .try_into()
            .unwrap_or_default();
        for person in &record.participants {
            let sent = *person == record.from;
            let blind = match sent {
                true => from,
                false => blind_user(&self.sealer, person),
            };
            let posting = Posting {
                id: record.id,
                segment,
                index,
                sent,
                from,
                conversation,
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
}
