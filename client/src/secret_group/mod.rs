//! Secret groups on the client, sans-IO (#17): each group's name, members
//! and admins, our sender key and every other member's, kept on this device
//! only ([`SecretGroups`], the vault's `secret_groups` part). Operations
//! return what to send; nothing here sends, stores or logs.
//!
//! - membership changes travel as `GroupControl` messages inside the pairwise
//!   secret sessions ([`Outgoing`]); an admin's change carries the whole
//!   group ([`roster`]) at an epoch one above the last;
//! - a group message is one ciphertext under our sender key for every other
//!   member ([`SecretGroups::encrypt`] → [`GroupSend`]);
//! - on a removal or leave every remaining member makes a new sender key and
//!   sends it to the remaining members only; a member who is added gets each
//!   member's current one, at its current iteration.
//!
//! Invariants: a membership change is taken only from an admin of our own
//! view of the group, and only at an epoch ahead of ours (a replay cannot
//! undo a removal); a sender key is taken only from a member, over its own
//! pairwise session; a group message is read only with the record of the
//! member the relay names as its sender, whose key must have signed it; a
//! refused control message or group message changes nothing.

mod invitation;
mod roster;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use bytes::Bytes;
use prost::Message;
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sotto_proto::names::{self, NameError};
use sotto_proto::v1::{self, group_control};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::e2e::{DistributionOutcome, E2eError, OwnSenderKey, SenderKeyRecord};
use invitation::{Declined, HeldMessage, Invitation, KeptKey};
pub use invitation::{
    Hold, InvitationInfo, MAX_ASKED_PER_MEMBER, MAX_HELD_BYTES, MAX_HELD_BYTES_PER_SENDER,
    MAX_HELD_MESSAGES, MAX_HELD_MESSAGES_PER_SENDER, MAX_INVITATIONS, MAX_INVITATIONS_PER_SENDER,
    MAX_KEPT_KEYS, MAX_KEPT_KEYS_PER_SENDER,
};
use roster::{Roster, distinct_names};

/// The most members of one group, us included.
pub const MAX_MEMBERS: usize = 256;
/// The most secret groups one profile holds.
pub const MAX_GROUPS: usize = 256;
/// The longest encoded `GroupControl` taken (a state of 256 members fits).
pub const MAX_CONTROL_LEN: usize = 32 * 1024;
/// The length of a group id.
pub const GROUP_ID_LEN: usize = 16;
/// The most groups asked about at once while we hold nothing of them (the
/// oldest question goes for a new one).
const MAX_ASKED: usize = 64;
/// The most groups remembered as left, so an old welcome is not taken again.
const MAX_GONE: usize = 1024;

/// Why a secret group operation or control message was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretGroupError {
    #[error("no secret group with this id is held here")]
    UnknownGroup,
    #[error("a secret group id is {GROUP_ID_LEN} bytes")]
    BadGroupId,
    #[error("{0:?} is not a member of this secret group (in this device's view): refused")]
    NotAMember(String),
    #[error("{0:?} is not an admin of this secret group (in this device's view): refused")]
    NotAnAdmin(String),
    #[error("{0:?} is a member of this secret group already")]
    AlreadyMember(String),
    #[error("{0:?} is named twice")]
    DuplicateMember(String),
    #[error("the admin {0:?} is not a member")]
    AdminNotMember(String),
    #[error("a secret group needs at least one admin")]
    NoAdmin,
    #[error("a secret group has 1 to {MAX_MEMBERS} members")]
    TooManyMembers,
    #[error("this profile holds {MAX_GROUPS} secret groups already: leave one first")]
    TooManyGroups,
    #[error(
        "the control message is for epoch {got}, not ahead of epoch {held} held here: an old \
         or replayed change, refused"
    )]
    Stale { got: u64, held: u64 },
    #[error("the group state does not name this device's user as a member: refused")]
    NotForUs,
    #[error("the group state does not name its sender as a member: refused")]
    SenderNotInState,
    #[error("control messages about a group come from other members, never from ourselves")]
    FromSelf,
    #[error("to leave a secret group, leave it; an admin cannot remove itself")]
    RemoveSelf,
    #[error("a control message is at most {MAX_CONTROL_LEN} bytes: refused")]
    ControlTooLarge,
    #[error("the control message is malformed")]
    Malformed,
    #[error("the group's epoch counter is at its end")]
    EpochExhausted,
    #[error(
        "this device holds another secret group named {0:?}: refused (a group is named by its \
         name on this device, so two of one name could not be told apart)"
    )]
    NameTaken(String),
    #[error(
        "this answer comes from a member who is no admin of the group: the admins it names \
         ({}) are asked to confirm it, and their answer is the invitation to accept",
        .0.join(", ")
    )]
    Unconfirmed(Vec<String>),
    #[error(
        "nobody to ask: the admins this answer names are this device's user, or people whose \
         invitation to the group you declined"
    )]
    NobodyToAsk,
    #[error("this device asked that member about that group already: waiting for the answer")]
    AlreadyAsked,
    #[error("an invitation to that secret group waits for your answer (`sotto group invitations`)")]
    InvitationWaits,
    #[error(
        "{MAX_INVITATIONS} secret group invitations wait for an answer already: accept or \
         decline some first"
    )]
    TooManyInvitations,
    #[error("this device left (or declined) that secret group: it is not asked for again")]
    Gone,
    #[error("no invitation to this secret group from {0:?} waits here")]
    NoInvitation(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Cipher(#[from] E2eError),
}

type Result<T, E = SecretGroupError> = std::result::Result<T, E>;

/// A secret group's id: 16 random bytes, all the relay ever learns of it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId([u8; GROUP_ID_LEN]);

impl GroupId {
    fn random() -> Self {
        let mut id = [0u8; GROUP_ID_LEN];
        rand::rng().fill_bytes(&mut id);
        GroupId(id)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        bytes
            .try_into()
            .map(GroupId)
            .map_err(|_| SecretGroupError::BadGroupId)
    }

    pub fn as_bytes(&self) -> &[u8; GROUP_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({self})")
    }
}

// Hex, so that it can key a JSON map in the vault.
impl Serialize for GroupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for GroupId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        GroupId::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A control message to send to one member, inside our pairwise secret
/// session with it (as `SecretContent.group`). It may hold a chain key:
/// never to the relay in the clear, never logged.
pub struct Outgoing {
    pub to: String,
    pub control: v1::GroupControl,
}

impl fmt::Debug for Outgoing {
    // Names the kind only: a distribution's chain key stays out of any log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.control.kind {
            Some(group_control::Kind::State(_)) => "state",
            Some(group_control::Kind::Leave(_)) => "leave",
            Some(group_control::Kind::Distribution(_)) => "distribution",
            Some(group_control::Kind::RequestDistribution(_)) => "request_distribution",
            None => "none",
        };
        write!(f, "Outgoing({kind} to {:?})", self.to)
    }
}

/// One group message to hand the relay: the same ciphertext for every
/// recipient (every member but us).
#[derive(Debug)]
pub struct GroupSend {
    pub ciphertext: Vec<u8>,
    pub recipients: Vec<String>,
}

/// What a control message changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// We are in a group new to this device (added, created, or recovered).
    Joined {
        group: GroupId,
        name: String,
        by: String,
    },
    /// An admin changed the membership.
    Changed {
        group: GroupId,
        by: String,
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// An admin removed us: the group is gone from this device.
    RemovedUs { group: GroupId, by: String },
    /// A member left.
    Left { group: GroupId, who: String },
    /// A member's sender key arrived.
    SenderKey {
        group: GroupId,
        from: String,
        outcome: DistributionOutcome,
    },
    /// A member asked for our sender key (and maybe the state): answered.
    Requested { group: GroupId, from: String },
    /// A group this device does not hold: kept as an invitation until the
    /// user accepts it (nothing joined, nothing sent).
    Invited {
        group: GroupId,
        name: String,
        by: String,
        recovered: bool,
    },
    /// The sender of an invitation not yet answered took us out again.
    Withdrawn { group: GroupId, by: String },
    /// Kept with an invitation not yet answered (a member's sender key).
    KeptForInvitation { group: GroupId, from: String },
}

/// What accepting an invitation did: the group joined, what to send, and
/// the group messages that were kept with it, read now.
#[derive(Debug)]
pub struct Accepted {
    pub group: GroupId,
    pub name: String,
    pub send: Vec<Outgoing>,
    /// Changes of the group's admins that arrived meanwhile, applied.
    pub events: Vec<GroupEvent>,
    pub messages: Vec<HeldRead>,
}

/// A kept group message, read once its invitation was accepted.
pub struct HeldRead {
    pub from: String,
    pub envelope_id: u64,
    pub plaintext: Result<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for HeldRead {
    // Never the plaintext.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HeldRead({} from {:?}: {})",
            self.envelope_id,
            self.from,
            if self.plaintext.is_ok() {
                "read"
            } else {
                "unreadable"
            }
        )
    }
}

/// What [`SecretGroups::receive_control`] did, and what to send in answer.
#[derive(Debug)]
pub struct Outcome {
    pub event: GroupEvent,
    pub send: Vec<Outgoing>,
}

/// A copy of a group's membership, to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub members: BTreeSet<String>,
    pub admins: BTreeSet<String>,
    pub epoch: u64,
}

/// One group as this device holds it.
#[derive(Serialize, Deserialize)]
struct SecretGroup {
    roster: Roster,
    epoch: u64,
    /// The epoch of the last removal or leave known here: sender keys
    /// distributed before it belong to chains the group has dropped.
    last_removal: u64,
    /// The epoch our own sender key was made at.
    own_since: u64,
    own: OwnSenderKey,
    /// Every other member's sender keys that arrived.
    records: BTreeMap<String, SenderKeyRecord>,
    /// The group's disappearing-message timer, in seconds, as its members
    /// last set it (a group message that sets it, from any member).
    #[serde(default)]
    timer: Option<u32>,
}

impl SecretGroup {
    fn info(&self) -> GroupInfo {
        GroupInfo {
            name: self.roster.name.clone(),
            members: self.roster.members.clone(),
            admins: self.roster.admins.clone(),
            epoch: self.epoch,
        }
    }

    fn next_epoch(&self) -> Result<u64> {
        self.epoch
            .checked_add(1)
            .ok_or(SecretGroupError::EpochExhausted)
    }

    /// Every member but `me`.
    fn others<'a>(&'a self, me: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.roster.members.iter().filter(move |m| *m != me)
    }

    fn require_member(&self, me: &str, who: &str) -> Result<()> {
        if who == me {
            return Err(SecretGroupError::FromSelf);
        }
        if !self.roster.members.contains(who) {
            return Err(SecretGroupError::NotAMember(who.to_owned()));
        }
        Ok(())
    }

    fn require_admin(&self, who: &str) -> Result<()> {
        if !self.roster.members.contains(who) {
            return Err(SecretGroupError::NotAMember(who.to_owned()));
        }
        if !self.roster.admins.contains(who) {
            return Err(SecretGroupError::NotAnAdmin(who.to_owned()));
        }
        Ok(())
    }

    /// Our current sender key, as a control message.
    fn distribution(&self, id: GroupId, to: &str) -> Outgoing {
        control(
            id,
            to,
            self.epoch,
            group_control::Kind::Distribution(Bytes::from_owner(self.own.distribution())),
        )
    }

    /// The whole group, as a control message.
    fn state(&self, id: GroupId, to: &str) -> Outgoing {
        control(
            id,
            to,
            self.epoch,
            group_control::Kind::State(self.roster.to_wire(self.last_removal, self.timer)),
        )
    }

    /// Takes `roster` at `epoch` as the membership, and does what every
    /// member does on a change: the records of members who went are dropped;
    /// when a removal is newer than our sender key, we make a new one and
    /// send it to every remaining member; else newcomers get our current one.
    /// Returns (added, removed, distributions to send).
    fn adopt(
        &mut self,
        id: GroupId,
        me: &str,
        roster: Roster,
        epoch: u64,
        last_removal: u64,
    ) -> (Vec<String>, Vec<String>, Vec<Outgoing>) {
        let added: Vec<String> = roster
            .members
            .difference(&self.roster.members)
            .cloned()
            .collect();
        let removed: Vec<String> = self
            .roster
            .members
            .difference(&roster.members)
            .cloned()
            .collect();
        let mut last = self.last_removal.max(last_removal);
        if !removed.is_empty() {
            last = last.max(epoch);
        }
        for gone in &removed {
            self.records.remove(gone);
        }
        self.roster = roster;
        self.epoch = epoch;
        self.last_removal = last;
        let send = if last > self.own_since {
            self.own.rotate();
            self.own_since = epoch;
            self.others(me).map(|m| self.distribution(id, m)).collect()
        } else {
            added
                .iter()
                .filter(|m| *m != me)
                .map(|m| self.distribution(id, m))
                .collect()
        };
        (added, removed, send)
    }
}

fn control(id: GroupId, to: &str, epoch: u64, kind: group_control::Kind) -> Outgoing {
    Outgoing {
        to: to.to_owned(),
        control: v1::GroupControl {
            group_id: Bytes::copy_from_slice(id.as_bytes()),
            epoch,
            kind: Some(kind),
        },
    }
}

/// Every secret group of this device's user. Kept in the vault (serde;
/// read through [`Stored`], which moves the first version's layout on).
#[derive(Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct SecretGroups {
    me: String,
    groups: BTreeMap<GroupId, SecretGroup>,
    /// Groups we hold nothing of and asked a member about (a reinstall),
    /// oldest first: that member's answer with the state is offered as an
    /// invitation even if it is no admin.
    asked: VecDeque<(GroupId, String)>,
    /// Groups we left or were removed from, with the epoch then, oldest
    /// first: a welcome from before is not taken again.
    gone: VecDeque<(GroupId, u64)>,
    /// Groups offered to us, waiting for the user's answer.
    #[serde(default)]
    invitations: Vec<Invitation>,
    #[serde(default)]
    invitation_seq: u64,
    /// Invitations declined, oldest first: not offered again at that epoch.
    #[serde(default)]
    declined: Declined,
    /// Group messages kept until an invitation to their group is answered.
    #[serde(default)]
    held: Vec<HeldMessage>,
    /// Sender keys kept until an invitation to their group is answered.
    #[serde(default)]
    kept_keys: Vec<KeptKey>,
    /// Admins the user asked to confirm an answer ([`SecretGroups::confirm`]).
    #[serde(default)]
    confirming: VecDeque<(GroupId, String)>,
}

/// [`SecretGroups`] as the vault holds it, of any version.
#[derive(Deserialize)]
struct Stored {
    me: String,
    groups: BTreeMap<GroupId, SecretGroup>,
    asked: VecDeque<(GroupId, String)>,
    gone: VecDeque<(GroupId, u64)>,
    #[serde(default)]
    invitations: Vec<Invitation>,
    #[serde(default)]
    invitation_seq: u64,
    #[serde(default)]
    declined: Declined,
    #[serde(default)]
    held: Vec<HeldMessage>,
    #[serde(default)]
    kept_keys: Vec<KeptKey>,
    #[serde(default)]
    confirming: VecDeque<(GroupId, String)>,
}

impl From<Stored> for SecretGroups {
    fn from(s: Stored) -> Self {
        let mut groups = SecretGroups {
            me: s.me,
            groups: s.groups,
            asked: s.asked,
            gone: s.gone,
            invitations: s.invitations,
            invitation_seq: s.invitation_seq,
            declined: s.declined,
            held: s.held,
            kept_keys: s.kept_keys,
            confirming: s.confirming,
        };
        groups.migrate();
        groups
    }
}

impl SecretGroups {
    /// No groups yet, for this device's user `me`.
    pub fn new(me: &str) -> Self {
        SecretGroups {
            me: me.to_owned(),
            groups: BTreeMap::new(),
            asked: VecDeque::new(),
            gone: VecDeque::new(),
            invitations: Vec::new(),
            invitation_seq: 0,
            declined: VecDeque::new(),
            held: Vec::new(),
            kept_keys: Vec::new(),
            confirming: VecDeque::new(),
        }
    }

    /// The user these groups belong to.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The groups held, by id.
    pub fn ids(&self) -> impl Iterator<Item = &GroupId> {
        self.groups.keys()
    }

    pub fn info(&self, id: &GroupId) -> Option<GroupInfo> {
        self.groups.get(id).map(SecretGroup::info)
    }

    fn group(&self, id: &GroupId) -> Result<&SecretGroup> {
        self.groups.get(id).ok_or(SecretGroupError::UnknownGroup)
    }

    /// Refuses `name` when a group other than `id` holds it already: the
    /// commands find a group by its name, so a second one of that name
    /// (an unsolicited welcome from anyone) would make the first unreachable.
    fn check_name_free(&self, name: &str, id: Option<GroupId>) -> Result<()> {
        if self
            .groups
            .iter()
            .any(|(g, group)| Some(*g) != id && group.roster.name == name)
        {
            return Err(SecretGroupError::NameTaken(name.to_owned()));
        }
        Ok(())
    }

    fn group_mut(&mut self, id: &GroupId) -> Result<&mut SecretGroup> {
        self.groups
            .get_mut(id)
            .ok_or(SecretGroupError::UnknownGroup)
    }

    /// A new group named `name` with us (its only admin) and `members`.
    /// Returns its id and, for each other member, the state and our sender key.
    pub fn create(&mut self, name: &str, members: &[String]) -> Result<(GroupId, Vec<Outgoing>)> {
        if self.groups.len() >= MAX_GROUPS {
            return Err(SecretGroupError::TooManyGroups);
        }
        names::validate(name)?;
        self.check_name_free(name, None)?;
        if members.len() >= MAX_MEMBERS {
            return Err(SecretGroupError::TooManyMembers);
        }
        let mut all = distinct_names(members)?;
        if !all.insert(self.me.clone()) {
            return Err(SecretGroupError::AlreadyMember(self.me.clone()));
        }
        let roster = Roster {
            name: name.to_owned(),
            members: all,
            admins: BTreeSet::from([self.me.clone()]),
        };
        roster.check()?;
        let id = GroupId::random();
        let group = SecretGroup {
            roster,
            epoch: 1,
            last_removal: 0,
            own_since: 1,
            own: OwnSenderKey::create(id.as_bytes())?,
            records: BTreeMap::new(),
            timer: None,
        };
        let send = welcome(&group, id, &self.me);
        self.groups.insert(id, group);
        Ok((id, send))
    }

    /// The group's disappearing-message timer, in seconds (`None`: off).
    pub fn timer(&self, id: &GroupId) -> Option<u32> {
        self.groups.get(id).and_then(|g| g.timer)
    }

    /// Every group's timer that is on, by the group's name here.
    pub fn timers_by_name(&self) -> BTreeMap<String, u32> {
        self.groups
            .values()
            .filter_map(|g| g.timer.map(|t| (g.roster.name.clone(), t)))
            .collect()
    }

    /// Sets the group's timer on this device: ours, before we announce it,
    /// or a member's, from its group message that set it.
    pub fn set_timer(&mut self, id: &GroupId, secs: Option<u32>) -> Result<()> {
        self.group_mut(id)?.timer = secs.filter(|s| *s > 0);
        Ok(())
    }

    /// Encrypts one group message under our sender key: one ciphertext,
    /// for every member but us.
    pub fn encrypt(&mut self, id: &GroupId, plaintext: &[u8]) -> Result<GroupSend> {
        let me = self.me.clone();
        let group = self.group_mut(id)?;
        let ciphertext = group.own.encrypt(plaintext)?;
        Ok(GroupSend {
            ciphertext,
            recipients: group.others(&me).cloned().collect(),
        })
    }

    /// Decrypts a group message that the relay says `from` sent: only
    /// `from`'s sender keys are tried, so a member cannot pass its message
    /// off as another's. On error nothing changed.
    pub fn receive_message(
        &mut self,
        from: &str,
        id: &GroupId,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let me = self.me.clone();
        let group = self.group_mut(id)?;
        group.require_member(&me, from)?;
        let record = group
            .records
            .get_mut(from)
            .ok_or(SecretGroupError::Cipher(E2eError::UnknownSenderKey))?;
        Ok(record.decrypt(ciphertext)?)
    }

    /// Adds `users` (we must be an admin): the new state to every member,
    /// and our current sender key to the newcomers.
    pub fn add(&mut self, id: &GroupId, users: &[String]) -> Result<Vec<Outgoing>> {
        let me = self.me.clone();
        let group = self.group(id)?;
        group.require_admin(&me)?;
        let users = distinct_names(users)?;
        if let Some(member) = users.intersection(&group.roster.members).next() {
            return Err(SecretGroupError::AlreadyMember(member.clone()));
        }
        let mut roster = group.roster.clone();
        roster.members.extend(users);
        roster.check()?;
        let epoch = group.next_epoch()?;
        let last_removal = group.last_removal;
        self.change(*id, roster, epoch, last_removal, &[])
    }

    /// Removes `users` (we must be an admin, and not among them): the new
    /// state to every member, the removed too (so they know); a new sender
    /// key of ours to the remaining members only.
    pub fn remove(&mut self, id: &GroupId, users: &[String]) -> Result<Vec<Outgoing>> {
        let me = self.me.clone();
        let group = self.group(id)?;
        group.require_admin(&me)?;
        let users = distinct_names(users)?;
        if users.contains(&me) {
            return Err(SecretGroupError::RemoveSelf);
        }
        if let Some(stranger) = users.difference(&group.roster.members).next() {
            return Err(SecretGroupError::NotAMember(stranger.clone()));
        }
        let roster = group.roster.without(&users);
        let epoch = group.next_epoch()?;
        let removed: Vec<String> = users.into_iter().collect();
        self.change(*id, roster, epoch, epoch, &removed)
    }

    /// Our own change of membership: the state to every member of the new
    /// roster and to `removed`, then what [`SecretGroup::adopt`] sends.
    fn change(
        &mut self,
        id: GroupId,
        roster: Roster,
        epoch: u64,
        last_removal: u64,
        removed: &[String],
    ) -> Result<Vec<Outgoing>> {
        let me = self.me.clone();
        let group = self.group_mut(&id)?;
        let (_, _, distributions) = group.adopt(id, &me, roster, epoch, last_removal);
        let mut send: Vec<Outgoing> = group
            .others(&me)
            .chain(removed)
            .map(|m| group.state(id, m))
            .collect();
        send.extend(distributions);
        Ok(send)
    }

    /// Leaves the group: a `Leave` to every other member; the group is gone
    /// from this device.
    pub fn leave(&mut self, id: &GroupId) -> Result<Vec<Outgoing>> {
        let me = self.me.clone();
        let group = self.group(id)?;
        let epoch = group.next_epoch()?;
        let send = group
            .others(&me)
            .map(|m| control(*id, m, epoch, group_control::Kind::Leave(v1::GroupLeave {})))
            .collect();
        self.forget(*id, epoch);
        Ok(send)
    }

    /// A request for `member`'s sender key in group `id`: after one of its
    /// messages could not be read for want of its key, or, when we hold
    /// nothing of the group (a reinstall), for the state too.
    pub fn request_distribution(&mut self, id: &GroupId, member: &str) -> Result<Outgoing> {
        names::validate(member)?;
        if member == self.me {
            return Err(SecretGroupError::FromSelf);
        }
        let (epoch, need_state) = match self.groups.get(id) {
            Some(group) => {
                group.require_member(&self.me, member)?;
                (group.epoch, false)
            }
            None => {
                self.ask_about(id, member)?;
                (0, true)
            }
        };
        Ok(control(
            *id,
            member,
            epoch,
            group_control::Kind::RequestDistribution(v1::GroupRequestDistribution { need_state }),
        ))
    }

    /// Takes a control message that arrived from `from` in our pairwise
    /// session with it. On error nothing changed. `from` counts as someone
    /// the user knows if it shares a group with us
    /// ([`SecretGroups::receive_control_known`] says more).
    pub fn receive_control(&mut self, from: &str, control: &v1::GroupControl) -> Result<Outcome> {
        self.receive_control_known(from, control, false)
    }

    /// [`SecretGroups::receive_control`], where `known` says that the user
    /// knows `from` (wrote to them): an invitation of theirs is never pushed
    /// out by strangers' invitations.
    pub fn receive_control_known(
        &mut self,
        from: &str,
        control: &v1::GroupControl,
        known: bool,
    ) -> Result<Outcome> {
        if control.encoded_len() > MAX_CONTROL_LEN {
            return Err(SecretGroupError::ControlTooLarge);
        }
        names::validate(from)?;
        if from == self.me {
            return Err(SecretGroupError::FromSelf);
        }
        let id = GroupId::from_bytes(&control.group_id)?;
        let known = known
            || self
                .groups
                .values()
                .any(|g| g.roster.members.contains(from));
        match &control.kind {
            Some(group_control::Kind::State(state)) => {
                self.receive_state(from, id, control.epoch, state, known)
            }
            Some(group_control::Kind::Leave(_)) => self.receive_leave(from, id, control.epoch),
            Some(group_control::Kind::Distribution(d)) => {
                self.receive_distribution(from, id, control.epoch, d)
            }
            Some(group_control::Kind::RequestDistribution(r)) => {
                self.receive_request(from, id, r.need_state)
            }
            None => Err(SecretGroupError::Malformed),
        }
    }

    fn receive_state(
        &mut self,
        from: &str,
        id: GroupId,
        epoch: u64,
        state: &v1::GroupState,
        known: bool,
    ) -> Result<Outcome> {
        let roster = Roster::from_wire(state)?;
        if state.last_removal > epoch {
            return Err(SecretGroupError::Malformed);
        }
        if !roster.members.contains(from) {
            return Err(SecretGroupError::SenderNotInState);
        }
        let me = self.me.clone();
        self.check_name_free(&roster.name, Some(id))?;
        let Some(group) = self.groups.get_mut(&id) else {
            return self.invite(from, id, epoch, roster, state, known);
        };
        group.require_admin(from)?;
        if epoch <= group.epoch {
            return Err(SecretGroupError::Stale {
                got: epoch,
                held: group.epoch,
            });
        }
        if !roster.members.contains(&me) {
            self.forget(id, epoch);
            return Ok(Outcome {
                event: GroupEvent::RemovedUs {
                    group: id,
                    by: from.to_owned(),
                },
                send: Vec::new(),
            });
        }
        let (added, removed, send) = group.adopt(id, &me, roster, epoch, state.last_removal);
        Ok(Outcome {
            event: GroupEvent::Changed {
                group: id,
                by: from.to_owned(),
                added,
                removed,
            },
            send,
        })
    }

    fn receive_leave(&mut self, from: &str, id: GroupId, epoch: u64) -> Result<Outcome> {
        let me = self.me.clone();
        let group = self.group_mut(&id)?;
        group.require_member(&me, from)?;
        if epoch <= group.epoch {
            return Err(SecretGroupError::Stale {
                got: epoch,
                held: group.epoch,
            });
        }
        // The leaver names the epoch, but a leave is no admin's change: it
        // moves us one epoch on, never further. A far epoch from a hostile
        // leaver would make every later change of the admins look stale here
        // (a removed member would go on reading us), or end the counter.
        let epoch = group.next_epoch()?;
        let roster = group.roster.without(&BTreeSet::from([from.to_owned()]));
        let (_, _, send) = group.adopt(id, &me, roster, epoch, epoch);
        Ok(Outcome {
            event: GroupEvent::Left {
                group: id,
                who: from.to_owned(),
            },
            send,
        })
    }

    fn receive_distribution(
        &mut self,
        from: &str,
        id: GroupId,
        epoch: u64,
        distribution: &[u8],
    ) -> Result<Outcome> {
        let me = self.me.clone();
        if !self.groups.contains_key(&id) {
            return self.keep_for_invitation(from, id, epoch, distribution);
        }
        let group = self.group_mut(&id)?;
        group.require_member(&me, from)?;
        if epoch < group.last_removal {
            return Err(SecretGroupError::Stale {
                got: epoch,
                held: group.last_removal,
            });
        }
        let outcome = match group.records.get_mut(from) {
            Some(record) => record.process_distribution(distribution)?,
            None => {
                let mut record = SenderKeyRecord::new(id.as_bytes())?;
                let outcome = record.process_distribution(distribution)?;
                group.records.insert(from.to_owned(), record);
                outcome
            }
        };
        Ok(Outcome {
            event: GroupEvent::SenderKey {
                group: id,
                from: from.to_owned(),
                outcome,
            },
            send: Vec::new(),
        })
    }

    /// A member asks for our current sender key (and the state): what it
    /// gets reads our messages from now on, nothing before.
    fn receive_request(&mut self, from: &str, id: GroupId, need_state: bool) -> Result<Outcome> {
        if !self.groups.contains_key(&id) && self.invited_with(&id, from) {
            // Our key goes to every member once the user accepts.
            return Ok(Outcome {
                event: GroupEvent::Requested {
                    group: id,
                    from: from.to_owned(),
                },
                send: Vec::new(),
            });
        }
        let group = self.group(&id)?;
        group.require_member(&self.me, from)?;
        let mut send = Vec::new();
        if need_state {
            send.push(group.state(id, from));
        }
        send.push(group.distribution(id, from));
        Ok(Outcome {
            event: GroupEvent::Requested {
                group: id,
                from: from.to_owned(),
            },
            send,
        })
    }

    /// Drops a group we left or were removed from, remembering the epoch.
    fn forget(&mut self, id: GroupId, epoch: u64) {
        self.groups.remove(&id);
        self.gone.retain(|(g, _)| *g != id);
        self.gone.push_back((id, epoch));
        while self.gone.len() > MAX_GONE {
            self.gone.pop_front();
        }
    }
}

/// A state control message naming `name`, as anyone can write one.
#[cfg(test)]
pub(crate) fn forged_state(
    group: GroupId,
    epoch: u64,
    name: &str,
    members: &[&str],
    admins: &[&str],
) -> v1::GroupControl {
    v1::GroupControl {
        group_id: group.as_bytes().to_vec().into(),
        epoch,
        kind: Some(group_control::Kind::State(v1::GroupState {
            name: name.into(),
            members: members.iter().map(|s| s.to_string()).collect(),
            admins: admins.iter().map(|s| s.to_string()).collect(),
            last_removal: 0,
            timer_secs: 0,
        })),
    }
}

/// `groups`' user invited to alice's group "climbers", made with `members`
/// (the user among them). Returns the group's id.
#[cfg(test)]
pub(crate) fn invited_by_alice(groups: &mut SecretGroups, members: &[&str]) -> GroupId {
    let me = groups.me().to_owned();
    let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    let (id, send) = SecretGroups::new("alice")
        .create("climbers", &members)
        .unwrap();
    for out in send.into_iter().filter(|o| o.to == me) {
        let _ = groups.receive_control("alice", &out.control);
    }
    id
}

/// `groups`' user invited by mallory to a hijack of group `id` named
/// "climbers-club" (epoch 9, only the user and mallory in it).
#[cfg(test)]
pub(crate) fn hijacked_by_mallory(groups: &mut SecretGroups, id: GroupId) {
    let me = groups.me().to_owned();
    let hijack = forged_state(id, 9, "climbers-club", &[&me, "mallory"], &["mallory"]);
    groups.receive_control("mallory", &hijack).unwrap();
}

/// For each other member of a group we just made: the state, then our sender key.
fn welcome(group: &SecretGroup, id: GroupId, me: &str) -> Vec<Outgoing> {
    let mut send: Vec<Outgoing> = group.others(me).map(|m| group.state(id, m)).collect();
    send.extend(group.others(me).map(|m| group.distribution(id, m)));
    send
}
