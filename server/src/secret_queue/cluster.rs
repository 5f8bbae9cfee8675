//! The secret queue on the cluster: end-to-end encrypted envelopes waiting
//! for their recipient, shared by every relay node.
//!
//! - Each envelope is one message in the stream [`SECRET`](crate::cluster::SECRET),
//!   on the subject `secret.<recipient token>.<pair token>.<id>`, sealed by
//!   the relay with its subject in the associated data. The tokens are keyed
//!   blinds (of the recipient; of the sender with the recipient): the
//!   cluster's operator sees that someone has envelopes waiting, some from
//!   one sender, not who.
//! - An acknowledgement **deletes** the message (JetStream's default delete
//!   overwrites it in the stream's message files; each replica's Raft log
//!   keeps the sealed entry until it is compacted); the stream's `max_age`
//!   is the relay's time-to-live, so what nobody fetched goes by itself too.
//! - Envelope ids are random (63 bits), never the stream's sequence: nobody
//!   learns the relay's volume from them. The stream refuses a second
//!   message on a subject, so an id is never given to two envelopes waiting
//!   for one recipient (that is decided in the stream's Raft log; a
//!   compare-and-set on a counter is not, on servers before 2.9.21: see
//!   [`crate::cluster::records`]).
//! - A retry (same sender, same client id) is recognised by the stream
//!   [`SECRET_SENT`]: the first attempt records its id there (the stream
//!   refuses a second record) before it publishes the envelope, and a retry
//!   publishes the same envelope again, which the stream refuses if the
//!   first one still waits. Records age out with the time-to-live.
//!
//! The warrant desk's NATS user is refused this stream by the server
//! (see [`crate::cluster::warrant_publish_allowed`]).
//!
//! Quotas: a recipient's envelope count, the count from one sender to that
//! recipient (one subject listing answers both), and the queue's totals are
//! checked at each send; sends checked at the same moment on several nodes
//! may together pass a recipient's or a sender's limit, never the queue's
//! totals, which the stream keeps itself (`max_messages`, `max_bytes`,
//! refusing what is over). Bytes are counted relay-wide only.
//!
//! A secret group message is one envelope per recipient, each holding the
//! ciphertext (the embedded queue keeps it once), checked against every
//! recipient's quotas before any is written; each copy is recognised on a
//! retry by its own id, made from the send's client id and the recipient.
//!
//! What the cluster's operator can still do without the relay's keys, as
//! with a copy of an embedded store put back: publish again a sealed
//! envelope it saved (the recipient's client drops an id it has seen, and
//! the ratchet a message it has read), or delete envelopes (lost messages:
//! an operator can always refuse service).
//!

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream;
use futures_util::TryStreamExt;
use prost::Message;
use sotto_proto::v1;

use super::{Full, GroupQueued, NewGroupSecret, NewSecret, Queued, Quota, envelope};
use crate::accounts::blind_user;
use crate::cluster::SECRET;
use crate::cluster::jetstream::{
    Cluster, ClusterError, already_gone, backend, last_on, next_on, once_per_subject,
};
use crate::cluster::records::{stream_full, subject_taken};
use crate::records::SecretEnvelopeRecord;
use crate::seal::Sealer;
use crate::store::Tree;
use crate::{RelayError, now_ms};

/// `sent.<blind(sender, client id)>` → the sealed id that send was given.
pub const SECRET_SENT: &str = "SECRET_SENT";

const SUBJECT_DOMAIN: &str = "cluster/secret subject";
const SENT_DOMAIN: &str = "cluster/secret sent";
const PAIR_DOMAIN: &str = "cluster/secret pair";
const COPY_DOMAIN: &str = "cluster/secret group copy";

pub struct ClusterSecretQueue {
    cluster: Cluster,
    sealer: Arc<Sealer>,
    stream: stream::Stream,
    sent: stream::Stream,
    quota: Quota,
}

impl ClusterSecretQueue {
    /// Makes (or finds) the streams; envelopes live at most `ttl`.
    pub async fn open(
        cluster: &Cluster,
        sealer: Arc<Sealer>,
        quota: Quota,
        ttl: Duration,
    ) -> Result<Self, ClusterError> {
        // The relay-wide quota, kept by the stream itself too: a limit
        // checked by several nodes at once may be passed, this one not.
        let stream = cluster
            .once_stream(stream::Config {
                max_messages: i64::try_from(quota.total.envelopes).unwrap_or(i64::MAX),
                max_bytes: i64::try_from(quota.total.bytes).unwrap_or(i64::MAX),
                ..once_per_subject(SECRET, "secret.>", ttl)
            })
            .await?;
        let sent = cluster
            .once_stream(once_per_subject(SECRET_SENT, "sent.*", ttl))
            .await?;
        Ok(ClusterSecretQueue {
            cluster: cluster.clone(),
            sealer,
            stream,
            sent,
            quota,
        })
    }

    fn token(&self, user: &str) -> String {
        hex::encode(
            self.sealer
                .blind(SUBJECT_DOMAIN, &blind_user(&self.sealer, user)),
        )
    }

    /// The sender's token beside the recipient's: theirs alone.
    fn pair(&self, from: &str, to: &str) -> String {
        let pair = [blind_user(&self.sealer, from), blind_user(&self.sealer, to)].concat();
        hex::encode(self.sealer.blind(PAIR_DOMAIN, &pair))
    }

    fn subject(&self, from: &str, to: &str, id: u64) -> String {
        format!("secret.{}.{}.{id}", self.token(to), self.pair(from, to))
    }

    fn sent_subject(&self, dedup: &[u8]) -> String {
        format!(
            "sent.{}",
            hex::encode(self.sealer.blind(SENT_DOMAIN, dedup))
        )
    }

    /// The id a send with `dedup` was given before, and its recipient's
    /// blind, if there was one (read from the stream's leader).
    async fn sent_before(&self, dedup: &[u8]) -> Result<Option<(u64, [u8; 16])>, RelayError> {
        let subject = self.sent_subject(dedup);
        let Some(message) = last_on(&self.sent, &subject, "read of a sent envelope").await? else {
            return Ok(None);
        };
        let plain = self
            .sealer
            .open(Tree::SecretQueue, subject.as_bytes(), &message.payload)?;
        let (id, to) = plain
            .split_at_checked(8)
            .ok_or(RelayError::Corrupt("a sent envelope's record"))?;
        Ok(Some((
            crate::records::read_u64(id, "a sent envelope's id")?,
            to.try_into()
                .map_err(|_| RelayError::Corrupt("a sent envelope's recipient"))?,
        )))
    }

    /// A new id for a send with `dedup` to `to`, recorded for its retries;
    /// or, when a retry on another node recorded one first, that record.
    async fn id_for(
        &self,
        dedup: &[u8],
        to: [u8; 16],
    ) -> Result<(u64, [u8; 16], bool), RelayError> {
        let id = rand::random::<u64>() >> 1 | 1;
        let subject = self.sent_subject(dedup);
        let sealed = self.sealer.seal(
            Tree::SecretQueue,
            subject.as_bytes(),
            &[id.to_be_bytes().as_slice(), &to].concat(),
        );
        match self.cluster.publish(subject, sealed).await {
            Ok(_) => Ok((id, to, false)),
            Err(e) if subject_taken(&e) => {
                let (id, to) = self
                    .sent_before(dedup)
                    .await?
                    .ok_or(RelayError::Corrupt("a sent envelope's record vanished"))?;
                Ok((id, to, true))
            }
            Err(e) => Err(backend("record of a sent envelope", e).into()),
        }
    }

    /// Whether one more envelope from `from` fits: `to`'s count, the count
    /// from `from` to `to`, and the stream's totals.
    async fn fits(&self, from: &str, to: &str, bytes: u64) -> Result<Option<Full>, RelayError> {
        let (waiting, from_sender) = self.waiting(from, to).await?;
        if waiting >= self.quota.recipient.envelopes {
            return Ok(Some(Full::Recipient));
        }
        if from_sender >= self.quota.pair.envelopes {
            return Ok(Some(Full::FromSender));
        }
        let state = self
            .stream
            .get_info()
            .await
            .map_err(|e| backend("the secret queue's totals", e))?
            .state;
        if state.messages >= self.quota.total.envelopes
            || state.bytes + bytes > self.quota.total.bytes
        {
            return Ok(Some(Full::Relay));
        }
        Ok(None)
    }

    /// How many envelopes wait for `to`, and how many of them are from `from`.
    async fn waiting(&self, from: &str, to: &str) -> Result<(u64, u64), RelayError> {
        let subjects: Vec<(String, usize)> = self
            .stream
            .info_with_subjects(format!("secret.{}.>", self.token(to)))
            .await
            .map_err(|e| backend("count of envelopes", e))?
            .try_collect()
            .await
            .map_err(|e| backend("count of envelopes", e))?;
        let from_sender = format!("secret.{}.{}.", self.token(to), self.pair(from, to));
        let pair = subjects
            .iter()
            .filter(|(subject, _)| subject.starts_with(&from_sender))
            .count();
        Ok((subjects.len() as u64, pair as u64))
    }

    /// Queues `new` (a copy of a group message when `group` is given);
    /// `checked`: its quotas were checked a moment ago, with the others'.
    async fn enqueue_one(
        &self,
        new: NewSecret,
        group: &[u8],
        checked: bool,
    ) -> Result<Queued, RelayError> {
        let recipient = blind_user(&self.sealer, &new.to);
        let mut dedup = blind_user(&self.sealer, &new.from).to_vec();
        dedup.extend_from_slice(&new.client_id);
        let (id, first_to, retry) = match self.sent_before(&dedup).await? {
            Some((id, to)) => (id, to, true),
            None => {
                if !checked
                    && let Some(full) = self
                        .fits(&new.from, &new.to, new.ciphertext.len() as u64)
                        .await?
                {
                    return Ok(Queued::Full(full));
                }
                self.id_for(&dedup, recipient).await?
            }
        };
        let subject = self.subject(&new.from, &new.to, id);
        if retry {
            // The first send of this client id stands, as on one relay: one
            // to someone else is not queued again (nor for them), and one
            // that still waits is not queued twice.
            if first_to != recipient
                || last_on(&self.stream, &subject, "read of an envelope")
                    .await?
                    .is_some()
            {
                return Ok(Queued::Duplicate(id));
            }
            // Gone: fetched and acknowledged, or never written (the node that
            // recorded its id stopped first). Queued again, within the quotas.
            if let Some(full) = self
                .fits(&new.from, &new.to, new.ciphertext.len() as u64)
                .await?
            {
                return Ok(Queued::Full(full));
            }
        }
        let queued_at = now_ms();
        let record = SecretEnvelopeRecord {
            id,
            from: new.from,
            ciphertext: new.ciphertext,
            queued_at,
            expires_at: queued_at.saturating_add(new.ttl_ms),
            dedup_key: dedup,
            group: group.to_vec(),
            ..Default::default()
        };
        let sealed = self.sealer.seal_padded(
            Tree::SecretQueue,
            subject.as_bytes(),
            &record.encode_to_vec(),
        );
        match self.cluster.publish(subject, sealed).await {
            Ok(_) => Ok(Queued::New(envelope(&record))),
            // Another attempt of the same send (a retry on another node, or
            // in the same batch) wrote it first: ids are random, 63 bits, so
            // no other send has this one.
            Err(e) if subject_taken(&e) => Ok(Queued::Duplicate(id)),
            // The stream's own limits (the relay-wide quota, as a backstop).
            Err(e) if stream_full(&e) => Ok(Queued::Full(Full::Relay)),
            Err(e) => Err(backend("publish of an envelope", e).into()),
        }
    }

    /// Queues envelopes, all at once; each is held by a majority of the
    /// replicas when this returns. A retry with the same client id is not
    /// queued twice.
    pub fn enqueue_many(&self, envelopes: Vec<NewSecret>) -> Vec<Result<Queued, RelayError>> {
        let enqueues = envelopes
            .into_iter()
            .map(|new| self.enqueue_one(new, &[], false));
        self.cluster.wait(futures_util::future::join_all(enqueues))
    }

    /// Queues a secret group message for each recipient, as many envelopes.
    /// Over anyone's quota, it is queued for nobody; should a quota fill up
    /// meanwhile (a send at another node), the copies queued stay, and a
    /// retry with the same client id queues the others only.
    pub fn enqueue_group(&self, new: NewGroupSecret) -> Result<GroupQueued, RelayError> {
        use futures_util::future::join_all;
        let bytes = new.ciphertext.len() as u64;
        self.cluster.wait(async {
            let checks = new
                .recipients
                .iter()
                .map(|to| self.fits(&new.from, to, bytes));
            for (to, full) in new.recipients.iter().zip(join_all(checks).await) {
                if let Some(full) = full? {
                    return Ok(GroupQueued::Full(full, to.clone()));
                }
            }
            let copies = new.recipients.iter().map(|to| {
                let copy = NewSecret {
                    from: new.from.clone(),
                    to: to.clone(),
                    client_id: self.copy_id(&new.client_id, to),
                    ciphertext: new.ciphertext.clone(),
                    ttl_ms: new.ttl_ms,
                };
                self.enqueue_one(copy, &new.group, true)
            });
            let mut queued = Vec::new();
            let mut full = None;
            for (to, copy) in new.recipients.iter().zip(join_all(copies).await) {
                match copy? {
                    Queued::New(envelope) => queued.push((to.clone(), envelope)),
                    Queued::Duplicate(_) => {}
                    Queued::Full(why) => {
                        full.get_or_insert((why, to.clone()));
                    }
                }
            }
            Ok(match (full, queued.is_empty()) {
                (Some((why, to)), _) => {
                    // For nobody, then: the copies queued are taken back (a
                    // retry with the same client id would queue them again).
                    for (recipient, envelope) in &queued {
                        self.delete(recipient, envelope.id).await?;
                    }
                    GroupQueued::Full(why, to)
                }
                (None, true) => GroupQueued::Duplicate,
                (None, false) => GroupQueued::New(queued),
            })
        })
    }

    /// The client id of `to`'s copy of a group message sent with `client_id`.
    fn copy_id(&self, client_id: &[u8; 16], to: &str) -> [u8; 16] {
        let copy = [client_id.as_slice(), &blind_user(&self.sealer, to)].concat();
        self.sealer.blind(COPY_DOMAIN, &copy)
    }

    /// Envelopes waiting for `user`, oldest first; `more` when the limit cut it.
    pub fn pending(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<(Vec<v1::SecretEnvelope>, bool), RelayError> {
        let filter = format!("secret.{}.>", self.token(user));
        let now = now_ms();
        self.cluster.wait(async {
            let mut out = Vec::new();
            let mut from = 1;
            loop {
                let Some(message) =
                    next_on(&self.stream, &filter, from, "read of an envelope").await?
                else {
                    return Ok((out, false));
                };
                from = message.sequence + 1;
                let opened = self
                    .sealer
                    .open_padded(
                        Tree::SecretQueue,
                        message.subject.as_bytes(),
                        &message.payload,
                    )
                    .ok()
                    .and_then(|plain| SecretEnvelopeRecord::decode(plain.as_slice()).ok());
                let Some(record) = opened else {
                    // Moved from another subject, or damaged: not this
                    // user's to have, and it keeps nobody from the others.
                    tracing::warn!(
                        sequence = message.sequence,
                        "a secret envelope does not open: passed over"
                    );
                    continue;
                };
                if record.expires_at < now {
                    continue;
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(envelope(&record));
            }
        })
    }

    /// Deletes (erases) `user`'s envelopes named in `ids`; others' are out
    /// of reach, as their subjects are. Returns how many were deleted.
    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<usize, RelayError> {
        let ids: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
        self.cluster.wait(async {
            let mut deleted = 0;
            for id in ids {
                deleted += usize::from(self.delete(user, id).await?);
            }
            Ok(deleted)
        })
    }

    /// Deletes `user`'s envelope `id`, whoever sent it (the id is the
    /// recipient's to name); whether there was one.
    async fn delete(&self, user: &str, id: u64) -> Result<bool, RelayError> {
        let token = self.token(user);
        let mut found = next_on(
            &self.stream,
            &format!("secret.{token}.*.{id}"),
            1,
            "read of an envelope",
        )
        .await?;
        if found.is_none() {
            // Queued before envelopes named their sender's pair.
            found = last_on(
                &self.stream,
                &format!("secret.{token}.{id}"),
                "read of an envelope",
            )
            .await?;
        }
        let Some(message) = found else {
            return Ok(false);
        };
        match self.stream.delete_message(message.sequence).await {
            Ok(deleted) => Ok(deleted),
            Err(e) if already_gone(&e) => Ok(false),
            Err(e) => Err(backend("delete of an envelope", e).into()),
        }
    }

    /// Envelopes, and their bytes, waiting in the whole queue (zero when the
    /// cluster does not answer: a gauge, not a decision).
    pub fn totals(&self) -> (u64, u64) {
        self.cluster
            .wait(self.stream.get_info())
            .map(|info| (info.state.messages, info.state.bytes))
            .unwrap_or_default()
    }

    /// How many envelopes wait in the whole queue.
    pub fn envelopes(&self) -> Result<usize, RelayError> {
        self.cluster.wait(async {
            let info = self
                .stream
                .get_info()
                .await
                .map_err(|e| backend("the secret queue's totals", e))?;
            Ok(info.state.messages as usize)
        })
    }
}
