//! A key-value bucket on the cluster for records created once and read
//! often (accounts): create is a compare-and-set on the key's absence, so
//! of two relay nodes creating one key at once exactly one succeeds.
//!
//! Keys are the relay's keyed blinds (hex), values are sealed by the relay:
//! the cluster's operator learns how many records there are, nothing of
//! what or whose they are.

use async_nats::jetstream::kv;

use super::jetstream::{Cluster, ClusterError, backend};
use crate::store::StoreError;

/// What creating a record did.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    Written,
    /// The key was taken: nothing was written.
    Exists,
}

pub struct ClusterBucket {
    cluster: Cluster,
    kv: kv::Store,
    name: String,
}

impl ClusterBucket {
    /// Makes (or finds) the bucket `name`, and opens it.
    pub async fn open(cluster: &Cluster, name: &str) -> Result<Self, ClusterError> {
        Ok(ClusterBucket {
            kv: cluster.bucket(name).await?,
            cluster: cluster.clone(),
            name: name.to_owned(),
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.cluster
            .wait(self.kv.get(hex::encode(key)))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| backend(&format!("read from {}", self.name), e))
    }

    /// Writes `value` under `key` unless the key holds a value; acknowledged
    /// by a majority of the replicas when it returns.
    pub fn create(&self, key: &[u8], value: Vec<u8>) -> Result<Created, StoreError> {
        match self
            .cluster
            .wait(self.kv.create(hex::encode(key), value.into()))
        {
            Ok(_) => Ok(Created::Written),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Created::Exists),
            Err(e) => Err(backend(&format!("create in {}", self.name), e)),
        }
    }
}
