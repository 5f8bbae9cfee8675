//! Published prekeys: each user's X25519 identity DH key, signed prekey and
//! one-time prekeys, and for PQXDH a signed last-resort ML-KEM-1024 prekey
//! and signed one-time ML-KEM-1024 prekeys. Each one-time prekey (of either
//! kind) is handed out once; when none are left, a bundle carries the signed
//! prekey and the last-resort PQ prekey alone.
//!
//! In the relay's own store, a one-time PQ prekey (1.6 KiB) is sealed as a
//! record of its own under a keyed blind of (user, id), and the set lists
//! their ids: taking one rewrites the small set and deletes one record, in
//! one batch. On a cluster, see [`ClusterPrekeys`]: the same engine, the
//! checks made here either way.

use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;
use sotto_proto::v1;

use crate::RelayError;
use crate::accounts::blind_user;
use crate::records::PrekeySetRecord;
use crate::seal::Sealer;
use crate::store::{Batch, Store, Tree};

pub mod cluster;
pub use cluster::ClusterPrekeys;

/// Below this many one-time prekeys, the owner is asked to upload more.
pub const LOW_WATER: usize = 20;
/// The most one-time prekeys the relay keeps for one user (of each kind).
pub const MAX_ONE_TIME: usize = 500;
/// Bytes of an ML-KEM-1024 encapsulation key.
pub const PQ_PUBLIC_KEY_LEN: usize = 1568;
/// Domain of the keyed blind a one-time PQ prekey's record is kept under.
const PQ_ONE_TIME_DOMAIN: &str = "prekeys/pq one-time";

/// Why an upload was refused.
#[derive(Debug)]
pub enum UploadRefused {
    BadSignature(&'static str),
    Malformed(&'static str),
}

pub struct Prekeys {
    backing: Backing,
}

/// Where the prekeys are kept.
enum Backing {
    /// The relay's own store.
    Local(Local),
    /// The cluster, shared by every relay node (see [`ClusterPrekeys`]).
    Cluster(Box<ClusterPrekeys>),
}

/// Prekeys in the relay's own store: each set one record with its curve
/// one-time prekeys inside, each one-time PQ prekey a record of its own.
struct Local {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// Serialises read-modify-write of one set, so a one-time key goes out once.
    update: Mutex<()>,
}

/// What a take found: the published set, the one-time prekeys it took, and
/// what is left.
struct Taken {
    set: PrekeySetRecord,
    one_time: Option<v1::OneTimePrekey>,
    pq_one_time: Option<v1::PqPrekey>,
    left: Left,
    took_one_time: bool,
}

/// An ML-KEM-1024 encapsulation key that passes FIPS 203's input check (its
/// coefficients reduced), as every client checks before encapsulating: a key
/// that fails it would only be handed out to fail.
fn valid_kem_key(bytes: &[u8]) -> bool {
    use libcrux_ml_kem::mlkem1024::{MlKem1024PublicKey, validate_public_key};
    MlKem1024PublicKey::try_from(bytes).is_ok_and(|key| validate_public_key(&key))
}

fn verify(identity: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    Signature::from_slice(signature).is_ok_and(|s| identity.verify_strict(message, &s).is_ok())
}

impl Prekeys {
    /// Prekeys in the relay's own store.
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        Prekeys {
            backing: Backing::Local(Local {
                store,
                sealer,
                update: Mutex::new(()),
            }),
        }
    }

    /// Prekeys on the cluster, shared with the other relay nodes.
    pub fn on_cluster(cluster: ClusterPrekeys) -> Self {
        Prekeys {
            backing: Backing::Cluster(Box::new(cluster)),
        }
    }

    /// Claims `requester`'s one-time prekey of `target` for a day at every
    /// relay node of a cluster: false when one of them handed one out within
    /// the day. (On one relay its quotas decide alone: always true here.)
    pub async fn claim_first_contact(
        &self,
        requester: &str,
        target: &str,
    ) -> Result<bool, RelayError> {
        match &self.backing {
            Backing::Local(_) => Ok(true),
            Backing::Cluster(cluster) => cluster.claim_first_contact(requester, target).await,
        }
    }

    /// Gives back a claim no one-time prekey was taken under.
    pub async fn release_first_contact(
        &self,
        requester: &str,
        target: &str,
    ) -> Result<(), RelayError> {
        match &self.backing {
            Backing::Local(_) => Ok(()),
            Backing::Cluster(cluster) => cluster.release_first_contact(requester, target).await,
        }
    }

    /// Stores an upload after checking that `identity` signed its keys; returns
    /// how many one-time prekeys (curve, PQ) the relay now holds. Not yet
    /// durable in the relay's own store (on the cluster: held by a majority).
    pub async fn upload(
        &self,
        user: &str,
        identity: &VerifyingKey,
        upload: v1::UploadPrekeys,
    ) -> Result<Result<(usize, usize), UploadRefused>, RelayError> {
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
        let Some(last_resort) = upload.pq_last_resort else {
            return Ok(Err(UploadRefused::Malformed(
                "an upload needs a signed ML-KEM-1024 last-resort prekey",
            )));
        };
        for pq in std::iter::once(&last_resort).chain(&upload.pq_one_time) {
            if pq.public_key.len() != PQ_PUBLIC_KEY_LEN {
                return Ok(Err(UploadRefused::Malformed(
                    "an ML-KEM-1024 prekey is 1568 bytes",
                )));
            }
            if !valid_kem_key(&pq.public_key) {
                return Ok(Err(UploadRefused::Malformed(
                    "an ML-KEM-1024 prekey fails FIPS 203's encapsulation key check",
                )));
            }
            if !verify(
                identity,
                &sotto_proto::transcript::pq_prekey(pq.id, &pq.public_key),
                &pq.signature,
            ) {
                return Ok(Err(UploadRefused::BadSignature(
                    "an ML-KEM-1024 prekey's signature",
                )));
            }
        }
        let published = PrekeySetRecord {
            identity_dh_key: upload.identity_dh_key.to_vec(),
            identity_dh_signature: upload.identity_dh_signature.to_vec(),
            signed_prekey: Some(signed),
            pq_last_resort: Some(last_resort),
            ..Default::default()
        };
        let left = match &self.backing {
            Backing::Local(local) => {
                local.publish(user, published, upload.one_time, upload.pq_one_time)?
            }
            Backing::Cluster(cluster) => {
                cluster
                    .publish(user, &published, upload.one_time, upload.pq_one_time)
                    .await?
            }
        };
        Ok(Ok((left.one_time, left.pq_one_time)))
    }

    /// A bundle for `user` with `identity_key`, taking one one-time prekey of
    /// each kind if `with_one_time` and any is left (else the PQ prekey is the
    /// last-resort one); and how many one-time prekeys of each kind remain.
    /// `None` when the user published none.
    pub async fn take_bundle(
        &self,
        user: &str,
        identity_key: &VerifyingKey,
        with_one_time: bool,
    ) -> Result<Option<Handed>, RelayError> {
        let taken = match &self.backing {
            Backing::Local(local) => local.take(user, with_one_time)?,
            Backing::Cluster(cluster) => {
                let Some(set) = cluster.published(user).await? else {
                    return Ok(None);
                };
                let (one_time, pq_one_time) = if with_one_time {
                    (
                        cluster.take_one_time(user).await?,
                        cluster.take_pq_one_time(user).await?,
                    )
                } else {
                    (None, None)
                };
                Some(Taken {
                    set,
                    took_one_time: one_time.is_some() || pq_one_time.is_some(),
                    one_time,
                    pq_one_time,
                    left: cluster.left(user).await?,
                })
            }
        };
        let Some(taken) = taken else { return Ok(None) };
        let set = taken.set;
        Ok(Some(Handed {
            bundle: v1::PrekeyBundle {
                user: user.to_owned(),
                identity_key: identity_key.to_bytes().to_vec().into(),
                identity_dh_key: set.identity_dh_key.into(),
                identity_dh_signature: set.identity_dh_signature.into(),
                signed_prekey: set.signed_prekey,
                one_time: taken.one_time,
                pq_prekey: taken.pq_one_time.or(set.pq_last_resort),
            },
            left: taken.left,
            took_one_time: taken.took_one_time,
        }))
    }

    /// How many one-time prekeys of each kind `user` has left.
    pub async fn left(&self, user: &str) -> Result<Left, RelayError> {
        match &self.backing {
            Backing::Local(local) => local.left(user),
            Backing::Cluster(cluster) => cluster.left(user).await,
        }
    }

    #[cfg(test)]
    fn local(&self) -> &Local {
        match &self.backing {
            Backing::Local(local) => local,
            Backing::Cluster(_) => panic!("these prekeys are on the cluster"),
        }
    }
}

impl Local {
    /// The key of `user`'s prekey set (see `Sealer::tree_key`).
    fn key(&self, user: &str) -> [u8; 16] {
        self.sealer
            .tree_key(Tree::Prekeys, &blind_user(&self.sealer, user))
    }

    /// The key of `user`'s one-time PQ prekey `id`: nothing links it to the
    /// set's key or to the user's other records.
    fn pq_key(&self, user: &str, id: u32) -> [u8; 16] {
        let mut value = blind_user(&self.sealer, user).to_vec();
        value.extend_from_slice(&id.to_be_bytes());
        self.sealer.blind(PQ_ONE_TIME_DOMAIN, &value)
    }

    fn load_pq(&self, user: &str, id: u32) -> Result<Option<v1::PqPrekey>, RelayError> {
        let key = self.pq_key(user, id);
        let Some(sealed) = self.store.get(Tree::Prekeys, &key)? else {
            return Ok(None);
        };
        Ok(Some(v1::PqPrekey::decode(
            self.sealer
                .open_padded(Tree::Prekeys, &key, &sealed)?
                .as_slice(),
        )?))
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

    #[cfg(test)]
    fn save(&self, user: &str, set: &PrekeySetRecord) -> Result<(), RelayError> {
        self.save_with(user, set, Batch::default())
    }

    /// Saves the set with the other changes in `batch`, all at once.
    fn save_with(
        &self,
        user: &str,
        set: &PrekeySetRecord,
        mut batch: Batch,
    ) -> Result<(), RelayError> {
        let key = self.key(user);
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

    /// Replaces `user`'s published keys with `published`'s and adds the
    /// one-time prekeys not held yet, up to [`MAX_ONE_TIME`] of each kind.
    fn publish(
        &self,
        user: &str,
        published: PrekeySetRecord,
        one_time: Vec<v1::OneTimePrekey>,
        pq_one_time: Vec<v1::PqPrekey>,
    ) -> Result<Left, RelayError> {
        let _serial = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let mut set = self.load(user)?.unwrap_or_default();
        set.identity_dh_key = published.identity_dh_key;
        set.identity_dh_signature = published.identity_dh_signature;
        set.signed_prekey = published.signed_prekey;
        set.pq_last_resort = published.pq_last_resort;
        for otk in one_time {
            if set.one_time.len() >= MAX_ONE_TIME {
                break;
            }
            if !set.one_time.iter().any(|k| k.id == otk.id) {
                set.one_time.push(otk);
            }
        }
        let mut batch = Batch::default();
        for pq in pq_one_time {
            if set.pq_one_time.len() >= MAX_ONE_TIME {
                break;
            }
            if !set.pq_one_time.contains(&pq.id) {
                set.pq_one_time.push(pq.id);
                let key = self.pq_key(user, pq.id);
                let sealed = self
                    .sealer
                    .seal_padded(Tree::Prekeys, &key, &pq.encode_to_vec());
                batch.put(Tree::Prekeys, key.to_vec(), sealed);
            }
        }
        self.save_with(user, &set, batch)?;
        Ok(Left {
            one_time: set.one_time.len(),
            pq_one_time: set.pq_one_time.len(),
        })
    }

    fn take(&self, user: &str, with_one_time: bool) -> Result<Option<Taken>, RelayError> {
        let _serial = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut set) = self.load(user)? else {
            return Ok(None);
        };
        let one_time = (with_one_time && !set.one_time.is_empty()).then(|| set.one_time.remove(0));
        let mut batch = Batch::default();
        let mut pq_one_time = None;
        while with_one_time && pq_one_time.is_none() && !set.pq_one_time.is_empty() {
            let id = set.pq_one_time.remove(0);
            // A record gone missing is skipped: the next one, or the last resort.
            pq_one_time = self.load_pq(user, id)?;
            batch.delete(Tree::Prekeys, self.pq_key(user, id).to_vec());
        }
        let took_one_time = one_time.is_some() || !batch.ops.is_empty();
        if took_one_time {
            self.save_with(user, &set, batch)?;
        }
        let left = Left {
            one_time: set.one_time.len(),
            pq_one_time: set.pq_one_time.len(),
        };
        Ok(Some(Taken {
            set,
            one_time,
            pq_one_time,
            left,
            took_one_time,
        }))
    }

    fn left(&self, user: &str) -> Result<Left, RelayError> {
        Ok(self.load(user)?.map_or(Left::default(), |s| Left {
            one_time: s.one_time.len(),
            pq_one_time: s.pq_one_time.len(),
        }))
    }
}

/// A bundle handed out.
pub struct Handed {
    pub bundle: v1::PrekeyBundle,
    /// What is left after it.
    pub left: Left,
    /// It took a one-time prekey (of either kind).
    pub took_one_time: bool,
}

/// How many one-time prekeys of each kind a user has left at the relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Left {
    pub one_time: usize,
    pub pq_one_time: usize,
}

impl Left {
    /// Either kind is below [`LOW_WATER`]: the owner is asked to upload more.
    pub fn low(&self) -> bool {
        self.one_time < LOW_WATER || self.pq_one_time < LOW_WATER
    }

    pub fn prekeys_low(&self) -> v1::PrekeysLow {
        v1::PrekeysLow {
            remaining: self.one_time as u32,
            pq_remaining: self.pq_one_time as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::store::TestDir;
    use crate::store::faulty::Faulty;

    /// Runs `work` to its end on a runtime of its own (the local backing
    /// never waits on anything but its store).
    fn now<T>(work: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(work)
    }

    /// An upload signed by `identity` with two one-time prekeys of each kind.
    fn upload(identity: &SigningKey) -> v1::UploadPrekeys {
        let sign = |m: Vec<u8>| identity.sign(&m).to_bytes().to_vec().into();
        let pq = |id: u32, created_at: i64| v1::PqPrekey {
            id,
            public_key: vec![id as u8; PQ_PUBLIC_KEY_LEN].into(),
            signature: sign(sotto_proto::transcript::pq_prekey(
                id,
                &[id as u8; PQ_PUBLIC_KEY_LEN],
            )),
            created_at,
        };
        v1::UploadPrekeys {
            identity_dh_key: vec![1; 32].into(),
            identity_dh_signature: sign(sotto_proto::transcript::identity_dh(&[1; 32])),
            signed_prekey: Some(v1::SignedPrekey {
                id: 1,
                public_key: vec![2; 32].into(),
                signature: sign(sotto_proto::transcript::signed_prekey(&[2; 32])),
                created_at: 1,
            }),
            one_time: (3..5)
                .map(|id| v1::OneTimePrekey {
                    id,
                    public_key: vec![id as u8; 32].into(),
                })
                .collect(),
            pq_last_resort: Some(pq(5, 1)),
            pq_one_time: vec![pq(6, 0), pq(7, 0)],
        }
    }

    #[test]
    fn two_takers_at_once_never_get_the_same_one_time_prekey() {
        // The first taker is held on a slow disk in the middle of its
        // read-modify-write; the second must wait for it, not read the same set.
        let f = TestDir::new();
        let disk = Arc::new(Faulty::new(f.store()));
        let prekeys = Prekeys::new(disk.clone(), f.sealer.clone());
        let identity = SigningKey::from_bytes(&[9; 32]);
        let bob = identity.verifying_key();
        assert_eq!(
            now(prekeys.upload("bob", &bob, upload(&identity)))
                .unwrap()
                .ok(),
            Some((2, 2))
        );
        disk.hold_reads(true);
        let handed = std::thread::scope(|s| {
            let first = s.spawn(|| {
                now(prekeys.take_bundle("bob", &bob, true))
                    .unwrap()
                    .unwrap()
            });
            assert_eq!(disk.wait_for_held_reads(1, Duration::from_secs(30)), 1);
            let second = s.spawn(|| {
                now(prekeys.take_bundle("bob", &bob, true))
                    .unwrap()
                    .unwrap()
            });
            // Were the second let through to the store, it would be held too.
            let held = disk.wait_for_held_reads(2, Duration::from_millis(300));
            disk.hold_reads(false);
            assert_eq!(
                held, 1,
                "the second taker read the set while the first held it"
            );
            [first.join().unwrap(), second.join().unwrap()]
        });
        let ids = |h: &Handed| {
            (
                h.bundle.one_time.as_ref().unwrap().id,
                h.bundle.pq_prekey.as_ref().unwrap().id,
            )
        };
        assert_ne!(ids(&handed[0]).0, ids(&handed[1]).0);
        assert_ne!(ids(&handed[0]).1, ids(&handed[1]).1);
        assert!(handed.iter().all(|h| h.took_one_time));
        assert_eq!(handed[1].left, Left::default());
        // None left: the last-resort PQ prekey, which stays.
        for _ in 0..2 {
            let h = now(prekeys.take_bundle("bob", &bob, true))
                .unwrap()
                .unwrap();
            assert!(!h.took_one_time && h.bundle.one_time.is_none());
            assert_eq!(h.bundle.pq_prekey.unwrap().id, 5);
        }
    }

    #[test]
    fn an_upload_with_a_pq_prekey_signed_as_something_else_is_refused() {
        let f = TestDir::new();
        let prekeys = Prekeys::new(f.store(), f.sealer.clone());
        let identity = SigningKey::from_bytes(&[9; 32]);
        let mut bad = upload(&identity);
        let key = bad.pq_one_time[0].public_key.clone();
        bad.pq_one_time[0].signature = identity
            .sign(&sotto_proto::transcript::signed_prekey(&key))
            .to_bytes()
            .to_vec()
            .into();
        let refused = now(prekeys.upload("bob", &identity.verifying_key(), bad)).unwrap();
        assert!(matches!(refused, Err(UploadRefused::BadSignature(_))));
        assert_eq!(now(prekeys.left("bob")).unwrap(), Left::default());
    }

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
        assert_eq!(prekeys.local().load("bob").unwrap(), Some(set.clone()));
        prekeys.local().save("bob", &set).unwrap();
        assert!(store.get(Tree::Prekeys, &old).unwrap().is_none(), "moved");
        assert_eq!(prekeys.local().load("bob").unwrap(), Some(set));
    }
}
