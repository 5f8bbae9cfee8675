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
//!   warrant user to the `NOTICES` stream, `notice.<blind(person)>.<id>`,
//!   one message a subject (a notice written again after a crash is not
//!   doubled); the person's node hands them out with every fetch and deletes
//!   them when acknowledged (relay user).
//!
//! Invariant: a person's notices are found only through their own blind;
//! the desk's connection can write notices and read the history, nothing else.

use std::sync::Arc;

use async_nats::jetstream::stream;
use prost::Message;
use sotto_proto::v1;

use super::notices::MAX_HANDED_OUT;
use crate::RelayError;
use crate::accounts::blind_user;
use crate::cluster::jetstream::{Cluster, ClusterError, already_gone, backend, last_on, next_on};
use crate::cluster::records::{ClusterRecords, Created, subject_taken};
use crate::cluster::{DESK, NOTICES};
use crate::seal::Sealer;
use crate::store::Tree;

const SUBJECT_DOMAIN: &str = "cluster/notice subject";
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

/// Notices on the cluster; see the module's documentation.
pub struct ClusterNotices {
    cluster: Cluster,
    sealer: Arc<Sealer>,
    stream: stream::Stream,
}

impl ClusterNotices {
    /// Makes (or finds) the `NOTICES` stream, as the relay's user.
    pub async fn open(cluster: &Cluster, sealer: Arc<Sealer>) -> Result<Self, ClusterError> {
        let stream = cluster
            .stream(stream::Config {
                name: NOTICES.to_owned(),
                subjects: vec!["notice.>".to_owned()],
                max_messages_per_subject: 1,
                discard: stream::DiscardPolicy::New,
                discard_new_per_subject: true,
                allow_direct: true,
                deny_purge: true,
                ..Default::default()
            })
            .await?;
        Self::checked(cluster, sealer, stream)
    }

    /// Finds the stream a relay node made, as the warrant desk's user (who
    /// may not make one).
    pub async fn writer(cluster: &Cluster, sealer: Arc<Sealer>) -> Result<Self, ClusterError> {
        let stream =
            cluster
                .context()
                .get_stream(NOTICES)
                .await
                .map_err(|e| ClusterError::Provision {
                    what: format!("stream {NOTICES}"),
                    why: e.to_string(),
                })?;
        Self::checked(cluster, sealer, stream)
    }

    fn checked(
        cluster: &Cluster,
        sealer: Arc<Sealer>,
        stream: stream::Stream,
    ) -> Result<Self, ClusterError> {
        cluster.refuses_second_message(&stream)?;
        Ok(ClusterNotices {
            cluster: cluster.clone(),
            sealer,
            stream,
        })
    }

    fn token(&self, user: &str) -> String {
        hex::encode(
            self.sealer
                .blind(SUBJECT_DOMAIN, &blind_user(&self.sealer, user)),
        )
    }

    fn subject(&self, user: &str, id: u64) -> String {
        format!("notice.{}.{id}", self.token(user))
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

    /// The notices waiting for `user`, oldest first (at most [`MAX_HANDED_OUT`]).
    pub fn waiting(&self, user: &str) -> Result<Vec<v1::WarrantNotice>, RelayError> {
        let filter = format!("notice.{}.*", self.token(user));
        self.cluster.wait(async {
            let mut out = Vec::new();
            let mut from = 1;
            while out.len() < MAX_HANDED_OUT {
                let Some(message) =
                    next_on(&self.stream, &filter, from, "read of a notice").await?
                else {
                    break;
                };
                from = message.sequence + 1;
                let plain = self.sealer.open_padded(
                    Tree::Warrants,
                    message.subject.as_bytes(),
                    &message.payload,
                )?;
                out.push(
                    v1::WarrantNotice::decode(plain.as_slice())
                        .map_err(|_| RelayError::Corrupt("a warrant notice"))?,
                );
            }
            Ok(out)
        })
    }

    /// Deletes the notices `ids` of `user` (any other id deletes nothing).
    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<(), RelayError> {
        self.cluster.wait(async {
            for &id in ids {
                let subject = self.subject(user, id);
                let Some(message) = last_on(&self.stream, &subject, "read of a notice").await?
                else {
                    continue;
                };
                match self.stream.delete_message(message.sequence).await {
                    Ok(_) => {}
                    Err(e) if already_gone(&e) => {}
                    Err(e) => return Err(backend("delete of a notice", e).into()),
                }
            }
            Ok(())
        })
    }
}
