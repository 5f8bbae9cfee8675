//! The relay's storage, one function at a time, each with one suite run on
//! each place it can be kept: the relay's own store (fjall, in a temp dir)
//! and a real 3-node NATS JetStream cluster (`nats-server` from the
//! distribution) with two relay nodes, each connected to a different
//! server. Same engine, same checks, same answers; what differs is where the
//! records live and what decides a race (a lock or a guarded batch in one
//! process; a delete or a compare-and-set on the cluster).
//!
//! - prekeys: each one-time prekey goes out once;
//! - accounts and groups: a name is registered, or a group made, once;
//! - the secret queue: an envelope waits for its recipient alone, once,
//!   until acknowledged;
//! - the normal archive: a message reaches each participant's inbox once,
//!   stays gone once acknowledged, and the warrant desk's view reads a
//!   person's records in a window (on the cluster, as the desk's own NATS
//!   user).
//!
//! Then what only the cluster can be attacked with: its operator reading the
//! streams and buckets, and records moved between users' subjects.

use std::collections::HashSet;
use std::sync::Arc;

use async_nats::jetstream;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sotto_proto::v1;
use sotto_server::accounts::{Accounts, Registration};
use std::time::Duration;

use sotto_server::archive::{Appended, Destination, InboxEntry, NewNormal, NormalArchive};
use sotto_server::archive::{ClusterArchive, ClusterArchiveReader};
use sotto_server::cluster::{
    ACCOUNTS, Cluster, ClusterOptions, ClusterRecords, GROUPS, HIST, PREKEYS, RELAY_USER, SECRET,
    WARRANT_USER,
};
use sotto_server::groups::Groups;
use sotto_server::prekeys::ClusterPrekeys;
use sotto_server::prekeys::{Left, MAX_ONE_TIME, PQ_PUBLIC_KEY_LEN, Prekeys};
use sotto_server::records::{GroupRecord, NormalRecord};
use sotto_server::seal::{MasterKey, Sealer};
use sotto_server::secret_queue_suite::{
    ClusterSecretQueue, Full, GroupQueued, NewGroupSecret, NewSecret, Queued, SecretQueue,
};
use sotto_server::store::{FjallStore, Store};
use sotto_tests::nats::{NatsCluster, RELAY_PASSWORD, WARRANT_PASSWORD};
use zeroize::Zeroizing;

/// Where the records are kept, and a way to reach them as a relay node.
enum Backing {
    Local {
        _dir: tempfile::TempDir,
        prekeys: Arc<Prekeys>,
        accounts: Accounts,
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        queue: std::sync::OnceLock<Arc<dyn Queue>>,
        archive: std::sync::OnceLock<Arc<NormalArchive>>,
    },
    Cluster {
        cluster: NatsCluster,
        sealer: Arc<Sealer>,
    },
}

fn sealer() -> Arc<Sealer> {
    let master = MasterKey::generate();
    Arc::new(master.unwrap_data_key(&master.wrap_new_data_key()).unwrap())
}

impl Backing {
    fn local() -> Backing {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(FjallStore::open(&dir.path().join("db")).unwrap());
        let sealer = sealer();
        Backing::Local {
            prekeys: Arc::new(Prekeys::new(store.clone(), sealer.clone())),
            accounts: Accounts::new(store.clone(), sealer.clone()),
            store,
            sealer,
            queue: std::sync::OnceLock::new(),
            archive: std::sync::OnceLock::new(),
            _dir: dir,
        }
    }

    fn cluster() -> Backing {
        Backing::Cluster {
            cluster: NatsCluster::start(),
            sealer: sealer(),
        }
    }

    /// Relay node `n`'s connection, connected to server `n`.
    async fn connect(cluster: &NatsCluster, n: usize) -> Cluster {
        let urls = cluster.urls();
        let options = ClusterOptions {
            urls: vec![urls[n % urls.len()].clone()],
            user: RELAY_USER.to_owned(),
            password: Zeroizing::new(RELAY_PASSWORD.to_owned()),
            replicas: 3,
        };
        Cluster::connect(&options).await.expect("connects")
    }

    /// Relay node `n`'s prekeys: on the cluster a node of its own,
    /// connected to server `n`; locally the relay's one engine.
    async fn node(&self, n: usize) -> Arc<Prekeys> {
        match self {
            Backing::Local { prekeys, .. } => prekeys.clone(),
            Backing::Cluster { cluster, sealer } => {
                let prekeys =
                    ClusterPrekeys::open(&Self::connect(cluster, n).await, sealer.clone())
                        .await
                        .expect("the stream and bucket are made");
                Arc::new(Prekeys::on_cluster(prekeys))
            }
        }
    }

    /// Relay node `n`'s secret queue, with room for `per_recipient` envelopes
    /// a recipient (on one node, the relay's one queue: opened once).
    async fn secret_queue(&self, n: usize, per_recipient: u32) -> Arc<dyn Queue> {
        let per_sender = sotto_server::config::Limits::default().secret_queue_per_sender_envelopes;
        self.secret_queue_with(n, per_recipient, per_sender).await
    }

    /// The same, with room for `per_sender` envelopes from one sender to a recipient.
    async fn secret_queue_with(
        &self,
        n: usize,
        per_recipient: u32,
        per_sender: u32,
    ) -> Arc<dyn Queue> {
        let quota = sotto_server::config::Limits {
            secret_queue_envelopes: per_recipient,
            secret_queue_per_sender_envelopes: per_sender,
            ..Default::default()
        }
        .secret_quota();
        match self {
            Backing::Local {
                store,
                sealer,
                queue,
                ..
            } => queue
                .get_or_init(|| {
                    Arc::new(SecretQueue::open(store.clone(), sealer.clone(), quota).unwrap())
                })
                .clone(),
            Backing::Cluster { cluster, sealer } => Arc::new(
                ClusterSecretQueue::open(
                    &Self::connect(cluster, n).await,
                    sealer.clone(),
                    quota,
                    Duration::from_secs(3600),
                )
                .await
                .expect("the stream and buckets are made"),
            ),
        }
    }

    /// Relay node `n`'s normal archive (locally the relay's one archive).
    async fn archive(&self, n: usize) -> Arc<dyn Archive> {
        match self {
            Backing::Local {
                store,
                sealer,
                archive,
                ..
            } => Arc::new(LocalArchive(
                archive
                    .get_or_init(|| {
                        Arc::new(NormalArchive::open(store.clone(), sealer.clone()).unwrap())
                    })
                    .clone(),
            )),
            Backing::Cluster { cluster, sealer } => {
                let node = Self::connect(cluster, n).await;
                let archive = ClusterArchive::open(&node, sealer.clone())
                    .await
                    .expect("the stream and bucket are made");
                let desk = Cluster::connect(&ClusterOptions {
                    urls: cluster.urls(),
                    user: WARRANT_USER.to_owned(),
                    password: Zeroizing::new(WARRANT_PASSWORD.to_owned()),
                    replicas: 3,
                })
                .await
                .expect("the desk connects as its own user");
                let reader = ClusterArchive::reader(&desk, sealer.clone())
                    .await
                    .expect("the desk reads the history");
                Arc::new((archive, reader))
            }
        }
    }

    /// Relay node `n`'s normal groups.
    async fn groups(&self, n: usize) -> Groups {
        match self {
            Backing::Local { store, sealer, .. } => Groups::new(store.clone(), sealer.clone()),
            Backing::Cluster { cluster, sealer } => {
                let records = ClusterRecords::open(&Self::connect(cluster, n).await, GROUPS)
                    .await
                    .expect("the stream is made");
                Groups::on_cluster(records, sealer.clone())
            }
        }
    }

    /// Relay node `n`'s accounts.
    async fn accounts(&self, n: usize) -> Accounts {
        match self {
            Backing::Local { accounts, .. } => accounts.clone(),
            Backing::Cluster { cluster, sealer } => {
                let records = ClusterRecords::open(&Self::connect(cluster, n).await, ACCOUNTS)
                    .await
                    .expect("the stream is made");
                Accounts::on_cluster(records, sealer.clone())
            }
        }
    }
}

/// One suite's test, run on each backing: `local_…` and `cluster_…`.
macro_rules! on_both {
    ($suite:ident: $local:ident, $cluster:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $local() {
            $suite(Backing::local()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $cluster() {
            $suite(Backing::cluster()).await;
        }
    };
}

/// A valid ML-KEM-1024 encapsulation key's bytes (small coefficients).
fn pq_key_bytes(id: u32) -> Vec<u8> {
    vec![(id % 8) as u8 + 1; PQ_PUBLIC_KEY_LEN]
}

/// An upload signed by `identity`: one-time prekeys `curve` and `pq` (ids),
/// last-resort PQ prekey id 0.
fn upload(identity: &SigningKey, curve: &[u32], pq: &[u32]) -> v1::UploadPrekeys {
    let sign = |m: Vec<u8>| identity.sign(&m).to_bytes().to_vec().into();
    let pq_key = |id: u32| v1::PqPrekey {
        id,
        public_key: pq_key_bytes(id).into(),
        signature: sign(sotto_proto::transcript::pq_prekey(id, &pq_key_bytes(id))),
        created_at: 1,
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
        one_time: curve
            .iter()
            .map(|&id| v1::OneTimePrekey {
                id,
                public_key: curve_key(id).into(),
            })
            .collect(),
        pq_last_resort: Some(pq_key(0)),
        pq_one_time: pq.iter().map(|&id| pq_key(id)).collect(),
    }
}

/// A one-time curve prekey's public key, recognisable in raw bytes.
fn curve_key(id: u32) -> Vec<u8> {
    let mut key = b"ONE-TIME-CURVE-PREKEY-PUBLIC-".to_vec();
    key.extend_from_slice(&id.to_be_bytes()[1..]);
    key
}

struct Bob {
    identity: SigningKey,
}

impl Bob {
    fn new() -> Bob {
        Bob {
            identity: SigningKey::from_bytes(&[9; 32]),
        }
    }

    fn key(&self) -> VerifyingKey {
        self.identity.verifying_key()
    }

    async fn publish(&self, node: &Prekeys, curve: &[u32], pq: &[u32]) -> (usize, usize) {
        node.upload("bob", &self.key(), upload(&self.identity, curve, pq))
            .await
            .expect("the upload is stored")
            .expect("the upload is accepted")
    }
}

fn ids(range: std::ops::Range<u32>) -> Vec<u32> {
    range.collect()
}

async fn each_goes_out_once_then_the_last_resort_stays(backing: Backing) {
    let bob = Bob::new();
    let (a, b) = (backing.node(0).await, backing.node(1).await);
    assert!(
        a.take_bundle("bob", &bob.key(), true)
            .await
            .unwrap()
            .is_none(),
        "nothing published yet"
    );
    assert_eq!(bob.publish(&a, &ids(10..13), &ids(20..23)).await, (3, 3));
    let mut handed = Vec::new();
    for (i, node) in [&a, &b, &a].into_iter().enumerate() {
        let h = node
            .take_bundle("bob", &bob.key(), true)
            .await
            .unwrap()
            .unwrap();
        assert!(h.took_one_time);
        assert_eq!(
            h.left,
            Left {
                one_time: 2 - i,
                pq_one_time: 2 - i
            }
        );
        assert_eq!(h.bundle.signed_prekey.unwrap().public_key.as_ref(), [2; 32]);
        handed.push((
            h.bundle.one_time.unwrap().id,
            h.bundle.pq_prekey.unwrap().id,
        ));
    }
    assert_eq!(
        handed,
        vec![(10, 20), (11, 21), (12, 22)],
        "oldest first, each once"
    );
    // A bundle without one-time prekeys (past the quotas) takes none.
    let h = b
        .take_bundle("bob", &bob.key(), false)
        .await
        .unwrap()
        .unwrap();
    assert!(!h.took_one_time && h.bundle.one_time.is_none());
    // None left: the last-resort PQ prekey, which stays.
    for node in [&a, &b] {
        let h = node
            .take_bundle("bob", &bob.key(), true)
            .await
            .unwrap()
            .unwrap();
        assert!(!h.took_one_time && h.bundle.one_time.is_none());
        assert_eq!(h.bundle.pq_prekey.unwrap().id, 0);
        assert_eq!(h.left, Left::default());
    }
}

async fn twenty_takes_at_once_hand_each_one_time_prekey_out_once(backing: Backing) {
    let bob = Bob::new();
    let nodes = [backing.node(0).await, backing.node(1).await];
    bob.publish(&nodes[0], &ids(100..125), &ids(200..225)).await;
    let takes: Vec<_> = (0..20)
        .map(|i| {
            let node = nodes[i % 2].clone();
            let key = bob.key();
            tokio::spawn(async move { node.take_bundle("bob", &key, true).await })
        })
        .collect();
    let (mut curve, mut pq) = (HashSet::new(), HashSet::new());
    for take in takes {
        let h = take.await.unwrap().expect("a take").expect("a bundle");
        assert!(
            curve.insert(h.bundle.one_time.expect("a curve one-time prekey").id),
            "a curve one-time prekey went out twice"
        );
        assert!(
            pq.insert(h.bundle.pq_prekey.expect("a PQ prekey").id),
            "a PQ one-time prekey went out twice"
        );
    }
    assert_eq!((curve.len(), pq.len()), (20, 20));
    assert!(curve.iter().all(|id| (100..125).contains(id)));
    assert!(pq.iter().all(|id| (200..225).contains(id)), "{pq:?}");
    for node in &nodes {
        assert_eq!(
            node.left("bob").await.unwrap(),
            Left {
                one_time: 5,
                pq_one_time: 5
            }
        );
    }
}

async fn an_upload_keeps_at_most_the_limit_and_skips_keys_held(backing: Backing) {
    let bob = Bob::new();
    let (a, b) = (backing.node(0).await, backing.node(1).await);
    assert_eq!(bob.publish(&a, &ids(0..3), &ids(0..2)).await, (3, 2));
    // The same ids again, and some new: only the new ones count.
    assert_eq!(bob.publish(&b, &ids(1..5), &ids(1..3)).await, (5, 3));
    let limit = MAX_ONE_TIME as u32;
    assert_eq!(
        bob.publish(&a, &ids(0..limit + 10), &[]).await,
        (MAX_ONE_TIME, 3)
    );
    assert_eq!(
        b.left("bob").await.unwrap(),
        Left {
            one_time: MAX_ONE_TIME,
            pq_one_time: 3
        }
    );
    // A refused upload changes nothing.
    let mut forged = upload(&bob.identity, &ids(9000..9010), &[]);
    forged.signed_prekey.as_mut().unwrap().public_key = vec![3; 32].into();
    assert!(a.upload("bob", &bob.key(), forged).await.unwrap().is_err());
    assert_eq!(b.left("bob").await.unwrap().one_time, MAX_ONE_TIME);
    let h = b
        .take_bundle("bob", &bob.key(), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.bundle.signed_prekey.unwrap().public_key.as_ref(), [2; 32]);
}

on_both!(
    each_goes_out_once_then_the_last_resort_stays:
    local_each_goes_out_once_then_the_last_resort_stays,
    cluster_each_goes_out_once_then_the_last_resort_stays
);

on_both!(
    twenty_takes_at_once_hand_each_one_time_prekey_out_once:
    local_twenty_takes_at_once_hand_each_one_time_prekey_out_once,
    cluster_twenty_takes_at_once_on_two_nodes_hand_each_one_time_prekey_out_once
);

on_both!(
    an_upload_keeps_at_most_the_limit_and_skips_keys_held:
    local_an_upload_keeps_at_most_the_limit_and_skips_keys_held,
    cluster_an_upload_keeps_at_most_the_limit_and_skips_keys_held
);

async fn a_name_is_registered_once_of_twenty_at_once(backing: Backing) {
    let nodes = [backing.accounts(0).await, backing.accounts(1).await];
    assert!(!nodes[0].exists("carol").unwrap());
    assert!(nodes[1].get("carol").unwrap().is_none());
    // Several names, each raced for by twenty registrations over two nodes:
    // a race that one name's twenty may miss, several show.
    for name in ["carol", "dave", "erin", "frank", "grace"] {
        let tries: Vec<_> = (0..20u8)
            .map(|i| {
                let node = nodes[usize::from(i) % 2].clone();
                let key = SigningKey::from_bytes(&[i + 1; 32]).verifying_key();
                // Registration waits for the store in place, as on the relay:
                // each on a thread of its own, all twenty at once.
                tokio::task::spawn_blocking(move || (key, node.register(name, &key).unwrap()))
            })
            .collect();
        let mut winners = Vec::new();
        for attempt in tries {
            let (key, registered) = attempt.await.unwrap();
            if registered == Registration::Created {
                winners.push(key);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{name} was registered {} times",
            winners.len()
        );
        for node in &nodes {
            assert!(node.exists(name).unwrap());
            assert_eq!(
                node.get(name).unwrap().expect("registered").identity_key,
                winners[0],
                "every node knows {name} by the key that won"
            );
        }
    }
    assert!(!nodes[1].exists("carol2").unwrap());
}

on_both!(
    a_name_is_registered_once_of_twenty_at_once:
    local_a_name_is_registered_once_of_twenty_at_once,
    cluster_a_name_is_registered_once_of_twenty_at_once_on_two_nodes
);

async fn a_group_is_made_once_of_twenty_at_once(backing: Backing) {
    let nodes = [backing.groups(0).await, backing.groups(1).await];
    let tries: Vec<_> = (0..20u8)
        .map(|i| {
            let node = nodes[usize::from(i) % 2].clone();
            let creator = format!("user{i}");
            tokio::task::spawn_blocking(move || node.create("team", &creator, &["zoe".into()]))
        })
        .collect();
    let mut made = Vec::new();
    for attempt in tries {
        if let Some(group) = attempt.await.unwrap().unwrap() {
            made.push(group);
        }
    }
    assert_eq!(made.len(), 1, "the group was made {} times", made.len());
    for node in &nodes {
        assert_eq!(node.get("team").unwrap().as_ref(), Some(&made[0]));
    }
    assert!(nodes[0].get("other").unwrap().is_none());
}

on_both!(
    a_group_is_made_once_of_twenty_at_once:
    local_a_group_is_made_once_of_twenty_at_once,
    cluster_a_group_is_made_once_of_twenty_at_once_on_two_nodes
);

/// The secret queue, as the relay's handlers use it, on either backing.
trait Queue: Send + Sync {
    fn enqueue(&self, new: NewSecret) -> Queued;
    /// Several at once, as the relay's writer hands them over.
    fn enqueue_all(&self, new: Vec<NewSecret>) -> Vec<Queued>;
    fn pending(&self, user: &str, limit: usize) -> (Vec<v1::SecretEnvelope>, bool);
    fn acknowledge(&self, user: &str, ids: &[u64]) -> usize;
    fn enqueue_group(&self, new: NewGroupSecret) -> GroupQueued;
}

macro_rules! queue_on {
    ($t:ty) => {
        impl Queue for $t {
            fn enqueue(&self, new: NewSecret) -> Queued {
                self.enqueue_many(vec![new]).pop().unwrap().expect("queued")
            }
            fn enqueue_all(&self, new: Vec<NewSecret>) -> Vec<Queued> {
                self.enqueue_many(new)
                    .into_iter()
                    .map(|q| q.expect("queued"))
                    .collect()
            }
            fn pending(&self, user: &str, limit: usize) -> (Vec<v1::SecretEnvelope>, bool) {
                <$t>::pending(self, user, limit).expect("read")
            }
            fn acknowledge(&self, user: &str, ids: &[u64]) -> usize {
                <$t>::acknowledge(self, user, ids).expect("deleted")
            }
            fn enqueue_group(&self, new: NewGroupSecret) -> GroupQueued {
                <$t>::enqueue_group(self, new).expect("queued")
            }
        }
    };
}
queue_on!(SecretQueue);
queue_on!(ClusterSecretQueue);

fn secret(from: &str, to: &str, client_id: u8, text: &str) -> NewSecret {
    NewSecret {
        from: from.into(),
        to: to.into(),
        client_id: [client_id; 16],
        ciphertext: text.as_bytes().to_vec(),
        ttl_ms: 3_600_000,
    }
}

fn new_id(queued: Queued) -> u64 {
    match queued {
        Queued::New(envelope) => envelope.id,
        Queued::Duplicate(_) => panic!("queued as a duplicate"),
        Queued::Full(full) => panic!("refused as full: {full:?}"),
    }
}

fn texts(envelopes: &[v1::SecretEnvelope]) -> Vec<String> {
    envelopes
        .iter()
        .map(|e| String::from_utf8_lossy(&e.ciphertext).into_owned())
        .collect()
}

async fn an_envelope_waits_for_its_recipient_alone_until_acknowledged(backing: Backing) {
    let (a, b) = (
        backing.secret_queue(0, 100).await,
        backing.secret_queue(1, 100).await,
    );
    let first = new_id(a.enqueue(secret("alice", "bob", 1, "one")));
    let to_carol = new_id(b.enqueue(secret("alice", "carol", 2, "for carol")));
    let second = new_id(b.enqueue(secret("alice", "bob", 3, "two")));
    let third = new_id(a.enqueue(secret("dave", "bob", 1, "three")));
    // Ids are bob's own: none repeats (they are not a relay-wide count).
    assert_eq!(HashSet::from([first, second, third]).len(), 3);
    let (waiting, more) = b.pending("bob", 10);
    assert_eq!(texts(&waiting), ["one", "two", "three"]);
    assert_eq!(waiting[2].from, "dave");
    assert!(!more);
    let (two, more) = a.pending("bob", 2);
    assert_eq!(
        (texts(&two), more),
        (vec!["one".into(), "two".into()], true)
    );
    // Nobody else acknowledges bob's envelopes, not even with their ids.
    let not_carols: Vec<u64> = [first, second, third]
        .into_iter()
        .filter(|id| *id != to_carol)
        .collect();
    assert_eq!(a.acknowledge("carol", &not_carols), 0);
    assert_eq!(b.pending("bob", 10).0.len(), 3);
    assert_eq!(b.acknowledge("bob", &[first, third, 999_999]), 2);
    assert_eq!(texts(&a.pending("bob", 10).0), ["two"]);
    assert_eq!(a.acknowledge("bob", &[first]), 0, "acknowledged twice");
    assert_eq!(texts(&a.pending("carol", 10).0), ["for carol"]);
    assert_eq!(a.pending("carol", 10).0[0].id, to_carol);
}

async fn a_retry_is_queued_once_and_a_full_queue_refuses(backing: Backing) {
    let (a, b) = (
        backing.secret_queue(0, 3).await,
        backing.secret_queue(1, 3).await,
    );
    let id = new_id(a.enqueue(secret("alice", "bob", 7, "once")));
    // The sender retries on another node (the answer was lost).
    match b.enqueue(secret("alice", "bob", 7, "once")) {
        Queued::Duplicate(again) => assert_eq!(again, id),
        _ => panic!("a retry was queued again"),
    }
    // A retry in the same batch as its first attempt: queued once.
    let both = b.enqueue_all(vec![
        secret("dave", "bob", 5, "twice in a batch"),
        secret("dave", "bob", 5, "twice in a batch"),
    ]);
    let ids: Vec<u64> = both
        .iter()
        .map(|q| match q {
            Queued::New(e) => e.id,
            Queued::Duplicate(id) => *id,
            Queued::Full(full) => panic!("full: {full:?}"),
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        both.iter().filter(|q| matches!(q, Queued::New(_))).count(),
        1,
        "a retry in the same batch was queued twice"
    );
    assert_eq!(a.acknowledge("bob", &[ids[0]]), 1);
    // The same client id to someone else: the first send stands, and
    // nothing is queued for them (nor is a quota passed that way).
    assert!(matches!(
        a.enqueue(secret("alice", "erin", 7, "once")),
        Queued::Duplicate(again) if again == id
    ));
    assert!(b.pending("erin", 10).0.is_empty());
    // The same client id from someone else is their own message.
    new_id(b.enqueue(secret("carol", "bob", 7, "carol's")));
    new_id(a.enqueue(secret("alice", "bob", 8, "third")));
    assert!(matches!(
        b.enqueue(secret("alice", "bob", 9, "fourth")),
        Queued::Full(Full::Recipient)
    ));
    assert_eq!(texts(&a.pending("bob", 10).0), ["once", "carol's", "third"]);
}

async fn twenty_sends_at_once_get_twenty_ids(backing: Backing) {
    let nodes = [
        backing.secret_queue(0, 100).await,
        backing.secret_queue(1, 100).await,
    ];
    let sends: Vec<_> = (0..20u8)
        .map(|i| {
            let node = nodes[usize::from(i) % 2].clone();
            tokio::spawn(async move { new_id(node.enqueue(secret("alice", "bob", i, "x"))) })
        })
        .collect();
    let mut ids = HashSet::new();
    for send in sends {
        let id = send.await.unwrap();
        assert!(ids.insert(id), "id {id} was given twice: {ids:?}");
    }
    let waiting = nodes[1].pending("bob", 100).0;
    assert_eq!(waiting.len(), 20);
    assert_eq!(waiting.iter().map(|e| e.id).collect::<HashSet<_>>(), ids);
}

async fn one_sender_cannot_fill_a_recipients_queue(backing: Backing) {
    let (a, b) = (
        backing.secret_queue_with(0, 100, 2).await,
        backing.secret_queue_with(1, 100, 2).await,
    );
    new_id(a.enqueue(secret("mallory", "bob", 1, "one")));
    new_id(b.enqueue(secret("mallory", "bob", 2, "two")));
    // At either node, the third from mallory to bob is refused.
    for node in [&a, &b] {
        assert!(matches!(
            node.enqueue(secret("mallory", "bob", 3, "three")),
            Queued::Full(Full::FromSender)
        ));
    }
    // Others still reach bob, and mallory others.
    new_id(a.enqueue(secret("alice", "bob", 3, "from alice")));
    new_id(b.enqueue(secret("mallory", "carol", 3, "to carol")));
    assert_eq!(texts(&b.pending("bob", 10).0), ["one", "two", "from alice"]);
    // Once bob took one, mallory may send one more.
    let first = a.pending("bob", 1).0[0].id;
    assert_eq!(b.acknowledge("bob", &[first]), 1);
    new_id(a.enqueue(secret("mallory", "bob", 4, "four")));
}

fn group_message(to: &[&str], client_id: u8, text: &str) -> NewGroupSecret {
    NewGroupSecret {
        from: "alice".into(),
        group: b"opaque group id".to_vec(),
        recipients: to.iter().map(|t| t.to_string()).collect(),
        client_id: [client_id; 16],
        ciphertext: text.as_bytes().to_vec(),
        ttl_ms: 3_600_000,
    }
}

async fn a_group_message_reaches_every_recipient_once_or_nobody(backing: Backing) {
    let (a, b) = (
        backing.secret_queue_with(0, 3, 2).await,
        backing.secret_queue_with(1, 3, 2).await,
    );
    let GroupQueued::New(queued) = a.enqueue_group(group_message(&["bob", "carol"], 1, "hi all"))
    else {
        panic!("the group message was not queued");
    };
    let to: Vec<&str> = queued.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(to, ["bob", "carol"]);
    for user in ["bob", "carol"] {
        let (waiting, _) = b.pending(user, 10);
        assert_eq!(texts(&waiting), ["hi all"], "{user}");
        assert_eq!(waiting[0].group.as_ref(), b"opaque group id");
        assert_eq!(waiting[0].from, "alice");
    }
    // A retry at the other node: queued for nobody again.
    assert!(matches!(
        b.enqueue_group(group_message(&["bob", "carol"], 1, "hi all")),
        GroupQueued::Duplicate
    ));
    // Carol's queue fills up: the next message is refused, for bob too.
    new_id(b.enqueue(secret("dave", "carol", 1, "d1")));
    new_id(b.enqueue(secret("dave", "carol", 2, "d2")));
    assert!(matches!(
        a.enqueue_group(group_message(&["bob", "carol"], 2, "second")),
        GroupQueued::Full(Full::Recipient, who) if who == "carol"
    ));
    assert_eq!(texts(&b.pending("bob", 10).0), ["hi all"]);
    // Bob's acknowledgement takes his copy only.
    let bobs = a.pending("bob", 10).0[0].id;
    assert_eq!(b.acknowledge("bob", &[bobs]), 1);
    assert!(a.pending("bob", 10).0.is_empty());
    assert_eq!(texts(&a.pending("carol", 10).0), ["hi all", "d1", "d2"]);
    // Alice's own quota at bob (two waiting from her) holds for a group
    // message too: for erin neither.
    new_id(a.enqueue(secret("alice", "bob", 21, "a1")));
    new_id(b.enqueue(secret("alice", "bob", 22, "a2")));
    assert!(matches!(
        b.enqueue_group(group_message(&["erin", "bob"], 3, "third")),
        GroupQueued::Full(Full::FromSender, who) if who == "bob"
    ));
    assert!(a.pending("erin", 10).0.is_empty());
}

on_both!(
    one_sender_cannot_fill_a_recipients_queue:
    local_one_sender_cannot_fill_a_recipients_queue,
    cluster_one_sender_cannot_fill_a_recipients_queue_at_any_node
);

on_both!(
    a_group_message_reaches_every_recipient_once_or_nobody:
    local_a_group_message_reaches_every_recipient_once_or_nobody,
    cluster_a_group_message_reaches_every_recipient_once_or_nobody
);

on_both!(
    an_envelope_waits_for_its_recipient_alone_until_acknowledged:
    local_an_envelope_waits_for_its_recipient_alone_until_acknowledged,
    cluster_an_envelope_waits_for_its_recipient_alone_until_acknowledged
);

on_both!(
    a_retry_is_queued_once_and_a_full_queue_refuses:
    local_a_retry_is_queued_once_and_a_full_queue_refuses,
    cluster_a_retry_is_queued_once_and_a_full_queue_refuses
);

on_both!(
    twenty_sends_at_once_get_twenty_ids:
    local_twenty_sends_at_once_get_twenty_ids,
    cluster_twenty_sends_at_once_on_two_nodes_get_twenty_ids
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_envelope_is_gone_from_the_cluster_and_never_was_readable() {
    let backing = Backing::cluster();
    let queue = backing.secret_queue(0, 100).await;
    let id = new_id(queue.enqueue(secret("alice", "bob", 1, "CIPHERTEXT-FROM-ALICE")));
    let Backing::Cluster { cluster, .. } = &backing else {
        unreachable!()
    };
    let js = operator(cluster).await;
    let seen = raw_messages(&js, SECRET).await;
    assert_eq!(seen.len(), 1);
    for (subject, payload) in &seen {
        for clear in [&b"CIPHERTEXT-FROM-ALICE"[..], b"alice", b"bob"] {
            assert!(!contains(subject.as_bytes(), clear) && !contains(payload, clear));
        }
    }
    let stream = js.get_stream(SECRET).await.unwrap();
    let seq = stream.get_info().await.unwrap().state.last_sequence;
    assert!(stream.get_raw_message(seq).await.is_ok());
    assert_eq!(queue.acknowledge("bob", &[id]), 1);
    assert_eq!(
        stream.get_info().await.unwrap().state.messages,
        0,
        "the stream still holds an acknowledged envelope"
    );
    let gone = stream.get_raw_message(seq).await;
    assert!(
        gone.as_ref()
            .is_err_and(|e| format!("{e:?}").contains("NoMessageFound")),
        "{:?}",
        gone.map(|m| m.sequence)
    );
    assert_eq!(queue.acknowledge("bob", &[id]), 0, "acknowledged twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_queue_kept_past_the_time_to_live_is_set_back() {
    // Made by hand to keep envelopes forever: a relay node sets it back to
    // the relay's time-to-live when it opens the queue.
    let backing = Backing::cluster();
    let Backing::Cluster { cluster, .. } = &backing else {
        unreachable!()
    };
    let js = operator(cluster).await;
    js.create_stream(jetstream::stream::Config {
        name: SECRET.into(),
        subjects: vec!["secret.>".into()],
        max_messages_per_subject: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    backing.secret_queue(0, 100).await;
    let config = js
        .get_stream(SECRET)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(config.max_age, Duration::from_secs(3600));
    assert!(
        config.max_messages > 0 && config.max_bytes > 0,
        "{config:?}"
    );
}

/// The normal archive, as the relay's handlers and the warrant desk use it.
trait Archive: Send + Sync {
    fn append(&self, msg: NewNormal) -> Appended;
    fn inbox(&self, user: &str, limit: usize) -> (Vec<InboxEntry>, bool);
    fn ack(&self, user: &str, upto: u64);
    /// Through the warrant desk's view.
    fn records_of(&self, user: &str, from_ms: i64, until_ms: i64) -> Vec<NormalRecord>;
}

struct LocalArchive(Arc<NormalArchive>);

impl Archive for LocalArchive {
    fn append(&self, msg: NewNormal) -> Appended {
        self.0
            .append_many(vec![msg])
            .pop()
            .unwrap()
            .expect("stored")
    }
    fn inbox(&self, user: &str, limit: usize) -> (Vec<InboxEntry>, bool) {
        self.0.inbox(user, limit).expect("read")
    }
    fn ack(&self, user: &str, upto: u64) {
        self.0.ack(user, upto).expect("acknowledged")
    }
    fn records_of(&self, user: &str, from_ms: i64, until_ms: i64) -> Vec<NormalRecord> {
        self.0
            .reader()
            .records_of(user, from_ms, until_ms)
            .expect("read")
    }
}

impl Archive for (ClusterArchive, ClusterArchiveReader) {
    fn append(&self, msg: NewNormal) -> Appended {
        self.0
            .append_many(vec![msg])
            .pop()
            .unwrap()
            .expect("stored")
    }
    fn inbox(&self, user: &str, limit: usize) -> (Vec<InboxEntry>, bool) {
        self.0.inbox(user, limit).expect("read")
    }
    fn ack(&self, user: &str, upto: u64) {
        self.0.ack(user, upto).expect("acknowledged")
    }
    fn records_of(&self, user: &str, from_ms: i64, until_ms: i64) -> Vec<NormalRecord> {
        self.1.records_of(user, from_ms, until_ms).expect("read")
    }
}

fn normal(from: &str, to: Destination, client_id: u8, text: &str) -> NewNormal {
    NewNormal {
        from: from.into(),
        to,
        text: text.into(),
        client_id: [client_id; 16],
    }
}

fn dm(to: &str) -> Destination {
    Destination::User(to.into())
}

fn stored(appended: Appended) -> NormalRecord {
    match appended {
        Appended::New { record, .. } => record,
        Appended::Duplicate(_) => panic!("stored as a duplicate"),
    }
}

fn inbox_texts(entries: &[InboxEntry]) -> Vec<String> {
    entries.iter().map(|e| e.record.text.clone()).collect()
}

async fn a_message_reaches_each_inbox_once_and_stays_gone_once_acknowledged(backing: Backing) {
    let (a, b) = (backing.archive(0).await, backing.archive(1).await);
    let team = GroupRecord {
        name: "team".into(),
        members: vec!["alice".into(), "bob".into(), "carol".into()],
        created_by: "carol".into(),
        created_at: 1,
    };
    let hi = stored(a.append(normal("alice", dm("bob"), 1, "hi bob")));
    let back = stored(b.append(normal("bob", dm("alice"), 1, "hi alice")));
    let standup = match b.append(normal("carol", Destination::Group(team), 1, "standup")) {
        Appended::New { record, recipients } => {
            assert_eq!(recipients.len(), 2, "{recipients:?}");
            assert!(
                recipients.contains(&"alice".to_owned()) && recipients.contains(&"bob".to_owned())
            );
            record
        }
        Appended::Duplicate(_) => panic!("a new message taken for a retry"),
    };
    assert_eq!(HashSet::from([hi.id, back.id, standup.id]).len(), 3);
    assert_eq!(
        hi.conversation, back.conversation,
        "one conversation, both ways"
    );
    // Each sees what others sent them, on either node, never their own.
    let (bobs, more) = a.inbox("bob", 10);
    assert_eq!(
        (inbox_texts(&bobs), more),
        (vec!["hi bob".into(), "standup".into()], false)
    );
    assert_eq!(bobs[0].record.id, hi.id);
    assert_eq!(bobs[1].record.from, "carol");
    assert_eq!(
        inbox_texts(&b.inbox("alice", 10).0),
        ["hi alice", "standup"]
    );
    assert!(
        b.inbox("carol", 10).0.is_empty(),
        "carol sent, and got nothing"
    );
    let (first, more) = b.inbox("bob", 1);
    assert_eq!((inbox_texts(&first), more), (vec!["hi bob".into()], true));
    // Acknowledged on one node, gone on the other; what came after stays.
    b.ack("bob", bobs[0].seq);
    assert_eq!(inbox_texts(&a.inbox("bob", 10).0), ["standup"]);
    a.ack("bob", bobs[1].seq);
    assert!(b.inbox("bob", 10).0.is_empty());
    // A cursor never goes back.
    a.ack("bob", bobs[0].seq);
    assert!(b.inbox("bob", 10).0.is_empty());
    let later = stored(a.append(normal("alice", dm("bob"), 2, "later")));
    assert_eq!(inbox_texts(&b.inbox("bob", 10).0), ["later"]);
    assert_eq!(b.inbox("bob", 10).0[0].record.id, later.id);
}

async fn a_retry_is_stored_once_and_the_desk_reads_a_window(backing: Backing) {
    let (a, b) = (backing.archive(0).await, backing.archive(1).await);
    let before = sotto_server::now_ms();
    let first = stored(a.append(normal("alice", dm("bob"), 9, "once")));
    match b.append(normal("alice", dm("bob"), 9, "once")) {
        Appended::Duplicate(receipt) => {
            assert_eq!((receipt.id, receipt.sent_at), (first.id, first.sent_at));
        }
        Appended::New { .. } => panic!("a retry was stored again"),
    }
    stored(b.append(normal("carol", dm("dave"), 9, "not alice's")));
    stored(a.append(normal("bob", dm("alice"), 3, "reply")));
    assert_eq!(inbox_texts(&a.inbox("bob", 10).0), ["once"]);
    let after = sotto_server::now_ms() + 1;
    let alices: Vec<String> = b
        .records_of("alice", before, after)
        .into_iter()
        .map(|r| r.text)
        .collect();
    assert_eq!(alices, ["once", "reply"]);
    assert!(a.records_of("alice", after, after + 60_000).is_empty());
    assert!(a.records_of("alice", before - 60_000, before).is_empty());
}

on_both!(
    a_message_reaches_each_inbox_once_and_stays_gone_once_acknowledged:
    local_a_message_reaches_each_inbox_once_and_stays_gone_once_acknowledged,
    cluster_a_message_reaches_each_inbox_once_and_stays_gone_once_acknowledged
);

on_both!(
    a_retry_is_stored_once_and_the_desk_reads_a_window:
    local_a_retry_is_stored_once_and_the_desk_reads_a_window,
    cluster_a_retry_is_stored_once_and_the_desk_reads_a_window
);

/// Every raw message of `stream`, as the cluster's operator reads it.
async fn raw_messages(js: &jetstream::Context, stream: &str) -> Vec<(String, Vec<u8>)> {
    let stream = js.get_stream(stream).await.unwrap();
    let last = stream.get_info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push((m.subject.to_string(), m.payload.to_vec()));
        }
    }
    out
}

async fn operator(cluster: &NatsCluster) -> jetstream::Context {
    let client = async_nats::ConnectOptions::with_user_and_password(
        RELAY_USER.into(),
        RELAY_PASSWORD.into(),
    )
    .connect(cluster.urls())
    .await
    .unwrap();
    jetstream::new(client)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_operator_reads_neither_a_key_nor_a_name() {
    let backing = Backing::cluster();
    let bob = Bob::new();
    let node = backing.node(0).await;
    bob.publish(&node, &ids(1..4), &ids(1..4)).await;
    let registered = backing.accounts(1).await.register("bob", &bob.key());
    assert_eq!(registered.unwrap(), Registration::Created);
    let Backing::Cluster { cluster, .. } = &backing else {
        unreachable!()
    };
    let js = operator(cluster).await;
    let mut seen = raw_messages(&js, PREKEYS).await;
    seen.extend(raw_messages(&js, "KV_prekey_sets").await);
    seen.extend(raw_messages(&js, ACCOUNTS).await);
    assert_eq!(seen.len(), 8, "six one-time prekeys, bob's set and account");
    for (subject, payload) in &seen {
        assert!(!subject.contains("bob"), "{subject} names bob");
        assert!(!contains(payload, b"bob"));
        for id in 1..4 {
            assert!(
                !contains(payload, &curve_key(id)),
                "a curve key in the clear"
            );
            assert!(
                !contains(payload, &pq_key_bytes(id)[..64]),
                "a PQ key in the clear"
            );
        }
        assert!(!contains(payload, &bob.key().to_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prekey_moved_to_another_users_subject_is_not_handed_out_as_theirs() {
    let backing = Backing::cluster();
    let bob = Bob::new();
    let node = backing.node(0).await;
    bob.publish(&node, &ids(1..2), &[]).await;
    // Carol publishes too, and has none left; the operator copies bob's
    // one-time prekey record onto carol's curve subject, under the same id.
    let carol = SigningKey::from_bytes(&[7; 32]);
    node.upload("carol", &carol.verifying_key(), upload(&carol, &[], &[]))
        .await
        .unwrap()
        .unwrap();
    let Backing::Cluster { cluster, .. } = &backing else {
        unreachable!()
    };
    let js = operator(cluster).await;
    let (bobs_subject, record) = raw_messages(&js, PREKEYS)
        .await
        .into_iter()
        .find(|(s, _)| s.ends_with(".c.1"))
        .expect("bob's curve prekey 1");
    // carol's token: publish one of her own and read its subject.
    node.upload("carol", &carol.verifying_key(), upload(&carol, &[77], &[]))
        .await
        .unwrap()
        .unwrap();
    let carols_subject = raw_messages(&js, PREKEYS)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .find(|s| s.ends_with(".c.77"))
        .expect("carol's curve prekey 77");
    assert_ne!(bobs_subject, carols_subject);
    let moved = carols_subject.replace(".c.77", ".c.1");
    js.publish(moved, record.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Carol's oldest is 77, then the moved one: 77 goes out, the moved one
    // does not open as hers.
    let h = node
        .take_bundle("carol", &carol.verifying_key(), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.bundle.one_time.unwrap().id, 77);
    let refused = node
        .take_bundle("carol", &carol.verifying_key(), true)
        .await;
    assert!(
        refused.is_err(),
        "bob's prekey was handed out as carol's: {:?}",
        refused.map(|h| h.map(|h| h.bundle.one_time))
    );
    // Bob's own is still his.
    let h = node
        .take_bundle("bob", &bob.key(), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.bundle.one_time.unwrap().public_key.as_ref(), curve_key(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_stream_that_would_take_a_second_message_is_refused() {
    // Made by hand (or by a server that dropped the setting): a stream
    // that keeps the last message of a subject, so a second create would
    // replace the first account instead of being refused.
    let backing = Backing::cluster();
    let Backing::Cluster { cluster, .. } = &backing else {
        unreachable!()
    };
    operator(cluster)
        .await
        .create_stream(jetstream::stream::Config {
            name: ACCOUNTS.into(),
            subjects: vec!["accounts.*".into()],
            max_messages_per_subject: 1,
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = ClusterRecords::open(&Backing::connect(cluster, 0).await, ACCOUNTS).await;
    let Err(e) = refused else {
        panic!("the relay took a stream that lets a record be created twice")
    };
    assert!(e.to_string().contains("discard_new_per_subject"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_operator_reads_no_normal_message_nor_who_wrote_to_whom() {
    let backing = Backing::cluster();
    let archive = backing.archive(0).await;
    stored(archive.append(normal("alice", dm("bob"), 1, "MEET-AT-NOON")));
    stored(archive.append(normal("alice", dm("carol"), 2, "MEET-AT-ONE")));
    archive.ack("bob", u64::MAX);
    let Backing::Cluster { cluster, .. } = &backing else {
        unreachable!()
    };
    let js = operator(cluster).await;
    let mut seen = raw_messages(&js, HIST).await;
    assert_eq!(seen.len(), 4, "two copies of each message");
    seen.extend(raw_messages(&js, "KV_cursors").await);
    for (subject, payload) in &seen {
        for clear in [&b"MEET-AT"[..], b"alice", b"bob", b"carol"] {
            assert!(!contains(subject.as_bytes(), clear) && !contains(payload, clear));
        }
    }
    // Tokens, not names: alice's two copies share hers, bob's and carol's
    // are their own; and no two copies share a conversation token, so the
    // operator cannot match alice's copy of a conversation to bob's.
    let token = |n: usize| -> HashSet<&str> {
        seen[..4]
            .iter()
            .map(|(s, _)| s.split('.').nth(n).unwrap())
            .collect()
    };
    assert_eq!(token(1).len(), 3, "three people");
    assert_eq!(token(2).len(), 4, "a conversation token matched two copies");
}
