//! The one conformance suite every [`Store`] implementation must pass,
//! written once against the trait. An implementation adds one line to
//! `implementations` below.
//!
//! Durability is covered twice: here, a child process killed with SIGKILL in
//! the middle of a batch leaves no torn batch and loses nothing it flushed;
//! and `writer::tests` runs the relay's writer over [`super::PowerCut`], which
//! drops whatever no returned flush covered, at moments spread over a run.

use std::path::Path;
use std::sync::Arc;

use super::{Applied, Batch, Op, Store, Tree};

pub(crate) type Opener = fn(&Path) -> Arc<dyn Store>;

/// Every implementation, by name, with how to open one at a path.
pub(crate) fn implementations() -> Vec<(&'static str, Opener)> {
    vec![
        ("sled", |path| {
            Arc::new(super::SledStore::open(path).expect("the store opens"))
        }),
        ("fjall", |path| {
            Arc::new(super::FjallStore::open(path).expect("the store opens"))
        }),
    ]
}

/// Runs `check` on a fresh store of every implementation.
fn each(check: impl Fn(&str, &Path, Opener)) {
    for (name, open) in implementations() {
        let dir = tempfile::tempdir().unwrap();
        check(name, &dir.path().join("db"), open);
    }
}

#[test]
fn a_guarded_batch_writes_all_or_nothing() {
    each(|name, path, open| {
        let store = open(path);
        let mut batch = Batch::guarded(Tree::Warrants, b"g".to_vec(), b"first".to_vec());
        batch.put(Tree::Accounts, b"a".to_vec(), b"1".to_vec());
        batch.put(Tree::Groups, b"b".to_vec(), b"2".to_vec());
        assert_eq!(store.apply(batch).unwrap(), Applied::Written, "{name}");
        let mut again = Batch::guarded(Tree::Warrants, b"g".to_vec(), b"second".to_vec());
        again.put(Tree::Accounts, b"c".to_vec(), b"3".to_vec());
        assert_eq!(
            store.apply(again).unwrap(),
            Applied::GuardExists(b"first".to_vec()),
            "{name}"
        );
        assert_eq!(
            store.get(Tree::Accounts, b"c").unwrap(),
            None,
            "{name}: nothing written"
        );
        assert_eq!(store.get(Tree::Groups, b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(
            store.get(Tree::Warrants, b"g").unwrap(),
            Some(b"first".to_vec())
        );
    });
}

#[test]
fn ranges_are_ordered_bounded_and_half_open() {
    each(|name, path, open| {
        let store = open(path);
        let ops = (0u8..20)
            .rev()
            .map(|i| Op::Put(Tree::Messages, vec![i], vec![i]))
            .collect();
        store.apply_each(ops).unwrap();
        let got = store.range(Tree::Messages, &[5], &[15], 100).unwrap();
        let keys: Vec<u8> = got.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, (5..15).collect::<Vec<u8>>(), "{name}");
        assert_eq!(
            store.range(Tree::Messages, &[0], &[20], 3).unwrap().len(),
            3
        );
        assert_eq!(
            store.last(Tree::Messages, &[0], &[15]).unwrap(),
            Some((vec![14], vec![14])),
            "{name}"
        );
        assert_eq!(store.last(Tree::Inbox, &[0], &[255]).unwrap(), None);
        // Another tree is another key space.
        assert_eq!(store.count(Tree::Messages).unwrap(), 20);
        assert_eq!(store.count(Tree::Inbox).unwrap(), 0);
    });
}

#[test]
fn writes_applied_each_keep_their_order_even_on_one_key() {
    each(|name, path, open| {
        let store = open(path);
        let put = |k: &[u8], v: &[u8]| Op::Put(Tree::SecretQueue, k.to_vec(), v.to_vec());
        let delete = |k: &[u8]| Op::Delete(Tree::SecretQueue, k.to_vec());
        store
            .apply_each(vec![
                put(b"a", b"1"),
                put(b"b", b"1"),
                delete(b"a"),
                put(b"b", b"2"),
                put(b"c", b"1"),
                delete(b"c"),
                put(b"c", b"3"),
            ])
            .unwrap();
        assert_eq!(store.get(Tree::SecretQueue, b"a").unwrap(), None, "{name}");
        assert_eq!(
            store.get(Tree::SecretQueue, b"b").unwrap(),
            Some(b"2".to_vec()),
            "{name}: the later write of a key wins"
        );
        assert_eq!(
            store.get(Tree::SecretQueue, b"c").unwrap(),
            Some(b"3".to_vec()),
            "{name}"
        );
        // The same key in another tree is another key.
        store
            .apply_each(vec![
                Op::Put(Tree::Inbox, b"a".to_vec(), b"x".to_vec()),
                put(b"a", b"y"),
            ])
            .unwrap();
        assert_eq!(store.get(Tree::Inbox, b"a").unwrap(), Some(b"x".to_vec()));
        assert_eq!(
            store.get(Tree::SecretQueue, b"a").unwrap(),
            Some(b"y".to_vec())
        );
    });
}

#[test]
fn read_returns_what_the_reader_made_or_none() {
    each(|name, path, open| {
        let store = open(path);
        store
            .apply_each(vec![Op::Put(
                Tree::Prekeys,
                b"k".to_vec(),
                b"value".to_vec(),
            )])
            .unwrap();
        assert_eq!(
            store.read(Tree::Prekeys, b"k", |v| v.len()).unwrap(),
            Some(5),
            "{name}"
        );
        assert_eq!(
            store.read(Tree::Prekeys, b"missing", |v| v.len()).unwrap(),
            None
        );
        store
            .apply_each(vec![Op::Delete(Tree::Prekeys, b"k".to_vec())])
            .unwrap();
        assert_eq!(store.get(Tree::Prekeys, b"k").unwrap(), None, "{name}");
    });
}

#[test]
fn what_was_flushed_is_there_after_reopening_and_ids_keep_growing() {
    each(|name, path, open| {
        let last_id = {
            let store = open(path);
            let mut batch = Batch::default();
            batch.put(Tree::Meta, b"m".to_vec(), b"kept".to_vec());
            batch.put(Tree::Inbox, b"i".to_vec(), b"kept too".to_vec());
            store.apply(batch).unwrap();
            let id = (0..100).map(|_| store.next_id().unwrap()).max().unwrap();
            store.flush().unwrap();
            id
        };
        // sled's threads may hold the lock a moment after the store is dropped.
        let store = open(path);
        assert_eq!(
            store.get(Tree::Meta, b"m").unwrap(),
            Some(b"kept".to_vec()),
            "{name}"
        );
        assert_eq!(
            store.get(Tree::Inbox, b"i").unwrap(),
            Some(b"kept too".to_vec())
        );
        assert!(
            store.next_id().unwrap() > last_id,
            "{name}: ids grow across restarts"
        );
    });
}

#[test]
fn readers_run_while_batches_are_written() {
    each(|name, path, open| {
        let store = open(path);
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0u32..200 {
                    let mut batch = Batch::default();
                    batch.put(Tree::Messages, i.to_be_bytes().to_vec(), vec![1; 64]);
                    batch.put(Tree::ByParticipant, i.to_be_bytes().to_vec(), vec![2; 64]);
                    store.apply(batch).unwrap();
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() {
            seen = store
                .range(Tree::Messages, &[], &[0xff; 4], usize::MAX)
                .unwrap()
                .len();
        }
        writer.join().unwrap();
        assert!(seen <= 200, "{name}");
        assert_eq!(store.count(Tree::Messages).unwrap(), 200);
        assert_eq!(store.count(Tree::ByParticipant).unwrap(), 200);
    });
}

#[test]
fn a_flush_reaches_large_values_too() {
    // sled writes values over about a quarter of its segment to separate blob
    // files, which its own flush never syncs: the store's flush must.
    each(|name, path, open| {
        let store = open(path);
        let big = vec![7u8; 512 * 1024];
        store
            .apply_each(vec![Op::Put(Tree::Messages, b"big".to_vec(), big.clone())])
            .unwrap();
        store.flush().unwrap();
        drop(store);
        let store = open(path);
        assert_eq!(
            store.get(Tree::Messages, b"big").unwrap(),
            Some(big),
            "{name}"
        );
    });
}

/// Set in the child process of the kill -9 test: which store, and where.
const CHILD_ENV: &str = "SOTTO_CONFORMANCE_WRITER";
const BATCH_KEYS: u32 = 192;

fn batch_key(batch: u32, i: u32) -> Vec<u8> {
    [batch.to_be_bytes(), i.to_be_bytes()].concat()
}

/// The child: writes large batches across three trees, flushing each, and
/// says so after each flush, until it is killed.
fn write_until_killed(spec: &str) -> ! {
    let (name, path) = spec.split_once('\n').expect("name and path");
    let (_, open) = implementations()
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("a known store");
    let store = open(Path::new(path));
    let trees = [Tree::Messages, Tree::ByParticipant, Tree::SecretQueue];
    for batch in 0u32.. {
        let mut write = Batch::default();
        for i in 0..BATCH_KEYS {
            write.put(
                trees[i as usize % 3],
                batch_key(batch, i),
                vec![batch as u8; 16 * 1024],
            );
        }
        store.apply(write).expect("the batch applies");
        store.flush().expect("the flush returns");
        println!("flushed {batch}");
    }
    unreachable!()
}

#[test]
fn a_batch_is_whole_or_absent_after_kill_9_mid_batch() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        write_until_killed(&spec);
    }
    use std::io::BufRead;
    each(|name, path, open| {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::conformance::a_batch_is_whole_or_absent_after_kill_9_mid_batch",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{name}\n{}", path.display()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the child starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut flushed = None;
        // Killed while it writes: some way into a batch past the tenth.
        while flushed.is_none_or(|f| f < 10) {
            let line = lines
                .next()
                .expect("the child writes until killed")
                .unwrap();
            if let Some(n) = line.strip_prefix("flushed ") {
                flushed = Some(n.parse::<u32>().unwrap());
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(
            rand::random::<u64>() % 5_000,
        ));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let flushed = flushed.unwrap();

        let store = open(path);
        let count = |batch: u32| {
            [Tree::Messages, Tree::ByParticipant, Tree::SecretQueue]
                .iter()
                .map(|t| {
                    store
                        .range(
                            *t,
                            &batch_key(batch, 0),
                            &batch_key(batch + 1, 0),
                            usize::MAX,
                        )
                        .unwrap()
                        .len() as u32
                })
                .sum::<u32>()
        };
        for batch in 0..=flushed + 2 {
            let n = count(batch);
            assert!(
                n == 0 || n == BATCH_KEYS,
                "{name}: batch {batch} is torn ({n} of {BATCH_KEYS} keys)"
            );
            if batch <= flushed {
                assert_eq!(n, BATCH_KEYS, "{name}: flushed batch {batch} is lost");
            }
        }
    });
}
