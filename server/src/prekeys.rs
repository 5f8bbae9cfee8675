//! Published prekeys: each user's X25519 identity DH key, signed prekey and
//! one-time prekeys. Each one-time prekey is handed out once; when none are
//! left, a bundle carries the signed prekey alone.

use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;
use sotto_proto::v1;

use crate::RelayError;
use crate::accounts::blind_user;
use crate::records::PrekeySetRecord;
use crate::seal::Sealer;
use crate::store::{Batch, Store, Tree};

/// Below this many one-time prekeys, the owner is asked to upload more.
pub const LOW_WATER: usize = 20;
/// The most one-time prekeys the relay keeps for one user.
pub const MAX_ONE_TIME: usize = 500;

/// Why an upload was refused.
#[derive(Debug)]
pub enum UploadRefused {
    BadSignature(&'static str),
    Malformed(&'static str),
}

pub struct Prekeys {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// Serialises read-modify-write of one set, so a one-time key goes out once.
    update: Mutex<()>,
}

fn verify(identity: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    Signature::from_slice(signature).is_ok_and(|s| identity.verify_strict(message, &s).is_ok())
}

impl Prekeys {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Prekeys {
            store,
            sealer,
            update: Mutex::new(()),
        }
    }

    /// The key of `user`'s prekey set (see `Sealer::tree_key`).
    fn key(&self, user: &str) -> [u8; 16] {
        self.sealer
            .tree_key(Tree::Prekeys, &blind_user(&self.sealer, user))
    }

    /// `user`'s prekey set; one an older relay kept under the user's blind
    /// itself is read from there (and moves at the next save).
    fn load(&self, user: &str) -> Result<Option<PrekeySetRecord>, RelayError> {
        let (key, old) = (self.key(user), blind_user(&self.sealer, user));
        let (at, sealed) = match self.store.get(Tree::Prekeys, &key)? {
            Some(sealed) => (key.to_vec(), sealed),
            None => match self.store.get(Tree::Prekeys, &old)? {
                Some(sealed) => (old.to_vec(), sealed),
                None => return Ok(None),
            },
        };
        Ok(Some(PrekeySetRecord::decode(
            self.sealer
                .open_any(Tree::Prekeys, &at, &sealed)?
                .as_slice(),
        )?))
    }

    fn save(&self, user: &str, set: &PrekeySetRecord) -> Result<(), RelayError> {
        let key = self.key(user);
        let mut batch = Batch::default();
        batch.put(
            Tree::Prekeys,
            key.to_vec(),
            self.sealer
                .seal_padded(Tree::Prekeys, &key, &set.encode_to_vec()),
        );
        batch.delete(Tree::Prekeys, blind_user(&self.sealer, user).to_vec());
        self.store.apply(batch)?;
        Ok(())
    }

    /// Stores an upload after checking that `identity` signed its keys; returns
    /// how many one-time prekeys the relay now holds. Not yet durable.
    pub fn upload(
        &self,
        user: &str,
        identity: &VerifyingKey,
        upload: v1::UploadPrekeys,
    ) -> Result<Result<usize, UploadRefused>, RelayError> {
        if upload.identity_dh_key.len() != 32 {
            return Ok(Err(UploadRefused::Malformed(
                "an identity DH key is 32 bytes",
            )));
        }
        if !verify(
            identity,
            &sotto_proto::transcript::identity_dh(&upload.identity_dh_key),
            &upload.identity_dh_signature,
        ) {
            return Ok(Err(UploadRefused::BadSignature(
                "the identity DH key's signature",
            )));
        }
        let Some(signed) = upload.signed_prekey else {
            return Ok(Err(UploadRefused::Malformed(
                "an upload needs a signed prekey",
            )));
        };
        if signed.public_key.len() != 32
            || !verify(
                identity,
                &sotto_proto::transcript::signed_prekey(&signed.public_key),
                &signed.signature,
            )
        {
            return Ok(Err(UploadRefused::BadSignature(
                "the signed prekey's signature",
            )));
        }
        if upload.one_time.iter().any(|k| k.public_key.len() != 32) {
            return Ok(Err(UploadRefused::Malformed(
                "a one-time prekey is 32 bytes",
            )));
        }
        let _serial = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let mut set = self.load(user)?.unwrap_or_default();
        set.identity_dh_key = upload.identity_dh_key.to_vec();
        set.identity_dh_signature = upload.identity_dh_signature.to_vec();
        set.signed_prekey = Some(signed);
        for otk in upload.one_time {
            if set.one_time.len() >= MAX_ONE_TIME {
                break;
            }
            if !set.one_time.iter().any(|k| k.id == otk.id) {
                set.one_time.push(otk);
            }
        }
        self.save(user, &set)?;
        Ok(Ok(set.one_time.len()))
    }

    /// A bundle for `user` with `identity_key`, taking one one-time prekey if
    /// `with_one_time` and any is left; and how many remain. `None` when the
    /// user published none.
    pub fn take_bundle(
        &self,
        user: &str,
        identity_key: &VerifyingKey,
        with_one_time: bool,
    ) -> Result<Option<(v1::PrekeyBundle, usize)>, RelayError> {
        let _serial = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut set) = self.load(user)? else {
            return Ok(None);
        };
        let one_time = (with_one_time && !set.one_time.is_empty()).then(|| set.one_time.remove(0));
        if one_time.is_some() {
            self.save(user, &set)?;
        }
        Ok(Some((
            v1::PrekeyBundle {
                user: user.to_owned(),
                identity_key: identity_key.to_bytes().to_vec().into(),
                identity_dh_key: set.identity_dh_key.into(),
                identity_dh_signature: set.identity_dh_signature.into(),
                signed_prekey: set.signed_prekey,
                one_time,
            },
            set.one_time.len(),
        )))
    }

    /// How many one-time prekeys `user` has left.
    pub fn one_time_left(&self, user: &str) -> Result<usize, RelayError> {
        Ok(self.load(user)?.map_or(0, |s| s.one_time.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;

    #[test]
    fn a_set_an_older_relay_kept_under_the_blind_itself_is_read_and_moved() {
        let f = TestDir::new();
        let store = f.store();
        let old = blind_user(&f.sealer, "bob");
        let set = PrekeySetRecord {
            identity_dh_key: vec![1; 32],
            ..Default::default()
        };
        let mut batch = Batch::default();
        let sealed = f.sealer.seal(Tree::Prekeys, &old, &set.encode_to_vec());
        batch.put(Tree::Prekeys, old.to_vec(), sealed);
        store.apply(batch).unwrap();
        let prekeys = Prekeys::new(store.clone(), f.sealer.clone());
        assert_eq!(prekeys.load("bob").unwrap(), Some(set.clone()));
        prekeys.save("bob", &set).unwrap();
        assert!(store.get(Tree::Prekeys, &old).unwrap().is_none(), "moved");
        assert_eq!(prekeys.load("bob").unwrap(), Some(set));
    }
}
