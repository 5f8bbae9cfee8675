//! Normal-mode groups: a name, a creator and members. Only members post, and
//! only members receive (and so read) a group's messages.

use std::sync::Arc;

use prost::Message;

use crate::cluster::{ClusterRecords, OnceRecords};
use crate::records::GroupRecord;
use crate::seal::Sealer;
use crate::store::{Store, Tree};
use crate::{RelayError, now_ms};

const BLIND_DOMAIN: &str = "group";

#[derive(Clone)]
pub struct Groups {
    records: OnceRecords,
    sealer: Arc<Sealer>,
}

impl Groups {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Groups {
            records: OnceRecords::Local(store, Tree::Groups),
            sealer,
        }
    }

    /// Groups on the cluster, shared with the other relay nodes.
    pub fn on_cluster(records: ClusterRecords, sealer: Arc<Sealer>) -> Self {
        Groups {
            records: OnceRecords::Cluster(Arc::new(records)),
            sealer,
        }
    }

    /// The group's conversation id and blinded key.
    pub fn blind(&self, name: &str) -> [u8; 16] {
        self.sealer.blind(BLIND_DOMAIN, name.as_bytes())
    }

    /// Creates the group with `creator` and `members` (deduplicated, sorted).
    /// `None` when the name is taken. Not yet durable.
    pub fn create(
        &self,
        name: &str,
        creator: &str,
        members: &[String],
    ) -> Result<Option<GroupRecord>, RelayError> {
        let mut all: Vec<String> = members.to_vec();
        all.push(creator.to_owned());
        all.sort();
        all.dedup();
        let record = GroupRecord {
            name: name.to_owned(),
            members: all,
            created_by: creator.to_owned(),
            created_at: now_ms(),
        };
        let key = self.blind(name).to_vec();
        let sealed = self
            .sealer
            .seal_padded(Tree::Groups, &key, &record.encode_to_vec());
        Ok(self.records.create(key, sealed)?.then_some(record))
    }

    pub fn get(&self, name: &str) -> Result<Option<GroupRecord>, RelayError> {
        let key = self.blind(name);
        let Some(sealed) = self.records.get(&key)? else {
            return Ok(None);
        };
        Ok(Some(GroupRecord::decode(
            self.sealer
                .open_any(Tree::Groups, &key, &sealed)?
                .as_slice(),
        )?))
    }
}
