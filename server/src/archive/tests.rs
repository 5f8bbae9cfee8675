use super::checkpoint::CHECKPOINT_KEY;
use super::segment::sent_at_of;
use super::*;
use crate::now_ms;
use crate::records::SegmentRecord;
use crate::store::TestDir;

type Fixture = TestDir;

impl NormalArchive {
    /// Appends one message (the relay always appends what its writer gathered).
    fn append(&self, msg: NewNormal) -> Result<Appended, RelayError> {
        self.append_many(vec![msg])
            .pop()
            .expect("one result per message")
    }
}

impl TestDir {
    fn open(&self, store: &Arc<dyn Store>) -> NormalArchive {
        NormalArchive::open(store.clone(), self.sealer.clone()).unwrap()
    }
}

fn dm(from: &str, to: &str, text: &str, n: u8) -> NewNormal {
    NewNormal {
        from: from.into(),
        to: Destination::User(to.into()),
        text: text.into(),
        client_id: [n; 16],
    }
}

fn texts(entries: &[InboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.record.text.as_str()).collect()
}

fn stored(result: Result<Appended, RelayError>) -> NormalRecord {
    match result.unwrap() {
        Appended::New { record, .. } => record,
        Appended::Duplicate(_) => panic!("a fresh message was taken for a duplicate"),
    }
}

#[test]
fn ids_grow_in_commit_order_and_carry_the_send_time() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    let before = now_ms();
    let first = archive.append_many(vec![dm("ann", "bob", "1", 1), dm("ann", "bob", "2", 2)]);
    let second = stored(archive.append(dm("bob", "ann", "3", 3)));
    let ids: Vec<u64> = first
        .into_iter()
        .map(|r| stored(r).id)
        .chain([second.id])
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(second.sent_at >= before && second.sent_at <= now_ms());
    assert_eq!(sent_at_of(second.id), second.sent_at);
}

#[test]
fn the_inbox_holds_what_others_sent_until_acknowledged() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    archive.append(dm("ann", "bob", "hello bob", 1)).unwrap();
    archive.append(dm("bob", "ann", "hello ann", 2)).unwrap();
    archive.append(dm("ann", "bob", "again", 3)).unwrap();
    let (inbox, more) = archive.inbox("bob", 10).unwrap();
    assert_eq!(texts(&inbox), ["hello bob", "again"]);
    assert!(!more);
    let (first, more) = archive.inbox("bob", 1).unwrap();
    assert_eq!(texts(&first), ["hello bob"]);
    assert!(more);
    archive.ack("bob", first[0].seq).unwrap();
    assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["again"]);
    assert_eq!(texts(&archive.inbox("ann", 10).unwrap().0), ["hello ann"]);
}

#[test]
fn a_fetch_moves_past_what_the_user_sent_themselves() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    let mut sent = 0;
    for n in 0..5u8 {
        sent = stored(archive.append(dm("ann", "bob", "from ann", n))).id;
    }
    assert!(archive.inbox("ann", 10).unwrap().0.is_empty());
    let cursor = |archive: &NormalArchive| archive.acked(&blind_user(&f.sealer, "ann")).unwrap();
    assert_eq!(cursor(&archive), sent);
    // Not past what ann has yet to read.
    let unread = stored(archive.append(dm("bob", "ann", "for ann", 9))).id;
    archive.append(dm("ann", "bob", "later", 10)).unwrap();
    assert_eq!(texts(&archive.inbox("ann", 10).unwrap().0), ["for ann"]);
    assert!(cursor(&archive) < unread);
    archive.ack("ann", unread).unwrap();
    assert!(archive.inbox("ann", 10).unwrap().0.is_empty());
}

#[test]
fn an_ack_past_the_newest_message_does_not_swallow_later_ones() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    archive.append(dm("ann", "bob", "before", 1)).unwrap();
    archive.ack("bob", u64::MAX).unwrap();
    archive.append(dm("ann", "bob", "after", 2)).unwrap();
    assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["after"]);
}

#[test]
fn a_client_id_is_stored_once_before_and_after_a_checkpoint_and_a_restart() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    let first = stored(archive.append(dm("ann", "bob", "once", 7)));
    let duplicate = |archive: &NormalArchive| match archive.append(dm("ann", "bob", "once", 7)) {
        Ok(Appended::Duplicate(receipt)) => receipt.id,
        _ => panic!("a retry was stored again"),
    };
    assert_eq!(duplicate(&archive), first.id);
    assert_eq!(archive.checkpoint().unwrap(), 1);
    assert_eq!(duplicate(&archive), first.id);
    // Another sender may use the same client id.
    stored(archive.append(dm("bob", "ann", "mine", 7)));
    drop(archive);
    let archive = f.open(&store);
    assert_eq!(duplicate(&archive), first.id);
    assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["once"]);
}

#[test]
fn a_retry_is_recognised_within_the_senders_latest_messages() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    let send = |n: u16| {
        let mut client_id = [0u8; 16];
        client_id[..2].copy_from_slice(&n.to_be_bytes());
        archive.append(NewNormal {
            from: "ann".into(),
            to: Destination::User("bob".into()),
            text: format!("{n}"),
            client_id,
        })
    };
    let first = stored(send(0));
    for n in 1..DEDUP_WINDOW as u16 {
        stored(send(n));
    }
    archive.checkpoint().unwrap();
    // The oldest of the window is still recognised...
    assert!(matches!(send(0), Ok(Appended::Duplicate(r)) if r.id == first.id));
    stored(send(DEDUP_WINDOW as u16));
    archive.checkpoint().unwrap();
    // ...until newer messages pushed it out of the window.
    stored(send(0));
}

#[test]
fn what_no_checkpoint_covered_is_rebuilt_from_the_segments() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    archive.append(dm("ann", "bob", "checkpointed", 1)).unwrap();
    archive.checkpoint().unwrap();
    let last = stored(archive.append(dm("ann", "bob", "only in a segment", 2)));
    // A crash: the archive is gone without a checkpoint.
    drop(archive);
    let archive = f.open(&store);
    assert_eq!(
        texts(&archive.inbox("bob", 10).unwrap().0),
        ["checkpointed", "only in a segment"]
    );
    assert!(stored(archive.append(dm("ann", "bob", "next", 3))).id > last.id);
    assert!(matches!(
        archive.append(dm("ann", "bob", "only in a segment", 2)),
        Ok(Appended::Duplicate(_))
    ));
}

#[test]
fn chunks_written_twice_after_a_crash_do_not_repeat_messages() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    archive.append(dm("ann", "bob", "a", 1)).unwrap();
    archive.append(dm("ann", "bob", "b", 2)).unwrap();
    archive.checkpoint().unwrap();
    // The checkpoint mark is lost (a crash before it reached disk): the
    // next checkpoint covers the same messages again, and more.
    let mut rewind = Batch::default();
    rewind.delete(Tree::Meta, CHECKPOINT_KEY.to_vec());
    store.apply(rewind).unwrap();
    drop(archive);
    let archive = Arc::new(f.open(&store));
    archive.append(dm("ann", "bob", "c", 3)).unwrap();
    archive.checkpoint().unwrap();
    assert!(store.count(Tree::ByParticipant).unwrap() >= 3);
    assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["a", "b", "c"]);
    let all = archive
        .reader()
        .records_of("ann", 0, i64::MAX / 1000)
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
}

#[test]
fn a_window_returns_exactly_the_records_sent_in_it() {
    let f = Fixture::new();
    let store = f.store();
    let archive = Arc::new(f.open(&store));
    let mut records = Vec::new();
    for n in 0..6u8 {
        records.push(stored(archive.append(dm("ann", "bob", &n.to_string(), n))));
        if n == 2 {
            archive.checkpoint().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let reader = archive.reader();
    let (from, until) = (records[1].sent_at, records[4].sent_at);
    let got = reader.records_of("bob", from, until).unwrap();
    let want: Vec<_> = records
        .iter()
        .filter(|r| r.sent_at >= from && r.sent_at < until)
        .map(|r| r.id)
        .collect();
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), want);
    assert_eq!(want.first(), Some(&records[1].id));
    assert_eq!(want.last(), Some(&records[3].id), "the window is half-open");
    assert!(reader.records_of("carol", 0, i64::MAX).unwrap().is_empty());
}

#[test]
fn group_messages_reach_every_member_but_the_sender() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    let group = GroupRecord {
        name: "team".into(),
        members: vec!["ann".into(), "bob".into(), "cid".into()],
        created_by: "ann".into(),
        created_at: 0,
    };
    let appended = archive
        .append(NewNormal {
            from: "ann".into(),
            to: Destination::Group(group),
            text: "hi team".into(),
            client_id: [1; 16],
        })
        .unwrap();
    let Appended::New { recipients, .. } = appended else {
        panic!("stored as a duplicate")
    };
    assert_eq!(recipients, ["bob", "cid"]);
    assert!(archive.inbox("ann", 10).unwrap().0.is_empty());
    assert_eq!(texts(&archive.inbox("cid", 10).unwrap().0), ["hi team"]);
}

#[test]
fn large_batches_split_into_segments() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    let big = "x".repeat(60 * 1024);
    let batch = (0..10u8).map(|n| dm("ann", "bob", &big, n)).collect();
    for result in archive.append_many(batch) {
        stored(result);
    }
    // A segment closes once it holds 256 KiB of text: five of these each.
    assert_eq!(store.count(Tree::Messages).unwrap(), 2);
    assert_eq!(archive.inbox("bob", 20).unwrap().0.len(), 10);
}

#[test]
fn a_segment_entry_is_found_without_decoding_the_others() {
    let sealed: Vec<Vec<u8>> = vec![b"first".to_vec(), Vec::new(), vec![7; 300]];
    let encoded = SegmentRecord {
        sealed: sealed.clone(),
    }
    .encode_to_vec();
    for (i, want) in sealed.iter().enumerate() {
        assert_eq!(
            segment_entry(&encoded, i as u16).unwrap(),
            Some(want.as_slice())
        );
    }
    assert_eq!(segment_entry(&encoded, 3).unwrap(), None);
    assert!(segment_entry(&encoded[..encoded.len() - 1], 2).is_err());
    assert!(segment_entry(&[0x08, 0x01], 0).is_err());
}

#[test]
fn an_archive_of_an_older_layout_is_refused_by_name() {
    let f = Fixture::new();
    let store = f.store();
    let mut old = Batch::default();
    old.put(Tree::Messages, vec![7; 32], b"sealed".to_vec());
    store.apply(old).unwrap();
    let err = NormalArchive::open(store, f.sealer.clone())
        .err()
        .expect("an old layout is refused");
    assert!(err.to_string().contains("older sotto"), "{err}");
}

#[test]
fn ids_keep_growing_after_a_checkpoint_and_a_restart() {
    let f = Fixture::new();
    let store = f.store();
    let archive = f.open(&store);
    let before = stored(archive.append(dm("ann", "bob", "before", 1)));
    archive.checkpoint().unwrap();
    drop(archive);
    let archive = f.open(&store);
    assert!(stored(archive.append(dm("ann", "bob", "after", 2))).id > before.id);
}

#[test]
fn a_window_in_the_middle_reads_only_the_chunks_it_needs_and_all_it_needs() {
    let f = Fixture::new();
    let store = f.store();
    let mut archive = f.open(&store);
    archive.chunk_postings = 3;
    let archive = Arc::new(archive);
    let mut sent = Vec::new();
    for n in 0..12u8 {
        sent.push(stored(archive.append(dm(
            "ann",
            "bob",
            &format!("m{n}"),
            n,
        ))));
        // Three messages a chunk: bob's directory names four chunks.
        if n % 3 == 2 {
            archive.checkpoint().unwrap();
        }
    }
    let blind = blind_user(&f.sealer, "bob");
    assert_eq!(archive.stored_directory(&blind).unwrap().len(), 4);
    // From the last message of chunk 1 to the first of chunk 3.
    let from = sent[5].sent_at;
    let until = sent[9].sent_at + 1;
    let got = archive.reader().records_of("bob", from, until).unwrap();
    let want: Vec<u64> = sent
        .iter()
        .filter(|r| from <= r.sent_at && r.sent_at < until)
        .map(|r| r.id)
        .collect();
    assert!(want.contains(&sent[5].id) && want.contains(&sent[9].id));
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), want);
}

/// Writes an archive as a relay of layout 2 left it: segments keyed by their
/// first id, postings, windows, cursor and mark in clear.
fn write_layout_2(f: &Fixture, store: &Arc<dyn Store>) -> Vec<NormalRecord> {
    use super::segment::record_key;
    let first = first_id_of(now_ms() - 60_000);
    let record = |id: u64, from: &str, to: &str, text: &str, n: u8| NormalRecord {
        id,
        conversation: vec![9; 16],
        from: from.into(),
        to: to.into(),
        group: String::new(),
        participants: vec![from.into(), to.into()],
        text: text.into(),
        sent_at: sent_at_of(id),
        client_id: vec![n; 16],
    };
    let a = record(first, "ann", "bob", "old a", 1);
    let b = record(first + 1, "bob", "ann", "old b", 2);
    let c = record(first + 5, "ann", "bob", "old c", 3);
    let mut batch = Batch::default();
    for (segment, records) in [(first, vec![&a, &b]), (first + 5, vec![&c])] {
        let sealed = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                f.sealer.seal(
                    Tree::Messages,
                    &record_key(segment, i as u16),
                    &r.encode_to_vec(),
                )
            })
            .collect();
        batch.put(
            Tree::Messages,
            segment.to_be_bytes().to_vec(),
            SegmentRecord { sealed }.encode_to_vec(),
        );
    }
    let postings = |list: &[(u64, u16, bool)]| -> Vec<u8> {
        list.iter()
            .flat_map(|(id, index, sent)| {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&index.to_be_bytes());
                p.push(u8::from(*sent));
                p
            })
            .collect()
    };
    let ann = blind_user(&f.sealer, "ann");
    let bob = blind_user(&f.sealer, "bob");
    let key = |blind: &[u8; 16], id: u64| [&blind[..], &id.to_be_bytes()].concat();
    // The mark covers the first segment only.
    batch.put(
        Tree::ByParticipant,
        key(&ann, first + 1),
        postings(&[(first, 0, true), (first + 1, 1, false)]),
    );
    batch.put(
        Tree::ByParticipant,
        key(&bob, first + 1),
        postings(&[(first, 0, false), (first + 1, 1, true)]),
    );
    batch.put(
        Tree::ClientIds,
        ann.to_vec(),
        [&[1u8; 16][..], &first.to_be_bytes()].concat(),
    );
    batch.put(Tree::Inbox, bob.to_vec(), first.to_be_bytes().to_vec());
    batch.put(
        Tree::Meta,
        CHECKPOINT_KEY.to_vec(),
        (first + 1).to_be_bytes().to_vec(),
    );
    batch.put(Tree::Meta, FORMAT_KEY.to_vec(), 2u64.to_be_bytes().to_vec());
    store.apply(batch).unwrap();
    vec![a, b, c]
}

#[test]
fn an_archive_of_layout_2_is_sealed_in_place_and_keeps_every_message_and_cursor() {
    let f = Fixture::new();
    let store = f.store();
    let old = write_layout_2(&f, &store);
    let archive = Arc::new(f.open(&store));
    // bob had acknowledged "old a"; "old b" is his own.
    assert_eq!(texts(&archive.inbox("bob", 10).unwrap().0), ["old c"]);
    assert_eq!(texts(&archive.inbox("ann", 10).unwrap().0), ["old b"]);
    let ids = |records: Vec<NormalRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
    let all = archive
        .reader()
        .records_of("ann", 0, i64::MAX / 1000)
        .unwrap();
    assert_eq!(ids(all), ids(old.clone()));
    // A retry of an old send is still recognised, with its first id.
    match archive.append(dm("ann", "bob", "old a", 1)).unwrap() {
        Appended::Duplicate(receipt) => assert_eq!(receipt.id, old[0].id),
        Appended::New { .. } => panic!("an old send was stored again"),
    }
    assert!(stored(archive.append(dm("ann", "bob", "new", 4))).id > old[2].id);
    archive.checkpoint().unwrap();
    // Nothing of layout 2 is left in clear.
    let segments = store.range(Tree::Messages, &[], &[0xff; 9], 100).unwrap();
    assert_eq!(segments.len(), 3);
    assert!(
        segments
            .iter()
            .all(|(k, _)| read_u64(k, "key").unwrap() <= 3)
    );
    // The cursor moved to a key of its own, sealed; nothing is left under bob's blind.
    let bob = blind_user(&f.sealer, "bob");
    assert!(store.get(Tree::Inbox, &bob).unwrap().is_none());
    let cursor = store
        .get(Tree::Inbox, &f.sealer.tree_key(Tree::Inbox, &bob))
        .unwrap()
        .unwrap();
    assert_ne!(cursor.len(), 8);
    for (key, value) in store
        .range(Tree::ByParticipant, &[], &[0xff; 33], 100)
        .unwrap()
    {
        assert_eq!(key.len(), 16);
        assert!(
            f.sealer
                .open_padded(Tree::ByParticipant, &key, &value)
                .is_ok()
        );
    }
    // And it opens again as layout 3.
    drop(archive);
    let archive = f.open(&store);
    assert_eq!(
        texts(&archive.inbox("bob", 10).unwrap().0),
        ["old c", "new"]
    );
}

#[test]
fn someone_active_in_many_checkpoints_has_a_few_full_chunks_and_every_message() {
    let f = Fixture::new();
    let store = f.store();
    let mut archive = f.open(&store);
    archive.chunk_postings = 4;
    let archive = Arc::new(archive);
    let mut sent = Vec::new();
    // One message a checkpoint, eleven checkpoints: chunks of 4, 4 and 3.
    for n in 0..11u8 {
        sent.push(stored(archive.append(dm("ann", "bob", &format!("m{n}"), n))).id);
        archive.checkpoint().unwrap();
    }
    let blind = blind_user(&f.sealer, "bob");
    let directory = archive.stored_directory(&blind).unwrap();
    assert_eq!(directory.len(), 3);
    assert_eq!(directory, [sent[3], sent[7], sent[10]]);
    let sizes: Vec<usize> = (0..3)
        .map(|n| archive.chunk(&blind, n).unwrap().len())
        .collect();
    assert_eq!(sizes, [4, 4, 3]);
    let all = archive
        .reader()
        .records_of("bob", 0, i64::MAX / 1000)
        .unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), sent);
    // A checkpoint written again (its mark lost) adds no posting twice.
    let mut rewind = Batch::default();
    rewind.delete(Tree::Meta, CHECKPOINT_KEY.to_vec());
    store.apply(rewind).unwrap();
    drop(archive);
    let mut archive = f.open(&store);
    archive.chunk_postings = 4;
    let archive = Arc::new(archive);
    archive.checkpoint().unwrap();
    assert_eq!(texts(&archive.inbox("bob", 100).unwrap().0).len(), 11);
    let chunks: usize = (0..archive.stored_directory(&blind).unwrap().len())
        .map(|n| archive.chunk(&blind, n).unwrap().len())
        .sum();
    assert!(chunks >= 11);
    let ids: Vec<u64> = archive
        .reader()
        .records_of("bob", 0, i64::MAX / 1000)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, sent);
}
