//! Records created once and read often (accounts), on the cluster: each is
//! the one message of its own subject in a stream that keeps at most one
//! message a subject and **refuses** a second one (`discard_new_per_subject`).
//! The refusal is decided when the stream's Raft log applies the write, so
//! of two relay nodes creating one record at once exactly one succeeds.
//!
//! Not a key-value bucket's compare-and-set: on nats-server before 2.9.21
//! its expected-sequence check runs before the Raft log orders the writes,
//! and two concurrent writers may both succeed (nats-server issue #4320;
//! seen here too, on Debian's 2.9.10, with three replicas).
//!
//! Subjects are the relay's keyed blinds (hex), values are sealed by the
//! relay: the cluster's operator learns how many records there are, nothing
//! of what or whose they are.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream;

use super::jetstream::{Cluster, ClusterError, backend, next_on, once_per_subject};
use crate::store::{Applied, Batch, Store, StoreError, Tree};

/// Records created once (accounts, groups), wherever they are kept.
#[derive(Clone)]
pub enum OnceRecords {
    /// A tree of the relay's own store (a guarded batch creates).
    Local(Arc<dyn Store>, Tree),
    /// The cluster's, shared by every relay node.
    Cluster(Arc<ClusterRecords>),
}

impl OnceRecords {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            OnceRecords::Local(store, tree) => store.get(*tree, key),
            OnceRecords::Cluster(records) => records.get(key),
        }
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        match self {
            OnceRecords::Local(store, tree) => Ok(store.read(*tree, key, |_| ())?.is_some()),
            OnceRecords::Cluster(records) => Ok(records.get(key)?.is_some()),
        }
    }

    /// Writes `sealed` under `key` unless the key is taken; whether it did.
    pub fn create(&self, key: Vec<u8>, sealed: Vec<u8>) -> Result<bool, StoreError> {
        match self {
            OnceRecords::Local(store, tree) => Ok(matches!(
                store.apply(Batch::guarded(*tree, key, sealed))?,
                Applied::Written
            )),
            OnceRecords::Cluster(records) => Ok(records.create(&key, sealed)? == Created::Written),
        }
    }
}

/// What creating a record did.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    Written,
    /// The key was taken: nothing was written.
    Exists,
}

pub struct ClusterRecords {
    cluster: Cluster,
    stream: stream::Stream,
    /// Subjects are `<prefix>.<key>`.
    prefix: String,
}

/// Whether a refused publish says the subject holds its one message.
pub(crate) fn subject_taken(e: &async_nats::jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::context::PublishErrorKind;
    // The stream's answer: "maximum messages per subject exceeded".
    e.kind() == PublishErrorKind::Other
        && std::error::Error::source(e).is_some_and(|s| {
            s.to_string()
                .contains("maximum messages per subject exceeded")
        })
}

/// Whether a refused publish says the stream is at its own limits (the
/// relay-wide quota kept by the stream).
pub(crate) fn stream_full(e: &async_nats::jetstream::context::PublishError) -> bool {
    std::error::Error::source(e).is_some_and(|s| {
        let s = s.to_string();
        s.contains("maximum messages exceeded") || s.contains("maximum bytes exceeded")
    })
}

impl ClusterRecords {
    /// Makes (or finds) the stream `name` (`ACCOUNTS`), holding the subjects
    /// `<name in lower case>.*` (`accounts.<key>`), and opens it.
    pub async fn open(cluster: &Cluster, name: &str) -> Result<Self, ClusterError> {
        let prefix = name.to_lowercase();
        let stream = cluster
            .once_stream(stream::Config {
                deny_delete: true,
                ..once_per_subject(name, &format!("{prefix}.*"), Duration::ZERO)
            })
            .await?;
        Ok(ClusterRecords {
            cluster: cluster.clone(),
            stream,
            prefix,
        })
    }

    fn subject(&self, key: &[u8]) -> String {
        format!("{}.{}", self.prefix, hex::encode(key))
    }

    /// The record under `key`: the subject's **first** message, the one
    /// whose create succeeded (an operator who made the stream take a
    /// second cannot put another in its place).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let subject = self.subject(key);
        let what = format!("read from {}", self.prefix);
        Ok(self
            .cluster
            .wait(next_on(&self.stream, &subject, 1, &what))?
            .map(|message| message.payload.to_vec()))
    }

    /// Writes `value` under `key` unless the key holds a value; acknowledged
    /// by a majority of the replicas when it returns.
    pub fn create(&self, key: &[u8], value: Vec<u8>) -> Result<Created, StoreError> {
        // The stream's settings, asked again: an operator may have changed
        // them since this node opened it.
        let mut stream = self.stream.clone();
        let info = self
            .cluster
            .wait(stream.info())
            .map_err(|e| backend(&format!("settings of {}", self.prefix), e))?;
        let (once, one) = (
            info.config.discard_new_per_subject,
            info.config.max_messages_per_subject,
        );
        if !once || one != 1 {
            return Err(StoreError::Backend(format!(
                "the stream of {} takes a second record for a key now: refused until its \
                 settings are restored",
                self.prefix
            )));
        }
        let subject = self.subject(key);
        match self.cluster.wait(self.cluster.publish(subject, value)) {
            Ok(_) => Ok(Created::Written),
            Err(e) if subject_taken(&e) => Ok(Created::Exists),
            Err(e) => Err(backend(&format!("create in {}", self.prefix), e)),
        }
    }
}
