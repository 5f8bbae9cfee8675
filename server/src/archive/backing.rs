//! Where the normal archive is kept: the relay's own store
//! ([`NormalArchive`]) or the cluster ([`ClusterArchive`]). The relay's
//! handlers and its writer use [`Archive`] and never ask which.

use std::sync::Arc;

use super::cluster::{ClusterArchive, ClusterArchiveReader};
use super::{Appended, ArchiveReader, InboxEntry, NewNormal, NormalArchive, Posted};
use crate::RelayError;
use crate::records::NormalRecord;

pub enum Archive {
    Local(Arc<NormalArchive>),
    /// With the view the warrant desk reads through (its own NATS user).
    Cluster(Arc<ClusterArchive>, ClusterArchiveReader),
}

impl Archive {
    pub fn append_many(&self, msgs: Vec<NewNormal>) -> Vec<Result<Appended, RelayError>> {
        match self {
            Archive::Local(a) => a.append_many(msgs),
            Archive::Cluster(a, _) => a.append_many(msgs),
        }
    }

    pub fn inbox(&self, user: &str, limit: usize) -> Result<(Vec<InboxEntry>, bool), RelayError> {
        match self {
            Archive::Local(a) => a.inbox(user, limit),
            Archive::Cluster(a, _) => a.inbox(user, limit),
        }
    }

    pub fn ack(&self, user: &str, upto: u64) -> Result<(), RelayError> {
        match self {
            Archive::Local(a) => a.ack(user, upto),
            Archive::Cluster(a, _) => a.ack(user, upto),
        }
    }

    pub fn acknowledged(&self, user: &str) -> Result<u64, RelayError> {
        match self {
            Archive::Local(a) => a.acknowledged(user),
            Archive::Cluster(a, _) => a.acknowledged(user),
        }
    }

    /// Whether `user` took part in any normal message.
    pub fn has_history(&self, user: &str) -> Result<bool, RelayError> {
        match self {
            Archive::Local(a) => a.has_history(user),
            Archive::Cluster(a, _) => a.has_history(user),
        }
    }

    /// See [`NormalArchive::received_between`] (delivery receipts).
    pub fn received_between(
        &self,
        user: &str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Posted>, RelayError> {
        match self {
            Archive::Local(a) => a.received_between(user, after, upto, limit),
            Archive::Cluster(..) => Err(RelayError::NotOnCluster("a delivery receipt")),
        }
    }

    /// See [`NormalArchive::sent_among`] (delivery receipts).
    pub fn sent_among(&self, sender: &str, ids: &[u64]) -> Result<Vec<Posted>, RelayError> {
        match self {
            Archive::Local(a) => a.sent_among(sender, ids),
            Archive::Cluster(..) => Err(RelayError::NotOnCluster("a delivery receipt")),
        }
    }

    pub fn load_posted(&self, posted: Posted) -> Result<NormalRecord, RelayError> {
        match self {
            Archive::Local(a) => a.load_posted(posted),
            Archive::Cluster(..) => Err(RelayError::NotOnCluster("a delivery receipt")),
        }
    }

    /// Whether the embedded archive's in-memory index is due to be written
    /// (the cluster's archive keeps none).
    pub fn checkpoint_due(&self) -> bool {
        match self {
            Archive::Local(a) => a.checkpoint_due(),
            Archive::Cluster(..) => false,
        }
    }

    pub fn checkpoint(&self) -> Result<usize, RelayError> {
        match self {
            Archive::Local(a) => a.checkpoint(),
            Archive::Cluster(..) => Ok(0),
        }
    }

    /// The read-only view the warrant desk is given.
    pub fn reader(&self) -> ArchiveReader {
        match self {
            Archive::Local(a) => a.reader(),
            Archive::Cluster(_, reader) => ArchiveReader::on_cluster(reader.clone()),
        }
    }
}
