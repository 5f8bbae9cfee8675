//! What the relay reads to tell senders that their normal messages were
//! delivered (see `crate::delivery`, which owns that rule): an inbox cursor,
//! the messages one acknowledgement moved past, and a sender's own record.
//!
//! Invariant: these are for the relay's own reckoning. A cursor is the newest
//! message its owner acknowledged from anyone; it is never handed to another
//! user as such.

use super::NormalArchive;
use crate::RelayError;
use crate::accounts::blind_user;
use crate::records::NormalRecord;

impl NormalArchive {
    /// The id up to which `user` acknowledged their inbox (0: nothing yet).
    pub fn acknowledged(&self, user: &str) -> Result<u64, RelayError> {
        self.acked(&blind_user(&self.sealer, user))
    }

    /// The messages others sent `user` with `after < id <= upto`, oldest
    /// first, at most `limit`: what an acknowledgement from `after` to
    /// `upto` told the relay `user`'s client has.
    pub fn received_between(
        &self,
        user: &str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<NormalRecord>, RelayError> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let blind = blind_user(&self.sealer, user);
        let (postings, _) = self.postings(
            &blind,
            after.saturating_add(1),
            upto.saturating_add(1),
            |p| !p.sent,
            limit,
        )?;
        postings.into_iter().map(|p| self.load(p)).collect()
    }

    /// The message with this id if `sender` sent it; `None` for any other id
    /// (someone else's message, or no message at all).
    pub fn sent_by(&self, sender: &str, id: u64) -> Result<Option<NormalRecord>, RelayError> {
        let blind = blind_user(&self.sealer, sender);
        let (postings, _) = self.postings(&blind, id, id.saturating_add(1), |p| p.sent, 1)?;
        postings
            .into_iter()
            .next()
            .map(|p| self.load(p))
            .transpose()
    }
}
