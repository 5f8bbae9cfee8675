//! Granted warrants, the pseudonym mappings of their disclosures, and the
//! unmask request ids served, sealed in the `Warrants` tree.
//!
//! Keys are keyed blinds of (authority, warrant id): ids are one namespace per
//! authority, a warrant id is granted once (so a replay is refused), and a
//! pseudonym can be reversed only under the warrant whose disclosure issued it.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use sotto_warrant::Grant;

use crate::RelayError;
use crate::seal::Sealer;
use crate::store::{Applied, Batch, Store, Tree};

pub(crate) struct Grants {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

/// The keyed blind of (authority, warrant id), which every record of one
/// warrant is keyed by.
pub(super) fn warrant_blind(sealer: &Sealer, authority: &str, warrant_id: &str) -> [u8; 16] {
    sealer.blind(
        "grant",
        &scoped(&[authority.as_bytes(), warrant_id.as_bytes()]),
    )
}

fn scoped(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

impl Grants {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Grants { store, sealer }
    }

    fn warrant_blind(&self, authority: &str, warrant_id: &str) -> [u8; 16] {
        warrant_blind(&self.sealer, authority, warrant_id)
    }

    fn grant_key(&self, authority: &str, warrant_id: &str) -> Vec<u8> {
        let mut key = b"grant\0".to_vec();
        key.extend_from_slice(&self.warrant_blind(authority, warrant_id));
        key
    }

    fn refused_key(&self, authority: &str, warrant_id: &str) -> Vec<u8> {
        let mut key = b"refused\0".to_vec();
        key.extend_from_slice(&self.warrant_blind(authority, warrant_id));
        key
    }

    fn pseudonym_key(&self, authority: &str, warrant_id: &str, pseudonym: &str) -> Vec<u8> {
        let mut key = b"pseudonym\0".to_vec();
        key.extend_from_slice(&self.warrant_blind(authority, warrant_id));
        key.extend_from_slice(&self.sealer.blind("pseudonym", pseudonym.as_bytes()));
        key
    }

    fn request_key(&self, authority: &str, request_id: &[u8]) -> Vec<u8> {
        let mut key = b"unmask\0".to_vec();
        key.extend_from_slice(
            &self
                .sealer
                .blind("unmask", &scoped(&[authority.as_bytes(), request_id])),
        );
        key
    }

    /// Records a grant and its pseudonyms, unless this authority was granted
    /// this id before (then `false`, and nothing is written). Not yet durable.
    pub fn record(
        &self,
        grant: &Grant,
        pseudonyms: &BTreeMap<String, String>,
    ) -> Result<bool, RelayError> {
        let key = self.grant_key(&grant.authority, &grant.warrant_id);
        let sealed = self
            .sealer
            .seal_padded(Tree::Warrants, &key, &grant.encode_to_vec());
        let mut batch = Batch::guarded(Tree::Warrants, key, sealed);
        self.put_pseudonyms(&mut batch, grant, pseudonyms);
        Ok(matches!(self.store.apply(batch)?, Applied::Written))
    }

    /// Adds the pseudonyms a later delivery of a granted warrant issued (the
    /// same names map to the same pseudonyms in every delivery). Not yet durable.
    pub fn add_pseudonyms(
        &self,
        grant: &Grant,
        pseudonyms: &BTreeMap<String, String>,
    ) -> Result<(), RelayError> {
        let mut batch = Batch::default();
        self.put_pseudonyms(&mut batch, grant, pseudonyms);
        self.store.apply(batch)?;
        Ok(())
    }

    fn put_pseudonyms(
        &self,
        batch: &mut Batch,
        grant: &Grant,
        pseudonyms: &BTreeMap<String, String>,
    ) {
        for (pseudonym, user) in pseudonyms {
            let pkey = self.pseudonym_key(&grant.authority, &grant.warrant_id, pseudonym);
            let sealed = self
                .sealer
                .seal_padded(Tree::Warrants, &pkey, user.as_bytes());
            batch.put(Tree::Warrants, pkey, sealed);
        }
    }

    pub fn get(&self, authority: &str, warrant_id: &str) -> Result<Option<Grant>, RelayError> {
        let key = self.grant_key(authority, warrant_id);
        let Some(sealed) = self.store.get(Tree::Warrants, &key)? else {
            return Ok(None);
        };
        Ok(Some(Grant::decode(
            self.sealer
                .open_any(Tree::Warrants, &key, &sealed)?
                .as_slice(),
        )?))
    }

    /// Whether this authority used this warrant id before, granted or refused.
    pub fn id_used(&self, authority: &str, warrant_id: &str) -> Result<bool, RelayError> {
        for key in [
            self.grant_key(authority, warrant_id),
            self.refused_key(authority, warrant_id),
        ] {
            if self.store.get(Tree::Warrants, &key)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Remembers a refused warrant's id as used: a copy of it sent again is
    /// a replay, which spends no authority's budget. Not yet durable.
    pub fn refuse_id(
        &self,
        authority: &str,
        warrant_id: &str,
        now_ms: i64,
    ) -> Result<(), RelayError> {
        let key = self.refused_key(authority, warrant_id);
        let sealed = self
            .sealer
            .seal(Tree::Warrants, &key, &now_ms.to_be_bytes());
        self.store
            .apply(Batch::guarded(Tree::Warrants, key, sealed))?;
        Ok(())
    }

    /// The username behind `pseudonym` in the grant's disclosure, if it issued it.
    pub fn reveal(&self, grant: &Grant, pseudonym: &str) -> Result<Option<String>, RelayError> {
        let key = self.pseudonym_key(&grant.authority, &grant.warrant_id, pseudonym);
        let Some(sealed) = self.store.get(Tree::Warrants, &key)? else {
            return Ok(None);
        };
        let plain = self.sealer.open_any(Tree::Warrants, &key, &sealed)?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| RelayError::Corrupt("a pseudonym mapping"))
            .map(Some)
    }

    /// Whether this authority's unmask request id was served before.
    pub fn request_served(&self, authority: &str, request_id: &[u8]) -> Result<bool, RelayError> {
        Ok(self
            .store
            .get(Tree::Warrants, &self.request_key(authority, request_id))?
            .is_some())
    }

    /// Remembers an unmask request id as served, unless it was (then `false`). Not yet durable.
    pub fn serve_request(
        &self,
        authority: &str,
        request_id: &[u8],
        now_ms: i64,
    ) -> Result<bool, RelayError> {
        let key = self.request_key(authority, request_id);
        let sealed = self
            .sealer
            .seal(Tree::Warrants, &key, &now_ms.to_be_bytes());
        Ok(matches!(
            self.store
                .apply(Batch::guarded(Tree::Warrants, key, sealed))?,
            Applied::Written
        ))
    }
}
