//! The warrant desk on a cluster (`store = "nats"`): one node serves the
//! cluster's warrants, and the people they disclosed are told at any node.
//!
//! - **One desk.** The node whose `relay.toml` says `nats_warrant_desk =
//!   true` claims the desk in the `DESK` stream (a record created once,
//!   holding its node id sealed). It keeps the warrant state (grants,
//!   pseudonym mappings, held warrants) in its own store and the
//!   transparency log in its own data directory, as a single relay does:
//!   one log with one head, and a replayed warrant is known as one because
//!   every warrant comes to the same place. A second node that claims the
//!   desk is refused at start; the desk moves with its data directory.
//!   What it discloses it reads from the whole cluster's history (`HIST`)
//!   through the warrant user, which the NATS server refuses everything else.
//! - **Notices** ([`ClusterNotices`]): the desk writes them through the
//!   warrant user to the `NOTICES` stream, `notice.<blind(person)>.<blind(person,
//!   id)>`, one message a subject: a notice written again after a failure
//!   (under the id the desk kept before writing any) is not doubled, and the
//!   subjects tell the cluster's operator neither the warrant's log entry nor
//!   which people one warrant named. The person's node hands them out with
//!   every fetch (one that does not open is passed over) and deletes them
//!   when acknowledged (relay user). The warrant user may publish to these
//!   subjects and nothing else of the stream: not read, list or delete.
//!
//! Invariant: a person's notices are found only through their own blind;
//! the desk's connection can write notices and read the history, nothing else.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, stream};
use prost::Message;
use sotto_proto::v1;

use super::anchor::StoredAnchor;
use super::audit::{Anchor, Anchored};
use crate::RelayError;
use crate::accounts::blind_user;
use crate::cluster::jetstream::{
    Cluster, ClusterError, already_gone, backend, last_on, next_on, once_per_subject,
};
use crate::cluster::records::{ClusterRecords, Created, subject_taken};
use crate::cluster::{DESK, DESK_BUCKET, NOTICES};
use crate::seal::Sealer;
use crate::store::Tree;
use tracing::warn;

const SUBJECT_DOMAIN: &str = "cluster/notice subject";
const ID_DOMAIN: &str = "cluster/notice id";
const DESK_KEY: &[u8] = b"warrant desk";

/// Why a node on a cluster that is not its warrant desk answers no warrant request.
pub(crate) const NOT_THE_DESK: &str = "this relay node is not its cluster's warrant desk: \
     warrants, unmask requests and transparency log proofs are served by the one node whose \
     relay.toml says nats_warrant_desk = true";

/// Claims the cluster's warrant desk for the node `node_id`, or finds that
/// it holds it already; refused when another node holds it.
pub(crate) async fn claim_desk(
    cluster: &Cluster,
    sealer: &Sealer,
    node_id: &[u8],
) -> Result<(), anyhow::Error> {
    let desks = ClusterRecords::open(cluster, DESK).await?;
    let sealed = sealer.seal(Tree::Meta, DESK_KEY, node_id);
    if desks.create(DESK_KEY, sealed)? == Created::Written {
        return Ok(());
    }
    let held = desks
        .get(DESK_KEY)?
        .ok_or_else(|| anyhow::anyhow!("the cluster's warrant desk record cannot be read"))?;
    let holder = sealer
        .open(Tree::Meta, DESK_KEY, &held)
        .map_err(|_| anyhow::anyhow!("the cluster's warrant desk record does not open"))?;
    if holder.as_slice() == node_id {
        return Ok(());
    }
    anyhow::bail!(
        "another node ({}) is this cluster's warrant desk: one node serves warrants, so that \
         there is one transparency log and a warrant cannot be served twice. Set \
         nats_warrant_desk = false here, or move the desk by moving that node's data directory",
        hex::encode(&holder)
    )
}

const SESSION_KEY: &str = "session";
const ANCHOR_KEY: &str = "anchor";

/// The desk's fence on the cluster (bucket [`DESK_BUCKET`], through the
/// warrant user): the session of the desk process that started last, and
/// the size of the transparency log it last anchored. An older process
/// (a copy of the desk's data directory started before, say) appends
/// nothing more to its log, and an older copy of the directory does not
/// start as the desk.
#[derive(Clone)]
pub struct DeskFence {
    cluster: Cluster,
    sealer: Arc<Sealer>,
    bucket: kv::Store,
    session: [u8; 16],
    /// Whether this process took the fence (once its log checked).
    taken: Arc<std::sync::atomic::AtomicBool>,
}

impl DeskFence {
    /// The fence, on the desk's connection, in the bucket a relay node
    /// made; this process takes it once its log checked ([`DeskAnchor::load`]).
    pub async fn open(desk: &Cluster, sealer: Arc<Sealer>) -> anyhow::Result<Self> {
        let bucket = desk.context().get_key_value(DESK_BUCKET).await?;
        let mut session = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut session);
        Ok(DeskFence {
            cluster: desk.clone(),
            sealer,
            bucket,
            session,
            taken: Arc::default(),
        })
    }

    /// Takes the fence for this process, once: called when its log checked
    /// (at its first anchor, or once the log is open).
    pub fn take(&self) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        if self.taken.load(Ordering::SeqCst) {
            return Ok(());
        }
        let session = self.session;
        self.cluster.wait(self.write(SESSION_KEY, &session))?;
        self.taken.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn write(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let sealed = self.sealer.seal(Tree::Meta, key.as_bytes(), value);
        self.bucket.put(key, sealed.into()).await?;
        Ok(())
    }

    fn read(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(sealed) = self.cluster.wait(self.bucket.get(key))? else {
            return Ok(None);
        };
        let plain = self
            .sealer
            .open(Tree::Meta, key.as_bytes(), &sealed)
            .map_err(|_| {
                anyhow::anyhow!("the warrant desk's {key} on the cluster does not open")
            })?;
        Ok(Some(plain.to_vec()))
    }
}

/// The transparency log's anchor of a cluster's warrant desk: the relay's
/// own ([`StoredAnchor`]), fenced by the cluster's ([`DeskFence`]).
pub(crate) struct DeskAnchor {
    pub local: StoredAnchor,
    pub fence: DeskFence,
    /// The log's path, for what a refusal says.
    pub log: String,
}

impl DeskAnchor {
    /// The log is not taken as the desk's: the node serves its users, and
    /// no warrant.
    fn refused(&self, why: String) -> anyhow::Error {
        super::audit::LogRefused {
            path: self.log.clone(),
            why,
        }
        .into()
    }
}

impl Anchor for DeskAnchor {
    /// The larger of this directory's anchor and the cluster's (the log is
    /// then checked against it: one of equal size must be the same tree);
    /// a log behind the cluster's is an older copy of the desk's directory.
    /// Only a log that passes its checks takes the fence (at its first
    /// anchor, or once it is open), so a copy started beside the desk whose
    /// log is refused does not silence it.
    fn load(&self) -> anyhow::Result<Option<Anchored>> {
        let local = self.local.load()?;
        let on_cluster = self
            .fence
            .read(ANCHOR_KEY)
            .and_then(|plain| plain.map(|p| super::anchor::decode(&p)).transpose())
            .map_err(|e| self.refused(format!("its anchor on the cluster: {e:#}")))?;
        let here = local.map_or(0, |a| a.size);
        let anchored = match on_cluster {
            Some(c) if c.size > here => {
                return Err(self.refused(format!(
                    "it is behind the one the cluster's warrant desk last signed ({here} entries \
                     against {}): an older copy of the desk's data directory",
                    c.size
                )));
            }
            Some(c) if c.size == here => Some(c),
            _ => local,
        };
        Ok(anchored)
    }

    fn save(&self, anchored: &Anchored) -> anyhow::Result<()> {
        // Saved only over a log that checked: this process's fence now.
        self.fence.take()?;
        let current = self.fence.read(SESSION_KEY)?;
        if current.as_deref() != Some(self.fence.session.as_slice()) {
            anyhow::bail!(
                "another process took the cluster's warrant desk after this one started \
                 (a copy of its data directory?): this one logs, and so serves, no more warrants"
            );
        }
        self.local.save(anchored)?;
        self.fence.cluster.wait(
            self.fence
                .write(ANCHOR_KEY, &super::anchor::encode(anchored)),
        )
    }
}

/// Notices on the cluster; see the module's documentation.
pub struct ClusterNotices {
    cluster: Cluster,
    sealer: Arc<Sealer>,
    /// The stream, to read from (none for the desk's writer, whose user may
    /// not read it).
    stream: Option<stream::Stream>,
}

impl ClusterNotices {
    /// Makes (or finds) the `NOTICES` stream, as the relay's user.
    pub async fn open(cluster: &Cluster, sealer: Arc<Sealer>) -> Result<Self, ClusterError> {
        let stream = cluster
            .once_stream(once_per_subject(NOTICES, "notice.>", Duration::ZERO))
            .await?;
        Ok(ClusterNotices {
            cluster: cluster.clone(),
            sealer,
            stream: Some(stream),
        })
    }

    /// The warrant desk's writer, on its own user: it publishes to the
    /// stream a relay node made (and checked), and reads nothing.
    pub fn writer(cluster: &Cluster, sealer: Arc<Sealer>) -> Self {
        ClusterNotices {
            cluster: cluster.clone(),
            sealer,
            stream: None,
        }
    }

    fn stream(&self) -> Result<&stream::Stream, RelayError> {
        self.stream.as_ref().ok_or_else(|| {
            crate::store::StoreError::Backend(
                "the warrant desk's connection does not read notices".into(),
            )
            .into()
        })
    }

    fn token(&self, user: &str) -> String {
        hex::encode(
            self.sealer
                .blind(SUBJECT_DOMAIN, &blind_user(&self.sealer, user)),
        )
    }

    fn subject(&self, user: &str, id: u64) -> String {
        let person = blind_user(&self.sealer, user);
        let id = self
            .sealer
            .blind(ID_DOMAIN, &[person.as_slice(), &id.to_be_bytes()].concat());
        format!("notice.{}.{}", self.token(user), hex::encode(id))
    }

    /// Writes `notice` for `user`; held by a majority of the replicas when
    /// it returns. Written before (a crash, then again) is not doubled.
    pub fn put(&self, user: &str, notice: &v1::WarrantNotice) -> Result<(), RelayError> {
        let subject = self.subject(user, notice.id);
        let sealed =
            self.sealer
                .seal_padded(Tree::Warrants, subject.as_bytes(), &notice.encode_to_vec());
        match self.cluster.wait(self.cluster.publish(subject, sealed)) {
            Ok(_) => Ok(()),
            Err(e) if subject_taken(&e) => Ok(()),
            Err(e) => Err(backend("write of a warrant notice", e).into()),
        }
    }

    /// The notices waiting for `user`, oldest first (at most `limit`); one
    /// that does not open is passed over (and the others still handed out).
    pub fn waiting(&self, user: &str, limit: usize) -> Result<Vec<v1::WarrantNotice>, RelayError> {
        let filter = format!("notice.{}.*", self.token(user));
        let stream = self.stream()?;
        self.cluster.wait(async {
            let mut out = Vec::new();
            let mut from = 1;
            while out.len() < limit {
                let Some(message) = next_on(stream, &filter, from, "read of a notice").await?
                else {
                    break;
                };
                from = message.sequence + 1;
                let notice = self
                    .sealer
                    .open_padded(Tree::Warrants, message.subject.as_bytes(), &message.payload)
                    .ok()
                    .and_then(|plain| v1::WarrantNotice::decode(plain.as_slice()).ok());
                match notice {
                    // Sealed with its subject, which names its id.
                    Some(notice) if self.subject(user, notice.id) == message.subject.as_str() => {
                        out.push(notice)
                    }
                    _ => warn!(
                        sequence = message.sequence,
                        "a warrant notice does not open: passed over"
                    ),
                }
            }
            Ok(out)
        })
    }

    /// Deletes the notices `ids` of `user` (any other id deletes nothing).
    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<(), RelayError> {
        let stream = self.stream()?;
        let ids: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
        self.cluster.wait(async {
            for id in ids {
                let subject = self.subject(user, id);
                let Some(message) = last_on(stream, &subject, "read of a notice").await? else {
                    continue;
                };
                match stream.delete_message(message.sequence).await {
                    Ok(_) => {}
                    Err(e) if already_gone(&e) => {}
                    Err(e) => return Err(backend("delete of a notice", e).into()),
                }
            }
            Ok(())
        })
    }
}
