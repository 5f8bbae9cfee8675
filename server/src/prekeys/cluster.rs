//! Published prekeys on the cluster, for relay nodes that share them.
//!
//! - Each user's published set (identity DH key, signed prekey, last-resort
//!   ML-KEM-1024 prekey) is one value in the key-value bucket
//!   [`PREKEY_SETS`], under the same keyed blind the embedded store uses.
//! - Each one-time prekey is one message in the stream
//!   [`PREKEYS`](crate::cluster::PREKEYS), on the subject
//!   `prekey.<user token>.<c|q>.<id>` (`c` curve, `q` ML-KEM-1024), at most
//!   one message a subject. The user token is a keyed blind: the cluster's
//!   operator sees how many keys someone holds, never whose they are.
//!
//! Taking a one-time prekey reads the first message on the user's subjects
//! and deletes it: **the delete decides** who took it. Two nodes that read
//! the same message both ask the stream's leader to delete it; the stream's
//! Raft log orders the two requests, the first deletes it, and the second is
//! told there is no such message and reads the next one. A key is handed out
//! only after its delete was acknowledged by a majority of the replicas.
//!
//! Every value is sealed by the relay before it leaves the node, with the
//! user, the kind and the id in its associated data: a record moved to
//! another user's subject, or to another id, does not open.
//!
//! Limits: [`MAX_ONE_TIME`] is checked against what a user holds when an
//! upload starts, so two uploads at once on two nodes may leave up to twice
//! as many. And the cluster's operator, without the relay's keys, can
//! publish again a record it saw taken, so that one-time prekey goes out
//! twice, as a copy of an embedded store put back would; X3DH then loses
//! that key's one-time property for the second session, not its secrecy.

use std::collections::HashSet;
use std::sync::Arc;

use async_nats::jetstream::{kv, stream};
use futures_util::TryStreamExt;
use prost::Message;
use sotto_proto::v1;

use super::{Left, MAX_ONE_TIME};
use crate::RelayError;
use crate::accounts::blind_user;
use crate::cluster::PREKEYS;
use crate::cluster::jetstream::{
    Cluster, ClusterError, already_gone, backend, last_on, next_on, once_per_subject,
};
use crate::cluster::records::subject_taken;
use crate::records::PrekeySetRecord;
use crate::seal::Sealer;
use crate::store::Tree;

/// The bucket of published prekey sets.
pub const PREKEY_SETS: &str = "prekey_sets";
/// Who was handed one of whose one-time prekeys, at any node:
/// `contact.<blind(requester, target)>`, one message a subject, gone after a day.
pub const FIRST_CONTACTS: &str = "FIRST_CONTACTS";
const CONTACT_DOMAIN: &str = "cluster/first contact";
const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Domain of the keyed blind that names a user's prekey subjects.
const SUBJECT_DOMAIN: &str = "cluster/prekey subjects";
/// Domain of the keyed blind a one-time prekey's record is sealed under.
const RECORD_DOMAIN: &str = "cluster/one-time prekey";

/// The two kinds of one-time prekeys, as their subject names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Curve,
    Pq,
}

impl Kind {
    fn token(self) -> &'static str {
        match self {
            Kind::Curve => "c",
            Kind::Pq => "q",
        }
    }
}

/// One-time prekeys and published sets on the cluster.
pub struct ClusterPrekeys {
    cluster: Cluster,
    sealer: Arc<Sealer>,
    stream: stream::Stream,
    contacts: stream::Stream,
    sets: kv::Store,
    context: async_nats::jetstream::Context,
}

impl ClusterPrekeys {
    /// Makes (or finds) the stream and bucket, and opens them.
    pub async fn open(cluster: &Cluster, sealer: Arc<Sealer>) -> Result<Self, ClusterError> {
        let stream = cluster
            .stream(stream::Config {
                name: PREKEYS.to_owned(),
                subjects: vec!["prekey.>".to_owned()],
                max_messages_per_subject: 1,
                allow_direct: true,
                deny_purge: true,
                ..Default::default()
            })
            .await?;
        let sets = cluster.bucket(PREKEY_SETS).await?;
        let contacts = cluster
            .once_stream(once_per_subject(FIRST_CONTACTS, "contact.*", DAY))
            .await?;
        Ok(ClusterPrekeys {
            cluster: cluster.clone(),
            sealer,
            stream,
            contacts,
            sets,
            context: cluster.context().clone(),
        })
    }

    fn contact_subject(&self, requester: &str, target: &str) -> String {
        let pair = [
            blind_user(&self.sealer, requester),
            blind_user(&self.sealer, target),
        ]
        .concat();
        format!(
            "contact.{}",
            hex::encode(self.sealer.blind(CONTACT_DOMAIN, &pair))
        )
    }

    /// Claims for a day, at every node at once, `requester`'s one-time
    /// prekey of `target`: false when it was claimed within the day.
    pub async fn claim_first_contact(
        &self,
        requester: &str,
        target: &str,
    ) -> Result<bool, RelayError> {
        let subject = self.contact_subject(requester, target);
        let sealed = self
            .sealer
            .seal(Tree::Prekeys, subject.as_bytes(), b"taken");
        match self.cluster.publish(subject, sealed).await {
            Ok(_) => Ok(true),
            Err(e) if subject_taken(&e) => Ok(false),
            Err(e) => Err(backend("claim of a one-time prekey", e).into()),
        }
    }

    /// Gives a claim back: `target` had no one-time prekey left to take (a
    /// target without any costs nobody a day).
    pub async fn release_first_contact(
        &self,
        requester: &str,
        target: &str,
    ) -> Result<(), RelayError> {
        let subject = self.contact_subject(requester, target);
        let Some(claim) = last_on(&self.contacts, &subject, "read of a claim").await? else {
            return Ok(());
        };
        match self.contacts.delete_message(claim.sequence).await {
            Ok(_) => Ok(()),
            Err(e) if already_gone(&e) => Ok(()),
            Err(e) => Err(backend("release of a claim", e).into()),
        }
    }

    /// The token that names `user`'s subjects.
    fn user_token(&self, user: &str) -> String {
        hex::encode(
            self.sealer
                .blind(SUBJECT_DOMAIN, &blind_user(&self.sealer, user)),
        )
    }

    fn subject(&self, user: &str, kind: Kind, id: u32) -> String {
        format!("prekey.{}.{}.{id}", self.user_token(user), kind.token())
    }

    /// The key a one-time prekey's record is sealed under: user, kind and id.
    fn record_key(&self, user: &str, kind: Kind, id: u32) -> [u8; 16] {
        let mut value = blind_user(&self.sealer, user).to_vec();
        value.extend_from_slice(kind.token().as_bytes());
        value.extend_from_slice(&id.to_be_bytes());
        self.sealer.blind(RECORD_DOMAIN, &value)
    }

    fn set_key(&self, user: &str) -> [u8; 16] {
        self.sealer
            .tree_key(Tree::Prekeys, &blind_user(&self.sealer, user))
    }

    /// `user`'s published set (its one-time lists empty: those are messages).
    pub(crate) async fn published(
        &self,
        user: &str,
    ) -> Result<Option<PrekeySetRecord>, RelayError> {
        let key = self.set_key(user);
        let Some(sealed) = self
            .sets
            .get(hex::encode(key))
            .await
            .map_err(|e| backend("read of a prekey set", e))?
        else {
            return Ok(None);
        };
        Ok(Some(PrekeySetRecord::decode(
            self.sealer
                .open_padded(Tree::Prekeys, &key, &sealed)?
                .as_slice(),
        )?))
    }

    /// The ids of the one-time prekeys of each kind `user` has on the cluster.
    async fn held(&self, user: &str) -> Result<(HashSet<u32>, HashSet<u32>), RelayError> {
        let prefix = format!("prekey.{}.", self.user_token(user));
        let subjects: Vec<(String, usize)> = self
            .stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(|e| backend("count of prekeys", e))?
            .try_collect()
            .await
            .map_err(|e| backend("count of prekeys", e))?;
        let (mut curve, mut pq) = (HashSet::new(), HashSet::new());
        for (subject, count) in subjects {
            let Some((kind, id)) = subject
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('.'))
            else {
                continue;
            };
            let Ok(id) = id.parse::<u32>() else { continue };
            if count > 0 {
                match kind {
                    "c" => curve.insert(id),
                    "q" => pq.insert(id),
                    _ => false,
                };
            }
        }
        Ok((curve, pq))
    }

    /// How many one-time prekeys of each kind `user` has left.
    pub(crate) async fn left(&self, user: &str) -> Result<Left, RelayError> {
        let (curve, pq) = self.held(user).await?;
        Ok(Left {
            one_time: curve.len(),
            pq_one_time: pq.len(),
        })
    }

    /// Publishes `set` (checked by the caller) and the one-time prekeys not
    /// held yet, up to [`MAX_ONE_TIME`] of each kind; each is acknowledged by
    /// a majority before this returns. Returns what `user` holds now.
    pub(crate) async fn publish(
        &self,
        user: &str,
        set: &PrekeySetRecord,
        one_time: Vec<v1::OneTimePrekey>,
        pq_one_time: Vec<v1::PqPrekey>,
    ) -> Result<Left, RelayError> {
        let (mut curve, mut pq) = self.held(user).await?;
        let mut records = Vec::new();
        for otk in one_time {
            if curve.len() < MAX_ONE_TIME && curve.insert(otk.id) {
                records.push((Kind::Curve, otk.id, otk.encode_to_vec()));
            }
        }
        for key in pq_one_time {
            if pq.len() < MAX_ONE_TIME && pq.insert(key.id) {
                records.push((Kind::Pq, key.id, key.encode_to_vec()));
            }
        }
        let mut acks = Vec::with_capacity(records.len());
        for (kind, id, plain) in records {
            let sealed =
                self.sealer
                    .seal_padded(Tree::Prekeys, &self.record_key(user, kind, id), &plain);
            acks.push(
                self.context
                    .publish(self.subject(user, kind, id), sealed.into())
                    .await
                    .map_err(|e| backend("publish of a prekey", e))?,
            );
        }
        for ack in acks {
            ack.await
                .map_err(|e| backend("acknowledgement of a prekey", e))?;
        }
        let key = self.set_key(user);
        let mut set = set.clone();
        set.one_time.clear();
        set.pq_one_time.clear();
        let sealed = self
            .sealer
            .seal_padded(Tree::Prekeys, &key, &set.encode_to_vec());
        self.sets
            .put(hex::encode(key), sealed.into())
            .await
            .map_err(|e| backend("write of a prekey set", e))?;
        Ok(Left {
            one_time: curve.len(),
            pq_one_time: pq.len(),
        })
    }

    /// Takes `user`'s oldest one-time prekey of `kind`: the plaintext of a
    /// record this call deleted, and so nobody else was given.
    async fn take(&self, user: &str, kind: Kind) -> Result<Option<(u32, Vec<u8>)>, RelayError> {
        let prefix = format!("prekey.{}.{}.", self.user_token(user), kind.token());
        let filter = format!("{prefix}*");
        let mut from = 1;
        // Each round moves past a message of the user's: it ends, at the
        // latest past their last one, and a taker never waits on another.
        loop {
            let Some(message) = next_on(&self.stream, &filter, from, "read of a prekey").await?
            else {
                return Ok(None);
            };
            from = message.sequence + 1;
            match self.stream.delete_message(message.sequence).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) if already_gone(&e) => continue,
                Err(e) => return Err(backend("delete of a prekey", e).into()),
            }
            let id = message
                .subject
                .strip_prefix(&prefix)
                .and_then(|id| id.parse::<u32>().ok())
                .ok_or(RelayError::Corrupt("a prekey's subject names no id"))?;
            let plain = self.sealer.open_padded(
                Tree::Prekeys,
                &self.record_key(user, kind, id),
                &message.payload,
            )?;
            return Ok(Some((id, plain.to_vec())));
        }
    }

    /// Takes `user`'s oldest one-time prekey of `kind`, decoded as `T`,
    /// whose own id must be the one its subject names.
    async fn take_as<T: Message + Default>(
        &self,
        user: &str,
        kind: Kind,
        id_of: fn(&T) -> u32,
    ) -> Result<Option<T>, RelayError> {
        let Some((id, plain)) = self.take(user, kind).await? else {
            return Ok(None);
        };
        let key = T::decode(plain.as_slice())?;
        if id_of(&key) != id {
            return Err(RelayError::Corrupt("a one-time prekey under another id"));
        }
        Ok(Some(key))
    }

    pub(crate) async fn take_one_time(
        &self,
        user: &str,
    ) -> Result<Option<v1::OneTimePrekey>, RelayError> {
        self.take_as(user, Kind::Curve, |k: &v1::OneTimePrekey| k.id)
            .await
    }

    pub(crate) async fn take_pq_one_time(
        &self,
        user: &str,
    ) -> Result<Option<v1::PqPrekey>, RelayError> {
        self.take_as(user, Kind::Pq, |k: &v1::PqPrekey| k.id).await
    }
}
