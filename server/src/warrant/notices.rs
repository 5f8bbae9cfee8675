//! Notices to the people a warrant disclosed, waiting for their clients:
//! each sealed in the `Warrants` tree under `notice\0 ‖ the person's key in
//! that tree ‖ id` (on a cluster, in its `NOTICES` stream:
//! [`super::cluster::ClusterNotices`]), handed out with every fetch until the client
//! acknowledges it.
//!
//! Invariant: a person's notices are found only through their own key
//! (never listed relay-wide), and say nothing of anyone else: the warrant,
//! and how many of that person's records it disclosed.

use std::sync::Arc;

use prost::Message;
use sotto_proto::v1;

use super::cluster::ClusterNotices;
use crate::RelayError;
use crate::accounts::blind_user;
use crate::seal::Sealer;
use crate::store::{Batch, Store, Tree};

const NOTICE: &[u8] = b"notice\0";
/// The most notices handed out in one batch (a person is rarely told of more).
pub(crate) const MAX_HANDED_OUT: usize = 64;

#[derive(Clone)]
pub(crate) enum Notices {
    Local {
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
    },
    Cluster(Arc<ClusterNotices>),
}

impl Notices {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Notices::Local { store, sealer }
    }

    pub fn on_cluster(notices: ClusterNotices) -> Self {
        Notices::Cluster(Arc::new(notices))
    }

    fn key(sealer: &Sealer, user: &str, id: u64) -> Vec<u8> {
        let mut key = NOTICE.to_vec();
        key.extend_from_slice(&sealer.tree_key(Tree::Warrants, &blind_user(sealer, user)));
        key.extend_from_slice(&id.to_be_bytes());
        key
    }

    /// Writes `notice` for `user`: added to `batch` in the relay's store;
    /// on a cluster, written now (durable when this returns).
    pub fn put(
        &self,
        batch: &mut Batch,
        user: &str,
        notice: &v1::WarrantNotice,
    ) -> Result<(), RelayError> {
        match self {
            Notices::Local { sealer, .. } => {
                let key = Self::key(sealer, user, notice.id);
                let sealed = sealer.seal_padded(Tree::Warrants, &key, &notice.encode_to_vec());
                batch.put(Tree::Warrants, key, sealed);
                Ok(())
            }
            Notices::Cluster(cluster) => cluster.put(user, notice),
        }
    }

    /// Whether [`Notices::put`] writes each notice at once (on a cluster),
    /// rather than with the batch it is given.
    pub fn written_at_once(&self) -> bool {
        matches!(self, Notices::Cluster(_))
    }

    /// The notices waiting for `user`, oldest first.
    pub fn waiting(&self, user: &str) -> Result<Vec<v1::WarrantNotice>, RelayError> {
        let (store, sealer) = match self {
            Notices::Local { store, sealer } => (store, sealer),
            Notices::Cluster(cluster) => return cluster.waiting(user, MAX_HANDED_OUT),
        };
        let (from, to) = (
            Self::key(sealer, user, 0),
            Self::key(sealer, user, u64::MAX),
        );
        store
            .range(Tree::Warrants, &from, &to, MAX_HANDED_OUT)?
            .iter()
            .map(|(key, sealed)| {
                let plain = sealer.open_padded(Tree::Warrants, key, sealed)?;
                v1::WarrantNotice::decode(plain.as_slice())
                    .map_err(|_| RelayError::Corrupt("a warrant notice"))
            })
            .collect()
    }

    /// Deletes the notices `ids` of `user` (any other id deletes nothing).
    /// Not yet durable in the relay's store; on a cluster, done when this returns.
    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<(), RelayError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (store, sealer) = match self {
            Notices::Local { store, sealer } => (store, sealer),
            Notices::Cluster(cluster) => return cluster.acknowledge(user, ids),
        };
        let mut batch = Batch::default();
        for &id in ids {
            batch.delete(Tree::Warrants, Self::key(sealer, user, id));
        }
        store.apply(batch)?;
        Ok(())
    }
}
