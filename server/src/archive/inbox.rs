//! A user's inbox: the messages others sent them after the id up to which
//! they acknowledged (their cursor). The cursor only moves forward.

use super::{NormalArchive, read_u64};
use crate::RelayError;
use crate::accounts::blind_user;
use crate::records::NormalRecord;
use crate::store::{Batch, Tree};

/// One entry of a user's inbox: its delivery sequence number and the record.
pub struct InboxEntry {
    pub seq: u64,
    pub record: NormalRecord,
}

impl NormalArchive {
    /// The id up to which `blind` acknowledged (0: nothing yet).
    pub(super) fn acked(&self, blind: &[u8; 16]) -> Result<u64, RelayError> {
        let key = self.sealer.tree_key(Tree::Inbox, blind);
        match self.store.get(Tree::Inbox, &key)? {
            Some(sealed) => read_u64(
                &self.sealer.open(Tree::Inbox, &key, &sealed)?,
                "an inbox cursor",
            ),
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
        let key = self.sealer.tree_key(Tree::Inbox, blind);
        let sealed = self.sealer.seal(Tree::Inbox, &key, &upto.to_be_bytes());
        batch.put(Tree::Inbox, key.to_vec(), sealed);
        self.store.apply(batch)?;
        Ok(())
    }
}
