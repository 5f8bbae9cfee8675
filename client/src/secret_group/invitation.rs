//! Invitations: a group this device does not hold waits for its user's
//! consent before anything is joined or sent (#17's review: a welcome taken
//! from anyone who named itself admin let an outsider, or a malicious relay
//! with an account, hijack a newcomer's view of a real group, or make the
//! device send its sender key to 254 strangers).
//!
//! Until the user accepts, an invitation is only shown: who sent it, the
//! group's name, members and admins. The sender keys its members send and
//! the group messages that arrive meanwhile are kept (once per group, not
//! per invitation), so accepting loses nothing that was written to the user
//! in between.
//!
//! Everything kept here arrives unasked, so all of it is bounded, in number
//! and in bytes, in all and per sender (the second review: held messages
//! and kept keys could grow the vault by tens of megabytes): the invitations
//! (a sender the user knows is never pushed out by strangers), the held
//! messages, the kept keys (checked to be sender keys, not opaque blobs).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use sotto_proto::v1::{self, group_control};
use zeroize::Zeroize;

use super::roster::Roster;
use super::{
    Accepted, GroupEvent, GroupId, HeldRead, Outcome, Outgoing, Result, SecretGroup,
    SecretGroupError, SecretGroups, control,
};
use crate::e2e::{OwnSenderKey, SenderKeyRecord};

/// The most invitations held at once (they are not groups: they do not
/// count towards `MAX_GROUPS`, so unsolicited ones cannot fill it).
pub const MAX_INVITATIONS: usize = 64;
/// The most invitations held from one sender: a further one replaces its
/// oldest, so one account cannot take the whole list.
pub const MAX_INVITATIONS_PER_SENDER: usize = 4;
/// The most group messages kept, for every invitation together.
pub const MAX_HELD_MESSAGES: usize = 256;
/// The most group messages kept from one sender: eight senders are needed
/// to fill [`MAX_HELD_MESSAGES`].
pub const MAX_HELD_MESSAGES_PER_SENDER: usize = MAX_HELD_MESSAGES / 8;
/// The most bytes of group messages kept, for every invitation together.
pub const MAX_HELD_BYTES: usize = 1024 * 1024;
/// The most bytes of kept group messages from one sender: eight senders
/// are needed to fill [`MAX_HELD_BYTES`].
pub const MAX_HELD_BYTES_PER_SENDER: usize = MAX_HELD_BYTES / 8;
/// The most sender keys kept for invitations, in all and from one sender.
pub const MAX_KEPT_KEYS: usize = 512;
pub const MAX_KEPT_KEYS_PER_SENDER: usize = 8;
/// The longest sender key distribution kept (one is about 100 bytes).
const MAX_KEPT_KEY_LEN: usize = 256;
/// The most declined invitations remembered.
const MAX_DECLINED: usize = 1024;

/// An invitation as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationInfo {
    pub group: GroupId,
    pub from: String,
    pub name: String,
    pub members: Vec<String>,
    pub admins: Vec<String>,
    /// The answer to our own request about a group message from `from` for
    /// a group this device does not hold (a reinstall, or whatever `from`
    /// says), not an admin's invitation.
    pub recovered: bool,
    /// Its sender names itself an admin of the group (its own word: this
    /// device cannot check it, the user judges by the members and admins).
    pub from_admin: bool,
    /// It can be accepted as it is: its sender, or this device's user,
    /// is an admin in it. An answer from a member who is no admin cannot
    /// be: accepting it asks its admins ([`SecretGroups::confirm`]), whose
    /// answer is the invitation to take.
    pub acceptable: bool,
    /// Group messages from its members kept until the user answers.
    pub held: usize,
}

/// What became of a group message for a group this device does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Kept until an invitation to its group is answered.
    Kept,
    /// Kept already (the relay handed it out again).
    Again,
    /// Not kept: the room for held messages (in all, or its sender's
    /// share) is taken.
    Full,
    /// No invitation to its group that names its sender waits here.
    NoInvitation,
}

/// A group message kept until an invitation to its group is answered.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct HeldMessage {
    group: GroupId,
    from: String,
    envelope_id: u64,
    #[serde(with = "hex")]
    ciphertext: Vec<u8>,
}

/// A sender key distribution kept until an invitation to its group is
/// answered. It holds a chain key: wiped when dropped, never logged.
#[derive(Serialize, Deserialize)]
pub(super) struct KeptKey {
    group: GroupId,
    from: String,
    /// The epoch its sender sent it at: one from before the group's last
    /// removal is not taken.
    epoch: u64,
    #[serde(with = "hex")]
    distribution: Vec<u8>,
}

impl KeptKey {
    #[cfg(test)]
    pub(super) fn from(&self) -> &str {
        &self.from
    }
}

impl Drop for KeptKey {
    fn drop(&mut self) {
        self.distribution.zeroize();
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
    /// From someone the user knows (wrote to, or shares a group with):
    /// never pushed out by a stranger's invitation.
    #[serde(default)]
    pub(super) known: bool,
    /// The group's timer as its sender holds it.
    #[serde(default)]
    pub(super) timer: Option<u32>,
    /// What the vault of the first version kept inside each invitation:
    /// moved out on load ([`SecretGroups::migrate`]), never written.
    #[serde(default, rename = "held", skip_serializing)]
    pub(super) legacy_held: Vec<LegacyHeld>,
    #[serde(default, rename = "keys", skip_serializing)]
    pub(super) legacy_keys: BTreeMap<String, LegacyKey>,
}

/// A held message as the first version kept it, inside its invitation.
#[derive(Deserialize)]
pub(super) struct LegacyHeld {
    from: String,
    envelope_id: u64,
    ciphertext: Vec<u8>,
}

/// A kept sender key as the first version kept it, inside its invitation.
#[derive(Deserialize)]
pub(super) struct LegacyKey(Vec<u8>);

impl Drop for LegacyKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretGroups {
    /// A group new to this device, from one of its admins (we were added)
    /// or from the member we asked (we lost it): kept as an invitation, and
    /// nothing else, until the user accepts it ([`SecretGroups::accept`]).
    pub(super) fn invite(
        &mut self,
        from: &str,
        id: GroupId,
        epoch: u64,
        roster: Roster,
        state: &v1::GroupState,
        known: bool,
    ) -> Result<Outcome> {
        let recovered = self.asked.contains(&(id, from.to_owned()));
        // An admin the user asked to confirm an answer: the user wants this.
        let confirming = self.confirming.contains(&(id, from.to_owned()));
        if let Some(at) = self.invitation_at(&id, from) {
            let held = &self.invitations[at];
            if epoch <= held.epoch {
                return Err(SecretGroupError::Stale {
                    got: epoch,
                    held: held.epoch,
                });
            }
            if !roster.members.contains(&self.me) {
                self.invitations.remove(at);
                self.drop_kept_if_uninvited(&id);
                return Ok(Outcome {
                    event: GroupEvent::Withdrawn {
                        group: id,
                        by: from.to_owned(),
                    },
                    send: Vec::new(),
                });
            }
        }
        if !roster.members.contains(&self.me) {
            return Err(SecretGroupError::NotForUs);
        }
        if !recovered && !roster.admins.contains(from) {
            return Err(SecretGroupError::NotAnAdmin(from.to_owned()));
        }
        if let Some((_, left_at)) = self.gone.iter().find(|(g, _)| *g == id)
            && epoch <= *left_at
        {
            return Err(SecretGroupError::Stale {
                got: epoch,
                held: *left_at,
            });
        }
        let known = known || confirming;
        if let Some((_, _, declined_at)) =
            self.declined.iter().find(|(g, f, _)| *g == id && f == from)
            && epoch <= *declined_at
        {
            return Err(SecretGroupError::Stale {
                got: epoch,
                held: *declined_at,
            });
        }
        // An answer to our own question is no sign that the user knows its
        // sender: a stranger provokes the question with a message of its own.
        let timer = (state.timer_secs > 0).then_some(state.timer_secs);
        let name = roster.name.clone();
        self.invitation_seq += 1;
        let seq = self.invitation_seq;
        match self.invitation_at(&id, from) {
            Some(at) => {
                let held = &mut self.invitations[at];
                held.roster = roster;
                held.epoch = epoch;
                held.last_removal = state.last_removal;
                held.recovered |= recovered;
                held.known |= known;
                held.timer = timer;
                held.seq = seq;
            }
            None => {
                self.make_room_for(from, known)?;
                self.invitations.push(Invitation {
                    group: id,
                    from: from.to_owned(),
                    roster,
                    epoch,
                    last_removal: state.last_removal,
                    recovered,
                    seq,
                    known,
                    timer,
                    legacy_held: Vec::new(),
                    legacy_keys: BTreeMap::new(),
                });
            }
        }
        self.asked.retain(|(g, m)| !(*g == id && m == from));
        self.confirming.retain(|(g, m)| !(*g == id && m == from));
        if confirming {
            // The user asked this admin to confirm the answers that name it
            // admin (from members who are none): this is the confirmation.
            let me = self.me.clone();
            self.invitations.retain(|i| {
                !(i.group == id
                    && i.from != from
                    && i.recovered
                    && !acceptable(&i.roster, &i.from, &me)
                    && i.roster.admins.contains(from))
            });
        }
        Ok(Outcome {
            event: GroupEvent::Invited {
                group: id,
                name,
                by: from.to_owned(),
                recovered,
            },
            send: Vec::new(),
        })
    }

    /// After loading: what the first version kept inside each invitation
    /// moves to the lists of held messages and kept keys (within their
    /// room), and what no invitation refers to any more is dropped.
    pub(super) fn migrate(&mut self) {
        for at in 0..self.invitations.len() {
            let group = self.invitations[at].group;
            let epoch = self.invitations[at].epoch;
            // Bounded by the first version's own limits: kept whole, not
            // cut to today's shares.
            for old in std::mem::take(&mut self.invitations[at].legacy_held) {
                if !self
                    .held
                    .iter()
                    .any(|h| h.group == group && h.envelope_id == old.envelope_id)
                {
                    self.held.push(HeldMessage {
                        group,
                        from: old.from,
                        envelope_id: old.envelope_id,
                        ciphertext: old.ciphertext,
                    });
                }
            }
            for (from, key) in std::mem::take(&mut self.invitations[at].legacy_keys) {
                let _ = self.keep_for_invitation(&from, group, epoch, &key.0);
            }
        }
        let invited: Vec<GroupId> = self.invitations.iter().map(|i| i.group).collect();
        self.held.retain(|h| invited.contains(&h.group));
        self.kept_keys.retain(|k| invited.contains(&k.group));
    }

    /// Where `from`'s invitation to group `id` is, or why there is none.
    fn invitation_of(&self, id: &GroupId, from: &str) -> Result<usize> {
        self.invitation_at(id, from)
            .ok_or_else(|| SecretGroupError::NoInvitation(from.to_owned()))
    }

    /// Whether an invitation to group `id` that names `member` waits.
    pub(super) fn invited_with(&self, id: &GroupId, member: &str) -> bool {
        self.invitations
            .iter()
            .any(|i| i.group == *id && i.roster.members.contains(member))
    }

    fn invitation_at(&self, id: &GroupId, from: &str) -> Option<usize> {
        self.invitations
            .iter()
            .position(|i| i.group == *id && i.from == from)
    }

    /// Room for one more invitation from `from`: its own oldest goes when it
    /// holds its share; when the list is full, a stranger's invitation goes,
    /// from the stranger holding the most (a stranger pushes out only one
    /// holding more than itself would, so many accounts cannot keep a new
    /// sender out, and nobody the user knows is pushed out by strangers).
    fn make_room_for(&mut self, from: &str, known: bool) -> Result<()> {
        let own = self.invitations.iter().filter(|i| i.from == from).count();
        if own >= MAX_INVITATIONS_PER_SENDER {
            self.push_out_oldest(from, false);
            return Ok(());
        }
        if self.invitations.len() < MAX_INVITATIONS {
            return Ok(());
        }
        let mut strangers: BTreeMap<&str, usize> = BTreeMap::new();
        for i in self.invitations.iter().filter(|i| !i.known) {
            *strangers.entry(i.from.as_str()).or_default() += 1;
        }
        let most = strangers
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(who, n)| (who.to_owned(), n));
        match most {
            Some((who, n)) if known || n > own + 1 => {
                self.push_out_oldest(&who, true);
                Ok(())
            }
            _ => Err(SecretGroupError::TooManyInvitations),
        }
    }

    /// Drops `who`'s oldest invitation (of those from a stranger, if
    /// `strangers_only`), and what was kept for its group if no other
    /// invitation to it waits.
    fn push_out_oldest(&mut self, who: &str, strangers_only: bool) {
        let oldest = (0..self.invitations.len())
            .filter(|&i| {
                let invitation = &self.invitations[i];
                invitation.from == who && !(strangers_only && invitation.known)
            })
            .min_by_key(|&i| self.invitations[i].seq);
        if let Some(at) = oldest {
            let gone = self.invitations.remove(at);
            self.drop_kept_if_uninvited(&gone.group);
        }
    }

    /// The invitations waiting for an answer, oldest first.
    pub fn invitations(&self) -> Vec<InvitationInfo> {
        let mut all: Vec<&Invitation> = self.invitations.iter().collect();
        all.sort_by_key(|i| i.seq);
        all.into_iter()
            .map(|i| InvitationInfo {
                group: i.group,
                from: i.from.clone(),
                name: i.roster.name.clone(),
                members: i.roster.members.iter().cloned().collect(),
                admins: i.roster.admins.iter().cloned().collect(),
                recovered: i.recovered,
                from_admin: i.roster.admins.contains(&i.from),
                acceptable: acceptable(&i.roster, &i.from, &self.me),
                held: self
                    .held
                    .iter()
                    .filter(|h| h.group == i.group && i.roster.members.contains(&h.from))
                    .count(),
            })
            .collect()
    }

    /// Declines `from`'s invitation to group `id`: forgotten, with what was
    /// kept for it once no other invitation to the group waits. Nothing is
    /// sent (the sender is not told). The same state from the same sender
    /// is not offered again, and the group's messages ask for nothing; a
    /// later change of the sender's (a new invitation) still reaches us.
    /// Another sender's invitation to the group is not touched: the epoch a
    /// hijacker names cannot keep the real group's admin out.
    pub fn decline(&mut self, id: &GroupId, from: &str) -> Result<()> {
        let at = self.invitation_of(id, from)?;
        let invitation = self.invitations.remove(at);
        self.declined.retain(|(g, f, _)| !(g == id && *f == from));
        self.declined
            .push_back((*id, from.to_owned(), invitation.epoch));
        while self.declined.len() > MAX_DECLINED {
            self.declined.pop_front();
        }
        // The questions to other members stand (an honest answer may be on
        // its way); the admins this invitation named, which the user may
        // have asked to confirm it, are no longer someone the user wants to
        // hear from (the admins other answers named still are).
        self.asked.retain(|(g, m)| !(g == id && m == from));
        self.confirming
            .retain(|(g, a)| !(g == id && invitation.roster.admins.contains(a)));
        self.drop_kept_if_uninvited(id);
        Ok(())
    }

    /// Held messages and kept keys of group `id` go once no invitation to
    /// it waits.
    fn drop_kept_if_uninvited(&mut self, id: &GroupId) {
        if !self.invitations.iter().any(|i| i.group == *id) {
            self.held.retain(|h| h.group != *id);
            self.kept_keys.retain(|k| k.group != *id);
        }
    }

    /// Accepts `from`'s invitation to group `id`: the group is joined with
    /// the members that invitation names. Other invitations to the same
    /// group are then taken as changes, under the usual rule (only from an
    /// admin of the group as accepted, only at a later epoch): a hijacker's
    /// is refused. Then the sender keys kept for it (from members, since the
    /// last removal), and the group messages kept for it are read. Our new
    /// sender key goes to every other member; each member whose key did not
    /// arrive meanwhile is asked for it. On error nothing changed.
    pub fn accept(&mut self, id: &GroupId, from: &str) -> Result<Accepted> {
        let at = self.invitation_of(id, from)?;
        let roster = &self.invitations[at].roster;
        if !acceptable(roster, from, &self.me) {
            return Err(SecretGroupError::Unconfirmed(
                roster.admins.iter().cloned().collect(),
            ));
        }
        self.check_name_free(&self.invitations[at].roster.name, Some(*id))?;
        if self.groups.len() >= super::MAX_GROUPS {
            return Err(SecretGroupError::TooManyGroups);
        }
        let own = OwnSenderKey::create(id.as_bytes())?;
        // Every fallible step is above: from here on, the state changes.
        let invitation = self.invitations.remove(at);
        let (mut others, rest): (Vec<Invitation>, Vec<Invitation>) =
            std::mem::take(&mut self.invitations)
                .into_iter()
                .partition(|i| i.group == *id);
        self.invitations = rest;
        self.asked.retain(|(g, _)| g != id);
        self.confirming.retain(|(g, _)| g != id);
        self.gone.retain(|(g, _)| g != id);
        self.declined.retain(|(g, _, _)| g != id);
        let (kept_keys, rest): (Vec<KeptKey>, Vec<KeptKey>) = std::mem::take(&mut self.kept_keys)
            .into_iter()
            .partition(|k| k.group == *id);
        self.kept_keys = rest;
        let (mut held, rest): (Vec<HeldMessage>, Vec<HeldMessage>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.group == *id);
        self.held = rest;

        let me = self.me.clone();
        let name = invitation.roster.name.clone();
        self.groups.insert(
            *id,
            SecretGroup {
                roster: invitation.roster.clone(),
                epoch: invitation.epoch,
                last_removal: invitation.last_removal,
                own_since: invitation.epoch,
                own,
                records: BTreeMap::new(),
                timer: invitation.timer,
            },
        );
        let mut events = vec![GroupEvent::Joined {
            group: *id,
            name: name.clone(),
            by: invitation.from.clone(),
        }];
        // Our own sender key goes to every member below, once the changes
        // are applied: the distributions they would send are left out.
        let mut send: Vec<Outgoing> = Vec::new();
        others.sort_by_key(|i| i.epoch);
        for other in others {
            let state = other.roster.to_wire(other.last_removal, other.timer);
            let known = other.known;
            if let Ok(outcome) = self.receive_state(&other.from, *id, other.epoch, &state, known) {
                events.push(outcome.event);
                send.extend(outcome.send.into_iter().filter(|o| {
                    !matches!(o.control.kind, Some(group_control::Kind::Distribution(_)))
                }));
            }
        }
        let group = self.groups.get_mut(id).expect("inserted above");
        for key in kept_keys {
            if key.epoch < group.last_removal || group.require_member(&me, &key.from).is_err() {
                continue;
            }
            // A key that does not take (damaged, a conflict) is asked for
            // again below.
            let record = match group.records.remove(&key.from) {
                Some(record) => Some(record),
                None => SenderKeyRecord::new(id.as_bytes()).ok(),
            };
            if let Some(mut record) = record
                && record.process_distribution(&key.distribution).is_ok()
            {
                group.records.insert(key.from.clone(), record);
            }
        }
        let epoch = group.epoch;
        send.extend(group.others(&me).map(|m| group.distribution(*id, m)));
        send.extend(
            group
                .others(&me)
                .filter(|m| !group.records.contains_key(*m))
                .map(|m| {
                    control(
                        *id,
                        m,
                        epoch,
                        group_control::Kind::RequestDistribution(v1::GroupRequestDistribution {
                            need_state: false,
                        }),
                    )
                }),
        );
        held.sort_by_key(|h| h.envelope_id);
        held.dedup_by_key(|h| h.envelope_id);
        let messages = held
            .into_iter()
            .map(|h| HeldRead {
                plaintext: self.receive_message(&h.from, id, &h.ciphertext),
                from: h.from,
                envelope_id: h.envelope_id,
            })
            .collect();
        Ok(Accepted {
            group: *id,
            name,
            send,
            events,
            messages,
        })
    }

    /// Keeps a group message for group `id` until an invitation to it that
    /// names `from` as a member is answered, within the room for held
    /// messages (in all, and `from`'s share).
    pub fn hold_message(
        &mut self,
        from: &str,
        id: &GroupId,
        envelope_id: u64,
        ciphertext: &[u8],
    ) -> Hold {
        let invited = self.invited_with(id, from);
        if !invited {
            return Hold::NoInvitation;
        }
        if self
            .held
            .iter()
            .any(|h| h.group == *id && h.envelope_id == envelope_id)
        {
            return Hold::Again;
        }
        let bytes: usize = self.held.iter().map(|h| h.ciphertext.len()).sum();
        let (count, theirs) = self
            .held
            .iter()
            .filter(|h| h.from == from)
            .fold((0, 0), |(n, b), h| (n + 1, b + h.ciphertext.len()));
        if self.held.len() >= MAX_HELD_MESSAGES
            || count >= MAX_HELD_MESSAGES_PER_SENDER
            || bytes + ciphertext.len() > MAX_HELD_BYTES
            || theirs + ciphertext.len() > MAX_HELD_BYTES_PER_SENDER
        {
            return Hold::Full;
        }
        self.held.push(HeldMessage {
            group: *id,
            from: from.to_owned(),
            envelope_id,
            ciphertext: ciphertext.to_vec(),
        });
        Hold::Kept
    }

    /// A sender key for a group we are invited to and have not answered:
    /// kept (the newest of each member) if an invitation to the group names
    /// its sender as a member, taken when the user accepts. Only a well
    /// formed sender key is kept, within the room for them.
    pub(super) fn keep_for_invitation(
        &mut self,
        from: &str,
        id: GroupId,
        epoch: u64,
        distribution: &[u8],
    ) -> Result<Outcome> {
        let invited = self.invited_with(&id, from);
        if !invited {
            return Err(SecretGroupError::UnknownGroup);
        }
        if distribution.len() > MAX_KEPT_KEY_LEN {
            return Err(SecretGroupError::ControlTooLarge);
        }
        SenderKeyRecord::new(id.as_bytes())?.process_distribution(distribution)?;
        if let Some(at) = self
            .kept_keys
            .iter()
            .position(|k| k.group == id && k.from == from)
        {
            if epoch < self.kept_keys[at].epoch {
                return Err(SecretGroupError::Stale {
                    got: epoch,
                    held: self.kept_keys[at].epoch,
                });
            }
            self.kept_keys.remove(at);
        } else if self.kept_keys.iter().filter(|k| k.from == from).count()
            >= MAX_KEPT_KEYS_PER_SENDER
        {
            let oldest = self
                .kept_keys
                .iter()
                .position(|k| k.from == from)
                .expect("it holds some");
            self.kept_keys.remove(oldest);
        } else if self.kept_keys.len() >= MAX_KEPT_KEYS {
            return Err(SecretGroupError::TooManyInvitations);
        }
        self.kept_keys.push(KeptKey {
            group: id,
            from: from.to_owned(),
            epoch,
            distribution: distribution.to_vec(),
        });
        Ok(Outcome {
            event: GroupEvent::KeptForInvitation {
                group: id,
                from: from.to_owned(),
            },
            send: Vec::new(),
        })
    }

    /// Asks `member` about group `id`, which this device does not hold,
    /// after a group message from `member` for it: once per (group, member)
    /// until the answer; the oldest question is dropped for a new one (one
    /// member holds at most [`MAX_ASKED_PER_MEMBER`] of them), so bogus
    /// group ids cannot stop a real recovery. A member whose invitation to
    /// the group was declined is not asked; one named by an invitation that
    /// waits is not either (its messages are kept with it).
    pub(super) fn ask_about(&mut self, id: &GroupId, member: &str) -> Result<()> {
        if self.gone.iter().any(|(g, _)| g == id)
            || self.declined.iter().any(|(g, f, _)| g == id && f == member)
        {
            return Err(SecretGroupError::Gone);
        }
        if self.invited_with(id, member) {
            return Err(SecretGroupError::InvitationWaits);
        }
        self.ask(id, member)
    }

    /// Records the question to `member` about group `id`.
    fn ask(&mut self, id: &GroupId, member: &str) -> Result<()> {
        let question = (*id, member.to_owned());
        if self.asked.contains(&question) {
            return Err(SecretGroupError::AlreadyAsked);
        }
        if self.asked.iter().filter(|(_, m)| m == member).count() >= MAX_ASKED_PER_MEMBER {
            let oldest = self
                .asked
                .iter()
                .position(|(_, m)| m == member)
                .expect("it holds some");
            self.asked.remove(oldest);
        }
        while self.asked.len() >= super::MAX_ASKED {
            self.asked.pop_front();
        }
        self.asked.push_back(question);
        Ok(())
    }

    /// The user accepts an answer from a member who is no admin (see
    /// [`InvitationInfo::acceptable`]): the admins it names (at most
    /// [`MAX_ASKED_PER_MEMBER`], none whose invitation to the group the
    /// user declined) are asked for the group, again if asked before (a
    /// question lost on its way); their answer comes as an invitation of
    /// its own, from someone the user asked for, to accept. Nothing is
    /// joined. Asking is the user's choice: the answer named those people.
    pub fn confirm(&mut self, id: &GroupId, from: &str) -> Result<Vec<Outgoing>> {
        let at = self.invitation_of(id, from)?;
        let admins: Vec<String> = self.invitations[at]
            .roster
            .admins
            .iter()
            .filter(|a| **a != self.me)
            .filter(|a| !self.declined.iter().any(|(g, f, _)| g == id && f == *a))
            .take(MAX_ASKED_PER_MEMBER)
            .cloned()
            .collect();
        if admins.is_empty() {
            return Err(SecretGroupError::NobodyToAsk);
        }
        let mut send = Vec::new();
        for admin in admins {
            let question = (*id, admin.clone());
            self.asked.retain(|q| *q != question);
            self.ask(id, &admin)?;
            self.confirming.retain(|q| *q != question);
            while self.confirming.len() >= super::MAX_ASKED {
                self.confirming.pop_front();
            }
            self.confirming.push_back(question);
            send.push(control(
                *id,
                &admin,
                0,
                group_control::Kind::RequestDistribution(v1::GroupRequestDistribution {
                    need_state: true,
                }),
            ));
        }
        Ok(send)
    }
}

/// Whether an invitation in `roster` from `from` can be accepted as it is,
/// by `me`: its sender names itself admin (its word, as any invitation's),
/// or it names `me` its sole admin (a reinstalled admin's own group). An
/// answer naming `me` beside another admin is confirmed by that admin: an
/// honest state never names two (only the creator is admin, or the member
/// promoted when it leaves).
fn acceptable(roster: &Roster, from: &str, me: &str) -> bool {
    roster.admins.contains(from) || (roster.admins.len() == 1 && roster.admins.contains(me))
}

/// The most open questions to one member about groups we do not hold.
pub const MAX_ASKED_PER_MEMBER: usize = 4;

/// Declined invitations remembered: (group, sender, epoch of its state).
pub(super) type Declined = VecDeque<(GroupId, String, u64)>;
