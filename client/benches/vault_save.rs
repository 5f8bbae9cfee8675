//! Saving a new message costs the same whatever the history holds: a profile
//! with 100 messages and one with 10,000, side by side in one run. Each
//! iteration remembers one message and saves (writes it, flushes to disk).
//!
//! `cargo bench -p sotto-client --bench vault_save`
//!
//! The first vault format rewrote the whole history at every save, so its
//! cost grew with the history; the store writes the new message and the
//! small parts that changed.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sotto_client::identity::Identity;
use sotto_client::profile::{HistoryEntry, Mode, Profile, ProfileConfig};

fn message(n: u64) -> HistoryEntry {
    HistoryEntry {
        id: n,
        mode: Mode::Normal,
        from: "bob".into(),
        peer: Some("bob".into()),
        group: None,
        text: "a message of ordinary length, kept in the local history".into(),
        sent_at: n as i64,
        client_id: format!("{n:032x}"),
        expire_secs: None,
        shown_at: None,
        unprinted: false,
        delivered: false,
    }
}

fn vault_save(c: &mut Criterion) {
    let mut group = c.benchmark_group("vault_save");
    group.sample_size(30);
    for history in [100u64, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let config = ProfileConfig {
            relay: "127.0.0.1:4433".into(),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            username: "alice".into(),
        };
        let mut profile = Profile::create(
            &dir.path().join("alice"),
            config,
            Identity::generate(),
            "bench passphrase",
        )
        .unwrap();
        for n in 0..history {
            profile.remember(message(n));
        }
        profile.save().unwrap();
        let mut next = history;
        group.bench_with_input(BenchmarkId::new("history", history), &history, |b, _| {
            b.iter(|| {
                profile.remember(message(next));
                next += 1;
                profile.save().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, vault_save);
criterion_main!(benches);
