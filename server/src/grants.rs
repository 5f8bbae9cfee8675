//! Granted warrants and the pseudonym mappings of their disclosures, sealed in
//! the `Warrants` tree. A warrant id is recorded once (so a replay is refused);
//! a pseudonym can be reversed only under the warrant whose disclosure issued it.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::RelayError;
use crate::records::GrantRecord;
use crate::seal::Sealer;
use crate::store::{Applied, Batch, Store, Tree};

pub struct Grants {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

fn grant_key(warrant_id: &str) -> Vec<u8> {
    let mut key = b"grant\0".to_vec();
    key.extend_from_slice(&Sha256::digest(warrant_id.as_bytes()));
    key
}

fn pseudonym_key(warrant_id: &str, pseudonym: &str) -> Vec<u8> {
    let mut key = b"pseudonym\0".to_vec();
    key.extend_from_slice(&Sha256::digest(warrant_id.as_bytes()));
    key.extend_from_slice(pseudonym.as_bytes());
    key
}

impl Grants {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Grants { store, sealer }
    }

    /// Records a grant and its pseudonyms, unless the id was granted before
    /// (then `false`, and nothing is written). Not yet durable.
    pub fn record(
        &self,
        grant: &GrantRecord,
        pseudonyms: &BTreeMap<String, String>,
    ) -> Result<bool, RelayError> {
        let key = grant_key(&grant.warrant_id);
        let sealed = self
            .sealer
            .seal(Tree::Warrants, &key, &grant.encode_to_vec());
        let mut batch = Batch::guarded(Tree::Warrants, key, sealed);
        for (pseudonym, user) in pseudonyms {
            let pkey = pseudonym_key(&grant.warrant_id, pseudonym);
            let sealed = self.sealer.seal(Tree::Warrants, &pkey, user.as_bytes());
            batch.put(Tree::Warrants, pkey, sealed);
        }
        Ok(matches!(self.store.apply(batch)?, Applied::Written))
    }

    pub fn get(&self, warrant_id: &str) -> Result<Option<GrantRecord>, RelayError> {
        let key = grant_key(warrant_id);
        let Some(sealed) = self.store.get(Tree::Warrants, &key)? else {
            return Ok(None);
        };
        Ok(Some(GrantRecord::decode(
            self.sealer.open(Tree::Warrants, &key, &sealed)?.as_slice(),
        )?))
    }

    /// The username behind `pseudonym` in `warrant_id`'s disclosure, if it issued it.
    pub fn reveal(&self, warrant_id: &str, pseudonym: &str) -> Result<Option<String>, RelayError> {
        let key = pseudonym_key(warrant_id, pseudonym);
        let Some(sealed) = self.store.get(Tree::Warrants, &key)? else {
            return Ok(None);
        };
        let plain = self.sealer.open(Tree::Warrants, &key, &sealed)?;
        Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
    }
}
