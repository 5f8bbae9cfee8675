//! Notices to the people a warrant disclosed, waiting for their clients:
//! each sealed in the `Warrants` tree under `notice\0 ‖ the person's key in
//! that tree ‖ id`, handed out with every fetch until the client
//! acknowledges it.
//!
//! Invariant: a person's notices are found only through their own key
//! (never listed relay-wide), and say nothing of anyone else: the warrant,
//! and how many of that person's records it disclosed.

use std::sync::Arc;

use prost::Message;
use sotto_proto::v1;

use crate::RelayError;
use crate::accounts::blind_user;
use crate::seal::Sealer;
use crate::store::{Batch, Store, Tree};

const NOTICE: &[u8] = b"notice\0";
/// The most notices handed out in one batch (a person is rarely told of more).
pub(crate) const MAX_HANDED_OUT: usize = 64;

#[derive(Clone)]
pub(crate) struct Notices {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

impl Notices {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Notices { store, sealer }
    }

    fn key(&self, user: &str, id: u64) -> Vec<u8> {
        let mut key = NOTICE.to_vec();
        key.extend_from_slice(
            &self
                .sealer
                .tree_key(Tree::Warrants, &blind_user(&self.sealer, user)),
        );
        key.extend_from_slice(&id.to_be_bytes());
        key
    }

    /// Adds writing `notice` for `user` to `batch`.
    pub fn put(&self, batch: &mut Batch, user: &str, notice: &v1::WarrantNotice) {
        let key = self.key(user, notice.id);
        let sealed = self
            .sealer
            .seal_padded(Tree::Warrants, &key, &notice.encode_to_vec());
        batch.put(Tree::Warrants, key, sealed);
    }

    /// The notices waiting for `user`, oldest first.
    pub fn waiting(&self, user: &str) -> Result<Vec<v1::WarrantNotice>, RelayError> {
        let (from, to) = (self.key(user, 0), self.key(user, u64::MAX));
        self.store
            .range(Tree::Warrants, &from, &to, MAX_HANDED_OUT)?
            .iter()
            .map(|(key, sealed)| {
                let plain = self.sealer.open_padded(Tree::Warrants, key, sealed)?;
                v1::WarrantNotice::decode(plain.as_slice())
                    .map_err(|_| RelayError::Corrupt("a warrant notice"))
            })
            .collect()
    }

    /// Deletes the notices `ids` of `user` (any other id deletes nothing). Not yet durable.
    pub fn acknowledge(&self, user: &str, ids: &[u64]) -> Result<(), RelayError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for &id in ids {
            batch.delete(Tree::Warrants, self.key(user, id));
        }
        self.store.apply(batch)?;
        Ok(())
    }
}
