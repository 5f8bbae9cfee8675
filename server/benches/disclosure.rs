//! A warrant disclosure costs what the target's records cost, not what the
//! archive holds: the same target with 1,000 records, in an archive of 10,000
//! normal records and in one of 1,000,000, side by side in one run, on each
//! embedded store.
//!
//! `cargo bench -p sotto-server --bench disclosure`
//! (filling the 1,000,000-record archive through the real append path takes a
//! few minutes; it happens once, before the clock starts).

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sotto_proto::v1;
use sotto_server::archive::{Destination, NewNormal, NormalArchive};
use sotto_server::config::StoreKind;
use sotto_server::{RelayConfig, datadir};
use sotto_warrant::{AuthorityFile, CheckedWarrant, Limits, PseudonymKey};

const TARGET_RECORDS: usize = 1_000;
const USERS: usize = 1_000;
/// Sends written together, as the relay's append thread does under load.
const APPEND_BATCH: usize = 64;

struct Archive {
    _dir: tempfile::TempDir,
    archive: Arc<NormalArchive>,
    pseudonym_key: PseudonymKey,
}

/// An archive of `total` records, `TARGET_RECORDS` of them the target's, the
/// rest between other users, all through `NormalArchive::append_many`
/// in batches, with checkpoints as the relay makes them.
fn archive(store: StoreKind, total: usize) -> Archive {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        store,
        ..RelayConfig::default()
    };
    let opened = datadir::open(&dir.path().join("relay"), &config).unwrap();
    let archive =
        Arc::new(NormalArchive::open(opened.store.clone(), opened.sealer.clone()).unwrap());
    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i:04}")).collect();
    let every = total / TARGET_RECORDS;
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    for n in 0..total {
        let (from, to) = if n % every == 0 {
            ("target", users[n % USERS].as_str())
        } else {
            (
                users[n % USERS].as_str(),
                users[(n * 7 + 1) % USERS].as_str(),
            )
        };
        let mut client_id = [0u8; 16];
        client_id[..8].copy_from_slice(&(n as u64).to_be_bytes());
        batch.push(NewNormal {
            from: from.to_owned(),
            to: Destination::User(to.to_owned()),
            text: "a normal message of ordinary length, sealed at rest".to_owned(),
            client_id,
        });
        if batch.len() == APPEND_BATCH || n + 1 == total {
            for result in archive.append_many(std::mem::take(&mut batch)) {
                result.unwrap();
            }
            if archive.checkpoint_due() {
                archive.checkpoint().unwrap();
            }
        }
    }
    archive.checkpoint().unwrap();
    opened.store.flush().unwrap();
    Archive {
        _dir: dir,
        archive,
        pseudonym_key: opened.sealer.pseudonym_key(),
    }
}

/// A warrant for "target" over the day around now, checked as a relay checks it.
fn checked() -> CheckedWarrant {
    use ed25519_dalek::{Signer, SigningKey};
    use prost::Message;
    let authority = SigningKey::from_bytes(&[1; 32]);
    let relay = SigningKey::from_bytes(&[2; 32]);
    let mut file = AuthorityFile::default();
    file.add("bench", &hex::encode(authority.verifying_key().as_bytes()))
        .unwrap();
    let now = sotto_server::now_ms() / 1000;
    let warrant = v1::Warrant {
        id: "W-bench".into(),
        case_reference: "bench".into(),
        authority: "bench".into(),
        targets: vec!["target".into()],
        window_from: now - 86_400,
        window_until: now + 86_400,
        not_before: now - 60,
        expires: now + 2 * 86_400,
        delivery_key: x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([3; 32]))
            .to_bytes()
            .to_vec()
            .into(),
        relay_key: relay.verifying_key().to_bytes().to_vec().into(),
        ..Default::default()
    };
    let bytes = warrant.encode_to_vec();
    let signed = v1::SignedWarrant {
        signature: authority
            .sign(&sotto_proto::transcript::warrant(&bytes))
            .to_bytes()
            .to_vec()
            .into(),
        warrant: bytes.into(),
    };
    let verified = sotto_warrant::verify_warrant(&signed, &file.registry().unwrap()).unwrap();
    sotto_warrant::check_warrant(verified, now, &Limits::new(90, 10), &relay.verifying_key())
        .unwrap()
}

fn disclosure_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("warrant_disclosure");
    group.sample_size(20);
    let warrant = checked();
    for store in [StoreKind::Fjall, StoreKind::Sled] {
        for total in [10_000usize, 1_000_000] {
            let a = archive(store, total);
            let reader = a.archive.reader();
            let outcome = sotto_warrant::disclose(&reader, &warrant, &a.pseudonym_key, 0).unwrap();
            assert_eq!(outcome.disclosure.records.len(), TARGET_RECORDS);
            group.bench_with_input(
                BenchmarkId::new(store.to_string(), total),
                &total,
                |b, _| {
                    b.iter(|| {
                        sotto_warrant::disclose(&reader, &warrant, &a.pseudonym_key, 0).unwrap()
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, disclosure_cost);
criterion_main!(benches);
