//! sotto's Double Ratchet and X3DH, side by side with vodozemac's Olm, in one run.
//!
//! `cargo bench -p sotto-client --bench ratchet`
//!
//! - `ratchet_roundtrip`: encrypt and decrypt one 256-byte message on an
//!   established chain, always in the same direction (no DH step);
//! - `ratchet_pingpong`: one message each way per iteration, so every message
//!   carries a DH ratchet step;
//! - `x3dh_handshake`: set up a session from a prekey bundle and answer the
//!   first message on the other side: `pqxdh` (what sotto does), `sotto`
//!   (classical X3DH, only with `--features classical-x3dh`), `vodozemac`.
//!   The sizes of a bundle and of a first message are printed first.
//!
//! Both libraries get sessions set up the same way (outbound from a one-time
//! key, the first message answered) before the clock starts.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sotto_client::e2e::{LocalPrekeys, Session, VerifiedBundle, verify_bundle};
use sotto_client::identity::Identity;
use sotto_proto::v1::{self, secret_payload};
use std::hint::black_box;
use vodozemac::olm::{Account, OlmMessage, SessionConfig};

const MESSAGE: [u8; 256] = [0x5a; 256];

struct SottoParty {
    identity: Identity,
    prekeys: LocalPrekeys,
}

fn sotto_party() -> SottoParty {
    let identity = Identity::generate();
    let mut prekeys = LocalPrekeys::default();
    prekeys.rotate_signed(&identity, 0);
    prekeys.generate_one_time(1);
    prekeys.generate_pq_one_time(&identity, 1);
    SottoParty { identity, prekeys }
}

fn sotto_bundle(p: &SottoParty) -> v1::PrekeyBundle {
    let upload = p
        .prekeys
        .upload(
            &p.identity,
            p.prekeys.one_time_public(),
            p.prekeys.pq_one_time_public(),
        )
        .unwrap();
    v1::PrekeyBundle {
        user: "bob".into(),
        identity_key: p.identity.public_key().to_bytes().to_vec().into(),
        identity_dh_key: upload.identity_dh_key,
        identity_dh_signature: upload.identity_dh_signature,
        signed_prekey: upload.signed_prekey,
        one_time: upload.one_time.into_iter().next(),
        pq_prekey: upload.pq_one_time.into_iter().next(),
    }
}

fn inner(payload: &v1::SecretPayload) -> &v1::RatchetMessage {
    match payload.kind.as_ref().unwrap() {
        secret_payload::Kind::Message(m) => m,
        secret_payload::Kind::Prekey(p) => p.message.as_ref().unwrap(),
    }
}

/// Verifies the bundle, starts a session, and answers its first message.
fn handshake_with(
    bundle: &v1::PrekeyBundle,
    initiate: impl FnOnce(&VerifiedBundle) -> Session,
    respond: impl FnOnce(&v1::PrekeyMessage) -> Session,
) -> (Session, Session) {
    let mut a = initiate(&verify_bundle(bundle).unwrap());
    let Some(secret_payload::Kind::Prekey(first)) = a.encrypt(&MESSAGE).unwrap().kind else {
        unreachable!("a first message carries the key agreement's header")
    };
    (a, respond(&first))
}

fn sotto_handshake(
    alice: &Identity,
    bob: &mut SottoParty,
    bundle: &v1::PrekeyBundle,
) -> (Session, Session) {
    handshake_with(
        bundle,
        |b| Session::initiate(alice, b).unwrap(),
        |first| {
            Session::respond(&bob.identity, &mut bob.prekeys, first)
                .unwrap()
                .0
        },
    )
}

/// Classical X3DH over the same bundle (its PQ prekey unused and not sent).
#[cfg(feature = "classical-x3dh")]
fn classical_handshake(
    alice: &Identity,
    bob: &mut SottoParty,
    bundle: &v1::PrekeyBundle,
) -> (Session, Session) {
    handshake_with(
        bundle,
        |b| Session::initiate_classical(alice, b).unwrap(),
        |first| {
            Session::respond_classical(&bob.identity, &mut bob.prekeys, first)
                .unwrap()
                .0
        },
    )
}

/// Prints what goes over the wire to set up a session.
fn print_sizes() {
    use prost::Message;
    let bob = sotto_party();
    let bundle = sotto_bundle(&bob);
    let classical = v1::PrekeyBundle {
        pq_prekey: None,
        ..bundle.clone()
    };
    let mut a = Session::initiate(&Identity::generate(), &verify_bundle(&bundle).unwrap()).unwrap();
    let first = a.encrypt(&MESSAGE).unwrap();
    let Some(secret_payload::Kind::Prekey(header)) = &first.kind else {
        unreachable!("a first message carries the PQXDH header")
    };
    let without_kem = v1::PrekeyMessage {
        pq_ciphertext: Default::default(),
        pq_prekey_id: None,
        ..header.clone()
    };
    eprintln!(
        "sizes (encoded): bundle {} bytes (without its PQ prekey {}), first message with a \
         {}-byte text {} bytes (without the KEM ciphertext {})",
        bundle.encoded_len(),
        classical.encoded_len(),
        MESSAGE.len(),
        first.encoded_len(),
        v1::SecretPayload {
            kind: Some(secret_payload::Kind::Prekey(without_kem)),
        }
        .encoded_len(),
    );
}

fn sotto_sessions() -> (Session, Session) {
    let alice = Identity::generate();
    let mut bob = sotto_party();
    let bundle = sotto_bundle(&bob);
    let (mut a, mut b) = sotto_handshake(&alice, &mut bob, &bundle);
    // Bob answers, so both sides have sending and receiving chains.
    let reply = b.encrypt(&MESSAGE).unwrap();
    a.decrypt(inner(&reply)).unwrap();
    (a, b)
}

fn vodozemac_sessions() -> (vodozemac::olm::Session, vodozemac::olm::Session) {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    bob.mark_keys_as_published();
    let mut a = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .unwrap();
    let OlmMessage::PreKey(first) = a.encrypt(MESSAGE).unwrap() else {
        unreachable!("a first Olm message is a pre-key message")
    };
    let mut b = bob
        .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &first)
        .unwrap()
        .session;
    let reply = b.encrypt(MESSAGE).unwrap();
    a.decrypt(&reply).unwrap();
    (a, b)
}

fn roundtrip(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratchet_roundtrip");
    let (mut a, mut b) = sotto_sessions();
    group.bench_function("sotto", |bench| {
        bench.iter(|| {
            let m = a.encrypt(black_box(&MESSAGE)).unwrap();
            black_box(b.decrypt(inner(&m)).unwrap());
        })
    });
    let (mut a, mut b) = vodozemac_sessions();
    group.bench_function("vodozemac", |bench| {
        bench.iter(|| {
            let m = a.encrypt(black_box(MESSAGE)).unwrap();
            black_box(b.decrypt(&m).unwrap());
        })
    });
    group.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratchet_pingpong");
    let (mut a, mut b) = sotto_sessions();
    group.bench_function("sotto", |bench| {
        bench.iter(|| {
            let m = a.encrypt(black_box(&MESSAGE)).unwrap();
            black_box(b.decrypt(inner(&m)).unwrap());
            let m = b.encrypt(black_box(&MESSAGE)).unwrap();
            black_box(a.decrypt(inner(&m)).unwrap());
        })
    });
    let (mut a, mut b) = vodozemac_sessions();
    group.bench_function("vodozemac", |bench| {
        bench.iter(|| {
            let m = a.encrypt(black_box(MESSAGE)).unwrap();
            black_box(b.decrypt(&m).unwrap());
            let m = b.encrypt(black_box(MESSAGE)).unwrap();
            black_box(a.decrypt(&m).unwrap());
        })
    });
    group.finish();
}

fn handshake(c: &mut Criterion) {
    print_sizes();
    let mut group = c.benchmark_group("x3dh_handshake");
    let alice = Identity::generate();
    group.bench_function("pqxdh", |bench| {
        bench.iter_batched(
            || {
                let bob = sotto_party();
                let bundle = sotto_bundle(&bob);
                (bob, bundle)
            },
            |(mut bob, bundle)| black_box(sotto_handshake(&alice, &mut bob, &bundle)),
            BatchSize::SmallInput,
        )
    });
    #[cfg(feature = "classical-x3dh")]
    group.bench_function("sotto", |bench| {
        bench.iter_batched(
            || {
                let bob = sotto_party();
                let bundle = sotto_bundle(&bob);
                (bob, bundle)
            },
            |(mut bob, bundle)| black_box(classical_handshake(&alice, &mut bob, &bundle)),
            BatchSize::SmallInput,
        )
    });
    let alice_olm = Account::new();
    group.bench_function("vodozemac", |bench| {
        bench.iter_batched(
            || {
                let mut bob = Account::new();
                bob.generate_one_time_keys(1);
                let otk = *bob.one_time_keys().values().next().unwrap();
                (bob, otk)
            },
            |(mut bob, otk)| {
                let mut a = alice_olm
                    .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
                    .unwrap();
                let OlmMessage::PreKey(first) = a.encrypt(MESSAGE).unwrap() else {
                    unreachable!("a first Olm message is a pre-key message")
                };
                black_box(
                    bob.create_inbound_session(
                        SessionConfig::version_1(),
                        alice_olm.curve25519_key(),
                        &first,
                    )
                    .unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, roundtrip, pingpong, handshake);
criterion_main!(benches);
