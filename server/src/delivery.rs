//! Delivery marks (✓✓) for normal messages: a sender learns that their
//! messages reached the recipient's client, which fetched and acknowledged
//! them (`Ack` moved its inbox cursor past them); in a group, that every other
//! member's client did.
//!
//! Invariant: a sender learns about their own messages only, and only as the
//! id of one of them. A recipient's cursor is the newest message they
//! acknowledged from anyone: handing it out, or comparing it with an id the
//! asker did not send, would tell of the recipient's other chats.
//!
//! Two ways out: [`on_ack`] says, when a recipient acknowledges, which senders
//! to tell what (the handler pushes it to them live); [`status`] answers a
//! sender who was away (`DeliveryStatus`, which the client asks after login).

use std::collections::{BTreeMap, HashMap};

use sotto_proto::v1::Delivered;

use crate::RelayError;
use crate::archive::cluster::AckTells;
use crate::archive::{Archive, ClusterArchive, Posted};
use crate::groups::Groups;
use crate::records::NormalRecord;

/// Most messages one acknowledgement is read back for, to tell their senders.
/// A client acknowledges one fetch at a time, which is at most this many; an
/// acknowledgement past more tells live senders of the first ones only, and
/// the others learn it when they next ask (`DeliveryStatus`).
pub const ACK_READ_LIMIT: usize = sotto_proto::MAX_FETCH as usize;

/// A conversation as its sender names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Conversation {
    /// A 1:1 chat with this person.
    Direct(String),
    Group(String),
}

impl Conversation {
    fn of(record: &NormalRecord) -> Self {
        match record.group.is_empty() {
            true => Conversation::Direct(record.to.clone()),
            false => Conversation::Group(record.group.clone()),
        }
    }

    fn delivered_upto(self, upto: u64) -> Delivered {
        let (peer, group) = match self {
            Conversation::Direct(peer) => (peer, String::new()),
            Conversation::Group(group) => (String::new(), group),
        };
        Delivered { peer, group, upto }
    }
}

/// Cursors and group members, each read once per reckoning.
struct Ledger<'a> {
    archive: &'a Archive,
    groups: &'a Groups,
    cursors: HashMap<String, u64>,
    members: HashMap<String, Option<Vec<String>>>,
}

impl<'a> Ledger<'a> {
    fn new(archive: &'a Archive, groups: &'a Groups) -> Self {
        Ledger {
            archive,
            groups,
            cursors: HashMap::new(),
            members: HashMap::new(),
        }
    }

    fn cursor(&mut self, user: &str) -> Result<u64, RelayError> {
        if let Some(c) = self.cursors.get(user) {
            return Ok(*c);
        }
        let c = self.archive.acknowledged(user)?;
        self.cursors.insert(user.to_owned(), c);
        Ok(c)
    }

    /// Who has to have `record` for it to be delivered: its recipient, or the
    /// group's members it went to that are members still, its sender aside.
    fn recipients(&mut self, record: &NormalRecord) -> Result<Vec<String>, RelayError> {
        if record.group.is_empty() {
            return Ok(vec![record.to.clone()]);
        }
        if !self.members.contains_key(&record.group) {
            let members = self.groups.get(&record.group)?.map(|g| g.members);
            self.members.insert(record.group.clone(), members);
        }
        let current = self.members.get(&record.group).and_then(Option::as_ref);
        Ok(record
            .participants
            .iter()
            .filter(|p| **p != record.from)
            .filter(|p| current.is_none_or(|members| members.contains(p)))
            .cloned()
            .collect())
    }

    /// Whether every recipient's client acknowledged `record`.
    fn delivered(&mut self, record: &NormalRecord) -> Result<bool, RelayError> {
        let recipients = self.recipients(record)?;
        if recipients.is_empty() {
            return Ok(false);
        }
        for recipient in recipients {
            if self.cursor(&recipient)? < record.id {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// What `user`'s acknowledgement, which moved their cursor from `before` to
/// `after` (now durable), tells the senders of the messages it moved past:
/// for each sender and conversation, the newest
/// of the sender's messages there that is delivered now, as (sender, what to
/// push them). A record is read only to name the sender and conversation and
/// to check a group's other members: in a 1:1 chat, one per conversation.
pub fn on_ack(
    archive: &Archive,
    groups: &Groups,
    user: &str,
    before: u64,
    after: u64,
) -> Result<Vec<(String, Delivered)>, RelayError> {
    match archive {
        // Its copies carry what the rule needs (see `delivered_one_to_one`);
        // a group message asks every other member's copies too.
        Archive::Cluster(cluster, _) => {
            let AckTells { mut told, posts } = cluster.delivered_one_to_one(user, before, after)?;
            let mut ledger = Ledger::new(archive, groups);
            let mut senders: BTreeMap<String, Vec<NormalRecord>> = BTreeMap::new();
            for record in posts {
                senders.entry(record.from.clone()).or_default().push(record);
            }
            // One budget for the whole acknowledgement, however many senders.
            let mut budget = CLUSTER_READS;
            for (sender, records) in senders {
                for (conversation, upto) in
                    newest_on_cluster(cluster, &mut ledger, &sender, records, &mut budget)?
                {
                    told.push((sender.clone(), conversation.delivered_upto(upto)));
                }
            }
            told.sort_by(|(a, x), (b, y)| (a, &x.peer, &x.group).cmp(&(b, &y.peer, &y.group)));
            Ok(told)
        }
        Archive::Local(_) => {
            let acked = archive.received_between(user, before, after, ACK_READ_LIMIT)?;
            told_of(archive, groups, &acked)
        }
    }
}

/// What the messages in `acked` tell their senders (see [`on_ack`]).
fn told_of(
    archive: &Archive,
    groups: &Groups,
    acked: &[Posted],
) -> Result<Vec<(String, Delivered)>, RelayError> {
    let mut ledger = Ledger::new(archive, groups);
    let mut told = Vec::new();
    for posted in newest_first_by_thread(acked) {
        if let Some((record, delivered)) = first_delivered(&mut ledger, &posted)? {
            told.push((record.from.clone(), delivered));
        }
    }
    // In the order of names, whatever the blinds' order.
    told.sort_by(|(a, x), (b, y)| (a, &x.peer, &x.group).cmp(&(b, &y.peer, &y.group)));
    Ok(told)
}

/// Which of `ids` that `sender` sent are delivered: for each conversation,
/// the newest of them. An id `sender` did not send is passed over, as if it
/// were not delivered.
pub fn status(
    archive: &Archive,
    groups: &Groups,
    sender: &str,
    ids: &[u64],
) -> Result<Vec<Delivered>, RelayError> {
    if let Archive::Cluster(cluster, _) = archive {
        let mine = cluster.sent_among(sender, ids)?;
        let mut ledger = Ledger::new(archive, groups);
        let mut budget = CLUSTER_READS;
        return Ok(
            newest_on_cluster(cluster, &mut ledger, sender, mine, &mut budget)?
                .into_iter()
                .map(|(conversation, upto)| conversation.delivered_upto(upto))
                .collect(),
        );
    }
    let mine = archive.sent_among(sender, ids)?;
    let mut ledger = Ledger::new(archive, groups);
    let mut newest: BTreeMap<Conversation, u64> = BTreeMap::new();
    for posted in newest_first_by_thread(&mine) {
        if let Some((record, _)) = first_delivered(&mut ledger, &posted)? {
            newest.insert(Conversation::of(&record), record.id);
        }
    }
    Ok(newest
        .into_iter()
        .map(|(conversation, upto)| conversation.delivered_upto(upto))
        .collect())
}

/// Most reads of the cluster one reckoning makes (one acknowledgement's, or
/// one question's): copies and cursors.
const CLUSTER_READS: usize = 4 * sotto_proto::MAX_FETCH as usize;

/// On a cluster: of `records`, all `sender`'s, the newest delivered in each
/// conversation (with every older one of theirs there). Newest first; a
/// reckoning whose reads ran out claims nothing more.
fn newest_on_cluster(
    cluster: &ClusterArchive,
    ledger: &mut Ledger<'_>,
    sender: &str,
    mut records: Vec<NormalRecord>,
    budget: &mut usize,
) -> Result<BTreeMap<Conversation, u64>, RelayError> {
    records.sort_by_key(|r| std::cmp::Reverse(r.id));
    let mut newest = BTreeMap::new();
    let mut settled = std::collections::BTreeSet::new();
    for record in records {
        let conversation = Conversation::of(&record);
        if settled.contains(&conversation) || record.from != sender {
            continue;
        }
        let recipients = ledger.recipients(&record)?;
        let mut delivered = !recipients.is_empty();
        for recipient in &recipients {
            match cluster.delivered_to(
                recipient,
                &record.conversation,
                sender,
                record.id,
                budget,
            )? {
                Some(true) => {}
                Some(false) => {
                    delivered = false;
                    break;
                }
                // Out of reads: nothing more is claimed, here or elsewhere.
                None => return Ok(newest),
            }
        }
        if delivered {
            settled.insert(conversation.clone());
            newest.insert(conversation, record.id);
        }
    }
    Ok(newest)
}

/// `posted` grouped by sender and conversation, each group newest first.
fn newest_first_by_thread(posted: &[Posted]) -> Vec<Vec<Posted>> {
    let mut threads: BTreeMap<([u8; 16], [u8; 16]), Vec<Posted>> = BTreeMap::new();
    for p in posted {
        threads.entry(p.thread()).or_default().push(*p);
    }
    threads
        .into_values()
        .map(|mut list| {
            list.sort_by_key(|p| std::cmp::Reverse(p.id()));
            list
        })
        .collect()
}

/// The newest message of one thread (newest first) that is delivered, with
/// what to tell its sender: the first delivered one covers the older ones.
fn first_delivered(
    ledger: &mut Ledger<'_>,
    thread: &[Posted],
) -> Result<Option<(NormalRecord, Delivered)>, RelayError> {
    for posted in thread {
        let record = ledger.archive.load_posted(*posted)?;
        if ledger.delivered(&record)? {
            let delivered = Conversation::of(&record).delivered_upto(record.id);
            return Ok(Some((record, delivered)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::archive::{Appended, Destination, NewNormal, NormalArchive};
    use crate::store::TestDir;

    struct Relay {
        _dir: TestDir,
        archive: Archive,
        groups: Groups,
        next: u8,
    }

    impl Relay {
        fn new() -> Self {
            let dir = TestDir::new();
            let store = dir.store();
            Relay {
                archive: Archive::Local(Arc::new(
                    NormalArchive::open(store.clone(), dir.sealer.clone()).unwrap(),
                )),
                groups: Groups::new(store, Arc::clone(&dir.sealer)),
                _dir: dir,
                next: 0,
            }
        }

        fn send(&mut self, from: &str, to: Destination) -> u64 {
            self.next += 1;
            let msg = NewNormal {
                from: from.into(),
                to,
                text: "hello".into(),
                client_id: [self.next; 16],
            };
            match self.archive.append_many(vec![msg]).pop().unwrap().unwrap() {
                Appended::New { record, .. } => record.id,
                Appended::Duplicate(_) => panic!("a fresh message taken for a duplicate"),
            }
        }

        fn dm(&mut self, from: &str, to: &str) -> u64 {
            self.send(from, Destination::User(to.into()))
        }

        fn post(&mut self, from: &str, group: &str) -> u64 {
            let group = self.groups.get(group).unwrap().unwrap();
            self.send(from, Destination::Group(group))
        }

        /// `user` acknowledges up to `upto`; what the relay would push, to whom.
        fn ack(&self, user: &str, upto: u64) -> Vec<(String, Delivered)> {
            let before = self.archive.acknowledged(user).unwrap();
            self.archive.ack(user, upto).unwrap();
            let after = self.archive.acknowledged(user).unwrap();
            on_ack(&self.archive, &self.groups, user, before, after).unwrap()
        }

        fn status(&self, sender: &str, ids: &[u64]) -> Vec<Delivered> {
            status(&self.archive, &self.groups, sender, ids).unwrap()
        }
    }

    fn direct(peer: &str, upto: u64) -> Delivered {
        Conversation::Direct(peer.into()).delivered_upto(upto)
    }

    fn group(name: &str, upto: u64) -> Delivered {
        Conversation::Group(name.into()).delivered_upto(upto)
    }

    #[test]
    fn an_acknowledgement_tells_each_sender_their_newest_message_it_covered() {
        let mut r = Relay::new();
        let a1 = r.dm("alice", "bob");
        let c1 = r.dm("carol", "bob");
        let a2 = r.dm("alice", "bob");
        let a3 = r.dm("alice", "bob");
        let told = r.ack("bob", a2);
        assert_eq!(
            told,
            [
                ("alice".to_owned(), direct("bob", a2)),
                ("carol".to_owned(), direct("bob", c1))
            ]
        );
        assert!(a1 < a2 && a2 < a3);
        // Asked later: the same answer, and a3 is not delivered.
        assert_eq!(r.status("alice", &[a1, a2, a3]), [direct("bob", a2)]);
        assert_eq!(r.status("alice", &[a3]), []);
    }

    #[test]
    fn curious_user_learns_nothing_of_another_person_s_cursor() {
        let mut r = Relay::new();
        let from_alice = r.dm("alice", "bob");
        let from_carol = r.dm("carol", "bob");
        r.ack("bob", from_carol);
        // Carol asks about alice's message to bob, and about ids around it:
        // nothing, as for a message nobody acknowledged.
        // (Her own message is among them: that one she learns about.)
        let probes = [
            from_alice,
            from_alice + 1,
            from_carol,
            from_carol + 1,
            u64::MAX,
            0,
            1,
        ];
        assert_eq!(r.status("carol", &probes), [direct("bob", from_carol)]);
        assert_eq!(r.status("mallory", &[from_alice, from_carol]), []);
        // Alice asks about carol's message to bob (bob's cursor is at it):
        // nothing; about her own, which bob acknowledged: yes.
        assert_eq!(r.status("alice", &[from_carol]), []);
        assert_eq!(
            r.status("alice", &[from_alice]),
            [direct("bob", from_alice)]
        );
        // Bob, who received it, may not ask about it either.
        assert_eq!(r.status("bob", &[from_alice, from_carol]), []);
        // Bob's own message to alice is not bob's to ask about at alice's cursor
        // until alice acknowledges it.
        let from_bob = r.dm("bob", "alice");
        assert_eq!(r.status("bob", &[from_bob]), []);
        assert_eq!(r.status("alice", &[from_bob]), []);
    }

    #[test]
    fn a_group_message_is_delivered_once_every_other_member_acknowledged_it() {
        let mut r = Relay::new();
        r.groups
            .create("crew", "alice", &["bob".into(), "carol".into()])
            .unwrap()
            .unwrap();
        let m = r.post("alice", "crew");
        assert_eq!(r.ack("bob", m), []);
        assert_eq!(r.status("alice", &[m]), []);
        // The sender's own cursor does not count; carol's does.
        assert_eq!(r.ack("carol", m), [("alice".to_owned(), group("crew", m))]);
        assert_eq!(r.status("alice", &[m]), [group("crew", m)]);
        // Bob may not ask about alice's message in his group.
        assert_eq!(r.status("bob", &[m]), []);
    }

    #[test]
    fn an_acknowledgement_covering_nothing_new_tells_nobody() {
        let mut r = Relay::new();
        let m = r.dm("alice", "bob");
        assert_eq!(r.ack("bob", m).len(), 1);
        assert_eq!(r.ack("bob", m), []);
        assert_eq!(r.ack("bob", m - 1), []);
    }
}
