//! What `db/` tells someone who has the disk but not the master key: a
//! curious operator, a thief, a backup that leaked. They open the store with
//! its engine (fjall or sled) directly and read every key and value of every
//! tree. They must find no message id, no time, no name, no relation between
//! two people, and no record size finer than its 256-byte bucket.
//!
//! Each tree's keys and values are decoded as far as anyone without the key
//! can; a shape this test does not know fails it, so a new index written in
//! clear cannot slip in unnoticed.

use std::collections::{BTreeMap, HashSet};

use prost::Message;
use sotto_client::relay::Recipient;
use sotto_server::RelayConfig;
use sotto_server::config::StoreKind;
use sotto_server::records::SegmentRecord;
use sotto_server::store::Tree;
use sotto_tests::TestRelay;

/// XChaCha20-Poly1305 as the relay seals: a 24-byte nonce and a 16-byte tag.
const SEAL_OVERHEAD: usize = 40;
const BUCKET: usize = 256;
/// Names long enough that random bytes never spell one by chance.
const NAMES: [&str; 5] = ["alicebeth", "bobbyjoe", "carolina", "davidson", "teamwork"];

/// What the traffic was: everything an observer must not learn.
#[derive(Default)]
struct Secrets {
    /// Normal message ids (time-ordered, so also times).
    ids: Vec<u64>,
    /// Send times in milliseconds.
    times: Vec<i64>,
    texts: Vec<String>,
    /// The window of wall-clock time the traffic ran in.
    from_ms: i64,
    until_ms: i64,
}

async fn traffic(relay: &TestRelay) -> Secrets {
    let mut secrets = Secrets {
        from_ms: sotto_server::now_ms(),
        ..Secrets::default()
    };
    let alice = relay.register(NAMES[0]).await;
    let bob = relay.register(NAMES[1]).await;
    let carol = relay.register(NAMES[2]).await;
    let _dave = relay.register(NAMES[3]).await;
    // bob publishes prekeys of both kinds, and alice takes one bundle: the
    // prekey set and the one-time ML-KEM-1024 prekeys' own records are written.
    let mut prekeys = sotto_client::e2e::LocalPrekeys::default();
    prekeys.rotate_signed(&bob.identity, 0);
    let one_time = prekeys.generate_one_time(5);
    let pq_one_time = prekeys.generate_pq_one_time(&bob.identity, 5);
    let upload = prekeys
        .upload(&bob.identity, one_time, pq_one_time)
        .unwrap();
    bob.client.upload_prekeys(upload).await.unwrap();
    alice.client.fetch_bundle(NAMES[1]).await.unwrap();
    alice
        .client
        .create_group(NAMES[4], &[NAMES[1].into(), NAMES[2].into()])
        .await
        .unwrap();
    let mut n = 0u8;
    let mut client_id = || {
        n += 1;
        [n; 16]
    };
    for i in 0..40 {
        // Sizes from a few bytes to a few KiB, so that sizes would show.
        let text = format!("secret-plan-{i}-{}", "x".repeat(i * 97));
        let (who, to) = match i % 3 {
            0 => (&alice, Recipient::User(NAMES[1])),
            1 => (&bob, Recipient::User(NAMES[0])),
            _ => (&alice, Recipient::Group(NAMES[4])),
        };
        let stored = who
            .client
            .send_normal(to, &text, client_id())
            .await
            .unwrap();
        secrets.ids.push(stored.id);
        secrets.times.push(stored.sent_at);
        secrets.texts.push(text);
        let ciphertext = vec![i as u8; 30 + i * 53];
        alice
            .client
            .send_secret(NAMES[1], ciphertext, client_id())
            .await
            .unwrap();
    }
    // bob reads part of his inbox and part of his secret queue; carol all of hers.
    let batch = bob.client.fetch(10).await.unwrap();
    let upto = batch.normal.iter().map(|m| m.id).max().unwrap();
    let secret: Vec<u64> = batch.secret.iter().map(|e| e.id).take(5).collect();
    bob.client.ack(upto, secret).await.unwrap();
    let batch = carol.client.fetch(100).await.unwrap();
    let upto = batch.normal.iter().map(|m| m.id).max().unwrap();
    carol.client.ack(upto, Vec::new()).await.unwrap();
    secrets.until_ms = sotto_server::now_ms() + 1;
    secrets
}

type Dump = BTreeMap<&'static str, Vec<(Vec<u8>, Vec<u8>)>>;

fn dump_fjall(db: &std::path::Path) -> Dump {
    let database = fjall::Database::builder(db).open().unwrap();
    Tree::ALL
        .iter()
        .map(|tree| {
            let keyspace = database
                .keyspace(tree.name(), fjall::KeyspaceCreateOptions::default)
                .unwrap();
            let entries = keyspace
                .iter()
                .map(|guard| {
                    let (k, v) = guard.into_inner().unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect();
            (tree.name(), entries)
        })
        .collect()
}

fn dump_sled(db: &std::path::Path) -> Dump {
    let database = sled::open(db).unwrap();
    for name in database.tree_names() {
        let known =
            name == b"__sled__default" || Tree::ALL.iter().any(|t| *name == *t.name().as_bytes());
        assert!(
            known,
            "an unknown tree {:?}",
            String::from_utf8_lossy(&name)
        );
    }
    Tree::ALL
        .iter()
        .map(|tree| {
            let entries = database
                .open_tree(tree.name())
                .unwrap()
                .iter()
                .map(|e| {
                    let (k, v) = e.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect();
            (tree.name(), entries)
        })
        .collect()
}

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(v, &mut out);
    out
}

/// Every way a number is commonly written down.
fn encodings(v: u64) -> Vec<Vec<u8>> {
    vec![
        v.to_be_bytes().to_vec(),
        v.to_le_bytes().to_vec(),
        v.to_be_bytes()[2..].to_vec(),
        varint(v),
        v.to_string().into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A padded sealed value: its size says only its bucket.
fn padded(what: &str, value: &[u8]) {
    assert!(
        value.len() >= SEAL_OVERHEAD + BUCKET
            && (value.len() - SEAL_OVERHEAD).is_multiple_of(BUCKET),
        "{what}: a value of {} bytes is not a whole number of {BUCKET}-byte buckets",
        value.len()
    );
}

fn check(dump: &Dump, secrets: &Secrets) {
    // What anyone can read: the keys of the accounts tree are the blinds of
    // the users; nothing else may carry them, and no key may pair two.
    let users: HashSet<Vec<u8>> = dump["accounts"].iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(users.len(), 4, "the four accounts");
    assert!(users.iter().all(|b| b.len() == 16));

    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for id in &secrets.ids {
        needles.extend(
            encodings(*id)
                .into_iter()
                .map(|e| (format!("message id {id}"), e)),
        );
    }
    for t in &secrets.times {
        needles.extend(
            encodings(*t as u64)
                .into_iter()
                .map(|e| (format!("send time {t}"), e)),
        );
    }
    for text in &secrets.texts {
        needles.push((format!("text {:.20}", text), text.as_bytes()[..14].to_vec()));
    }
    for name in NAMES {
        needles.push((format!("name {name}"), name.as_bytes().to_vec()));
    }
    let time_like = |w: &[u8]| {
        let v = u64::from_be_bytes(w.try_into().unwrap());
        let (from, until) = (secrets.from_ms as u64, secrets.until_ms as u64);
        (from..until).contains(&v) || ((from << 16)..(until << 16)).contains(&v)
    };

    let mut sizes_seen = HashSet::new();
    for (tree, entries) in dump {
        for (key, value) in entries {
            let at = format!("{tree} {}", hex::encode(key));
            for (what, needle) in &needles {
                assert!(!contains(key, needle), "{at}: the key holds the {what}");
                assert!(!contains(value, needle), "{at}: the value holds the {what}");
            }
            assert!(
                !key.windows(8).any(time_like),
                "{at}: the key holds a time or a message id of the traffic"
            );
            for user in &users {
                assert!(!contains(value, user), "{at}: a value holds a user's blind");
                if key != user {
                    assert!(
                        !contains(key, user),
                        "{at}: a key holds a user's blind and more"
                    );
                }
            }
            match *tree {
                // The account's key is the user's blind; every other record of
                // theirs is under a key of its own per tree, which nothing links.
                "accounts" => {
                    assert!(users.contains(key), "{at}: not a user's blind");
                    padded(&at, value);
                    sizes_seen.insert(value.len());
                }
                // bob's prekey set, and each one-time PQ prekey on its own.
                "prekeys" => {
                    assert_eq!(key.len(), 16, "{at}");
                    padded(&at, value);
                    sizes_seen.insert(value.len());
                }
                "secret_counters" => {
                    assert_eq!(key.len(), 16, "{at}");
                    assert_eq!(value.len(), SEAL_OVERHEAD + 8, "{at}: a sealed counter");
                }
                "inbox" => {
                    assert_eq!(key.len(), 16, "{at}");
                    assert_eq!(value.len(), SEAL_OVERHEAD + 8, "{at}: a sealed cursor");
                }
                "client_ids" => {
                    assert_eq!(key.len(), 16, "{at}");
                    padded(&at, value);
                }
                "groups" => {
                    assert_eq!(key.len(), 16, "{at}");
                    padded(&at, value);
                }
                // Directories and chunks of postings alike.
                "by_participant" => {
                    assert_eq!(key.len(), 16, "{at}");
                    padded(&at, value);
                }
                "secret_queue" => {
                    assert_eq!(key.len(), 16, "{at}");
                    padded(&at, value);
                    sizes_seen.insert(value.len());
                }
                // Segment numbers: 1, 2, …, at most one per message.
                "messages" => {
                    let n = u64::from_be_bytes(key.as_slice().try_into().expect("8-byte key"));
                    assert!(
                        (1..=secrets.ids.len() as u64).contains(&n),
                        "{at}: not a segment number"
                    );
                    let segment = SegmentRecord::decode(value.as_slice()).unwrap();
                    for record in &segment.sealed {
                        padded(&at, record);
                        sizes_seen.insert(record.len());
                    }
                }
                "meta" => match key.as_slice() {
                    b"archive_format" => assert_eq!(value, &3u64.to_be_bytes()),
                    // A relay-wide count, once, when the first queue opened.
                    b"secret_id_base" | b"store_id_ceiling" => assert_eq!(value.len(), 8),
                    b"archive_checkpoint" => assert_eq!(value.len(), SEAL_OVERHEAD + 16),
                    b"data_key" | b"disclosure_key" | b"audit_key" => {
                        assert!(value.len() >= SEAL_OVERHEAD + 32)
                    }
                    // The transparency log's size, root and announced leaf: hashes only.
                    b"audit_anchor" => assert!(
                        [SEAL_OVERHEAD + 41, SEAL_OVERHEAD + 73].contains(&value.len()),
                        "{at}"
                    ),
                    other => panic!("meta: an unknown key {:?}", String::from_utf8_lossy(other)),
                },
                "warrants" => assert!(entries.is_empty(), "no warrant was served"),
                other => panic!("an unknown tree {other}"),
            }
        }
    }

    // The dump is the traffic's: every message is in a segment, the secret
    // queue holds what bob did not acknowledge, and the postings were written.
    let records: usize = dump["messages"]
        .iter()
        .map(|(_, v)| SegmentRecord::decode(v.as_slice()).unwrap().sealed.len())
        .sum();
    assert_eq!(records, secrets.ids.len());
    assert_eq!(dump["secret_queue"].len(), 40 - 5);
    assert_eq!(dump["inbox"].len(), 2, "bob's and carol's cursors");
    assert_eq!(
        dump["prekeys"].len(),
        1 + 4,
        "bob's set and the one-time PQ prekeys not handed out"
    );
    assert!(
        dump["by_participant"].len() >= 6,
        "three directories, their chunks"
    );
    // No key is in two trees (but the meta tree's names): nothing says which
    // records are one person's.
    let mut seen: std::collections::HashMap<&Vec<u8>, &str> = std::collections::HashMap::new();
    for (tree, entries) in dump.iter().filter(|(t, _)| **t != "meta") {
        for (key, _) in entries {
            if let Some(other) = seen.insert(key, tree) {
                panic!("{} is a key in {other} and in {tree}", hex::encode(key));
            }
        }
    }
    // Sizes from 30 bytes to 2 KiB fell into a few buckets only.
    assert!(sizes_seen.len() < 20, "{} distinct sizes", sizes_seen.len());
}

async fn run(store: StoreKind) {
    let mut relay = TestRelay::start_with(RelayConfig {
        store,
        ..RelayConfig::default()
    })
    .await;
    let secrets = traffic(&relay).await;
    // A clean stop also writes the last checkpoint: postings and windows.
    relay.stop().await;
    let db = relay.data_dir().join("db");
    let dump = match store {
        StoreKind::Sled => dump_sled(&db),
        _ => dump_fjall(&db),
    };
    check(&dump, &secrets);
}

#[tokio::test]
async fn a_fjall_db_read_without_the_master_key_shows_no_id_time_name_relation_or_size() {
    run(StoreKind::Fjall).await;
}

#[tokio::test]
async fn a_sled_db_read_without_the_master_key_shows_no_id_time_name_relation_or_size() {
    run(StoreKind::Sled).await;
}
