//! Accounts: a username bound once, at registration, to an Ed25519 identity key.
//! Stored under a blinded key and sealed, so the data directory holds no usernames.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use ed25519_dalek::VerifyingKey;
use prost::Message;

use crate::cluster::{ClusterRecords, OnceRecords};
use crate::records::AccountRecord;
use crate::seal::Sealer;
use crate::store::{Store, Tree};
use crate::{RelayError, now_ms};

/// The blinded index key of a username, for every tree keyed by user.
pub fn blind_user(sealer: &Sealer, username: &str) -> [u8; 16] {
    sealer.blind_user(username)
}

/// A key under a user's blind: blind(16) ‖ n (u64 big-endian), so one user's
/// entries sort together and in `n` order (inbox sequence, queue id).
pub fn user_scoped_key(user: &[u8; 16], n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(24);
    key.extend_from_slice(user);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

#[derive(Clone)]
pub struct Accounts {
    records: OnceRecords,
    sealer: Arc<Sealer>,
    /// Names known to exist (accounts are never removed), so that checking a
    /// recipient on every send costs no store read. Bounded: emptied when full.
    known: Arc<RwLock<HashSet<String>>>,
}

/// Whether accounts exist, and nothing else: what the warrant desk is given
/// to check a warrant's targets (it cannot register, read keys or blind names).
#[derive(Clone)]
pub struct AccountNames(Accounts);

impl AccountNames {
    pub fn exists(&self, username: &str) -> Result<bool, RelayError> {
        self.0.exists(username)
    }
}

/// The most names [`Accounts::exists`] remembers.
const KNOWN_NAMES: usize = 65_536;

/// A registered account.
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub identity_key: VerifyingKey,
}

/// What registering did.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    Created,
    Taken,
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Accounts {
            records: OnceRecords::Local(store, Tree::Accounts),
            sealer,
            known: Arc::default(),
        }
    }

    /// Accounts on the cluster, shared with the other relay nodes (see
    /// [`ClusterRecords`]).
    pub fn on_cluster(records: ClusterRecords, sealer: Arc<Sealer>) -> Self {
        Accounts {
            records: OnceRecords::Cluster(Arc::new(records)),
            sealer,
            known: Arc::default(),
        }
    }

    /// The read-only view of which accounts exist.
    pub fn names(&self) -> AccountNames {
        AccountNames(self.clone())
    }

    pub fn blind(&self, username: &str) -> [u8; 16] {
        blind_user(&self.sealer, username)
    }

    /// Binds `username` to `identity_key` unless the name is taken. Not yet durable.
    pub fn register(
        &self,
        username: &str,
        identity_key: &VerifyingKey,
    ) -> Result<Registration, RelayError> {
        let key = self.blind(username).to_vec();
        let record = AccountRecord {
            username: username.to_owned(),
            identity_key: identity_key.to_bytes().to_vec(),
            created_at: now_ms(),
        };
        let sealed = self
            .sealer
            .seal_padded(Tree::Accounts, &key, &record.encode_to_vec());
        Ok(match self.records.create(key, sealed)? {
            true => Registration::Created,
            false => Registration::Taken,
        })
    }

    pub fn get(&self, username: &str) -> Result<Option<Account>, RelayError> {
        let key = self.blind(username);
        let Some(sealed) = self.records.get(&key)? else {
            return Ok(None);
        };
        let record = AccountRecord::decode(
            self.sealer
                .open_any(Tree::Accounts, &key, &sealed)?
                .as_slice(),
        )?;
        let bytes: [u8; 32] = record
            .identity_key
            .as_slice()
            .try_into()
            .map_err(|_| RelayError::Corrupt("account identity key"))?;
        let identity_key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| RelayError::Corrupt("account identity key"))?;
        Ok(Some(Account {
            username: record.username,
            identity_key,
        }))
    }

    pub fn exists(&self, username: &str) -> Result<bool, RelayError> {
        let known = |k: &RwLock<HashSet<String>>| {
            k.read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(username)
        };
        if known(&self.known) {
            return Ok(true);
        }
        let exists = self.records.contains(&self.blind(username))?;
        if exists {
            let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
            if known.len() >= KNOWN_NAMES {
                known.clear();
            }
            known.insert(username.to_owned());
        }
        Ok(exists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;

    #[test]
    fn a_name_exists_once_registered_and_only_then() {
        let dir = TestDir::new();
        let accounts = Accounts::new(dir.store(), dir.sealer.clone());
        assert!(!accounts.exists("ann").unwrap());
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert_eq!(
            accounts.register("ann", &key).unwrap(),
            Registration::Created
        );
        assert!(accounts.exists("ann").unwrap());
        assert!(accounts.exists("ann").unwrap());
        assert!(!accounts.exists("bob").unwrap());
        assert_eq!(accounts.register("ann", &key).unwrap(), Registration::Taken);
    }
}
