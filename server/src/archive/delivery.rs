//! What the relay reads to tell senders that their normal messages were
//! delivered (see `crate::delivery`, which owns that rule): an inbox cursor,
//! the postings one acknowledgement moved past, a sender's own postings, and
//! the record behind a posting, read only when needed.
//!
//! Invariant: these are for the relay's own reckoning. A cursor is the newest
//! message its owner acknowledged from anyone; it is never handed to another
//! user as such.

use super::NormalArchive;
use super::posting::Posting;
use crate::RelayError;
use crate::accounts::blind_user;
use crate::records::NormalRecord;

/// One message of someone's postings: which one, who sent it, in which
/// conversation (blinds); its record is read with [`NormalArchive::load_posted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posted(Posting);

impl Posted {
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The sender's and the conversation's blinds: one sender's messages in
    /// one conversation share them.
    pub fn thread(&self) -> ([u8; 16], [u8; 16]) {
        (self.0.from, self.0.conversation)
    }
}

impl NormalArchive {
    /// The id up to which `user` acknowledged their inbox (0: nothing yet).
    pub fn acknowledged(&self, user: &str) -> Result<u64, RelayError> {
        self.acked(&blind_user(&self.sealer, user))
    }

    /// The messages others sent `user` with `after < id <= upto`, oldest
    /// first, at most `limit`: what an acknowledgement from `after` to
    /// `upto` told the relay `user`'s client has. No record is read.
    pub fn received_between(
        &self,
        user: &str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Posted>, RelayError> {
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
        Ok(postings.into_iter().map(Posted).collect())
    }

    /// Those of `ids` that `sender` sent (any other id is passed over, as
    /// if it were no message at all), oldest first. One pass over the
    /// sender's postings from the smallest id to the largest.
    pub fn sent_among(&self, sender: &str, ids: &[u64]) -> Result<Vec<Posted>, RelayError> {
        let (Some(&lo), Some(&hi)) = (ids.iter().min(), ids.iter().max()) else {
            return Ok(Vec::new());
        };
        let asked: std::collections::HashSet<u64> = ids.iter().copied().collect();
        let blind = blind_user(&self.sealer, sender);
        let (postings, _) = self.postings(
            &blind,
            lo,
            hi.saturating_add(1),
            |p| p.sent && asked.contains(&p.id),
            asked.len(),
        )?;
        Ok(postings.into_iter().map(Posted).collect())
    }

    /// The record behind a posting.
    pub fn load_posted(&self, posted: Posted) -> Result<NormalRecord, RelayError> {
        self.load(posted.0)
    }
}
