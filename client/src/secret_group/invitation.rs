//! Invitations: a group this device does not hold waits for its user's
//! consent before anything is joined or sent (#17's review: a welcome taken
//! from anyone who named itself admin let an outsider, or a malicious relay
//! with an account, hijack a newcomer's view of a real group, or make the
//! device send its sender key to 254 strangers).
//!
//! Until the user accepts, an invitation is only shown: who sent it, the
//! group's name, members and admins. The sender keys its members send and
//! the group messages that arrive meanwhile are kept with it (bounded), so
//! accepting loses nothing that was written to the user in between.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::GroupId;
use super::roster::Roster;

/// The most invitations held at once (they are not groups: they do not
/// count towards `MAX_GROUPS`, so unsolicited ones cannot fill it).
pub const MAX_INVITATIONS: usize = 64;
/// The most invitations held from one sender: a further one replaces its
/// oldest, so one account cannot take the whole list.
pub const MAX_INVITATIONS_PER_SENDER: usize = 4;
/// The most group messages kept with one invitation until it is answered.
pub const MAX_HELD_MESSAGES: usize = 64;

/// An invitation as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationInfo {
    pub group: GroupId,
    pub from: String,
    pub name: String,
    pub members: Vec<String>,
    pub admins: Vec<String>,
    /// The answer to our own request for a group this device lost (a
    /// reinstall), not an admin's invitation.
    pub recovered: bool,
    /// Group messages kept with it, read once it is accepted.
    pub held: usize,
}

/// A group message kept with an invitation: read once it is accepted.
#[derive(Clone, Serialize, Deserialize)]
pub struct HeldMessage {
    pub from: String,
    pub envelope_id: u64,
    pub ciphertext: Vec<u8>,
}

/// A sender key distribution kept with an invitation. It holds a chain key:
/// wiped when dropped, never logged.
#[derive(Serialize, Deserialize)]
pub(super) struct KeptKey(pub(super) Vec<u8>);

impl Drop for KeptKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// One invitation: the state one sender sent us for a group we do not hold.
#[derive(Serialize, Deserialize)]
pub(super) struct Invitation {
    pub(super) group: GroupId,
    pub(super) from: String,
    pub(super) roster: Roster,
    pub(super) epoch: u64,
    pub(super) last_removal: u64,
    pub(super) recovered: bool,
    /// The order invitations arrived in (to replace a sender's oldest).
    pub(super) seq: u64,
    /// Sender keys that arrived from its members meanwhile.
    pub(super) keys: BTreeMap<String, KeptKey>,
    pub(super) held: Vec<HeldMessage>,
}

impl Invitation {
    pub(super) fn info(&self) -> InvitationInfo {
        InvitationInfo {
            group: self.group,
            from: self.from.clone(),
            name: self.roster.name.clone(),
            members: self.roster.members.iter().cloned().collect(),
            admins: self.roster.admins.iter().cloned().collect(),
            recovered: self.recovered,
            held: self.held.len(),
        }
    }
}
