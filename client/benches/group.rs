//! The Sender Keys group cipher, one member's cost per message, beside the
//! pairwise ratchet it saves sending through once per member.
//!
//! `cargo bench -p sotto-client --bench group`
//!
//! - `group_encrypt`: encrypt and sign one group message (done once, whatever
//!   the group's size), 256-byte and 4 KiB payloads;
//! - `group_decrypt`: verify and decrypt the next message of a member's chain
//!   (the message made outside the clock);
//! - `ratchet_encrypt`: the pairwise Double Ratchet encrypting the same
//!   payload on an established chain: what a group message would cost per
//!   member without sender keys.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sotto_client::e2e::{LocalPrekeys, OwnSenderKey, SenderKeyRecord, Session, verify_bundle};
use sotto_client::identity::Identity;
use sotto_proto::v1::{self, secret_payload};
use std::hint::black_box;

const GROUP: &[u8] = b"bench-group";
const SIZES: [usize; 2] = [256, 4096];

/// An established session from Alice to Bob (Bob answered once).
fn pairwise() -> Session {
    let alice = Identity::generate();
    let bob = Identity::generate();
    let mut prekeys = LocalPrekeys::default();
    prekeys.rotate_signed(&bob, 0);
    prekeys.generate_pq_one_time(&bob, 1);
    let upload = prekeys
        .upload(&bob, Vec::new(), prekeys.pq_one_time_public())
        .unwrap();
    let bundle = v1::PrekeyBundle {
        user: "bob".into(),
        identity_key: bob.public_key().to_bytes().to_vec().into(),
        identity_dh_key: upload.identity_dh_key,
        identity_dh_signature: upload.identity_dh_signature,
        signed_prekey: upload.signed_prekey,
        one_time: None,
        pq_prekey: upload.pq_one_time.into_iter().next(),
    };
    let mut a = Session::initiate(&alice, &verify_bundle(&bundle).unwrap()).unwrap();
    let Some(secret_payload::Kind::Prekey(first)) = a.encrypt(b"hello").unwrap().kind else {
        unreachable!("a first message carries the PQXDH header")
    };
    let (mut b, _) = Session::respond(&bob, &mut prekeys, &first).unwrap();
    let Some(secret_payload::Kind::Message(reply)) = b.encrypt(b"hi").unwrap().kind else {
        unreachable!("an answer is a plain ratchet message")
    };
    a.decrypt(&reply).unwrap();
    a
}

fn member() -> (OwnSenderKey, SenderKeyRecord) {
    let own = OwnSenderKey::create(GROUP).unwrap();
    let mut record = SenderKeyRecord::new(GROUP).unwrap();
    record.process_distribution(&own.distribution()).unwrap();
    (own, record)
}

fn group_encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_encrypt");
    for size in SIZES {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        let (mut own, _) = member();
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |bench, p| {
            bench.iter(|| black_box(own.encrypt(black_box(p)).unwrap()))
        });
    }
    group.finish();
}

fn group_decrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_decrypt");
    for size in SIZES {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        let (mut own, mut record) = member();
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |bench, p| {
            bench.iter_batched(
                || own.encrypt(p).unwrap(),
                |m| black_box(record.decrypt(&m).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn ratchet_encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratchet_encrypt");
    for size in SIZES {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        let mut session = pairwise();
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |bench, p| {
            bench.iter(|| black_box(session.encrypt(black_box(p)).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, group_encrypt, group_decrypt, ratchet_encrypt);
criterion_main!(benches);
