//! A malicious relay against the investigator's receipts (found in review):
//! it answers without logging and hands over another entry's receipt, vouches
//! for a throwaway log, rewrites its log and reuses a receipt's place, or
//! changes its audit key so that old receipts go unchecked. Each attempt is
//! caught by `sotto-warrant` when it keeps the receipt or when it checks the
//! kept receipts against a published head.

use std::path::Path;

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use sotto_investigator::receipts::{self, Expected};
use sotto_proto::v1;
use sotto_tests::bin;
use sotto_warrant::transparency::{Tree, TreeHead};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// An audit entry as the relay logs it, for a request whose signed bytes are `request`.
fn entry(seq: u64, kind: &str, id: &str, decision: &str, bundle: &str, request: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "seq": seq, "time": "2026-01-01T00:00:00Z", "kind": kind, "warrant_id": id,
        "decision": decision, "bundle_sha256": bundle,
        "request_sha256": hex::encode(Sha256::digest(request)),
    }))
    .unwrap()
}

fn tree(log: &[Vec<u8>]) -> Tree {
    let mut t = Tree::new();
    for e in log {
        t.push(e);
    }
    t
}

fn receipt(
    log: &[Vec<u8>],
    index: u64,
    audit: &SigningKey,
    disclosure: &SigningKey,
) -> v1::Receipt {
    let t = tree(log);
    let size = t.len();
    let head = TreeHead {
        size,
        root: t.root(size).unwrap(),
        time_ms: 1,
    }
    .sign(audit);
    sotto_warrant::transparency::Receipt::issue(
        index,
        log[index as usize].clone(),
        head,
        t.inclusion_proof(index, size).unwrap(),
        disclosure,
    )
}

fn head_file(dir: &Path, log: &[Vec<u8>], audit: &SigningKey) -> String {
    let t = tree(log);
    let size = t.len();
    let head = TreeHead {
        size,
        root: t.root(size).unwrap(),
        time_ms: 2,
    }
    .sign(audit);
    let file = dir.join("published.json");
    std::fs::write(&file, head.to_json()).unwrap();
    file.to_str().unwrap().to_owned()
}

fn receipts_verify(inv: &Path, head: &str) -> std::process::Output {
    std::process::Command::new(bin("sotto-warrant"))
        .args([
            "receipts",
            "verify",
            "--key",
            inv.to_str().unwrap(),
            "--head",
            head,
        ])
        .output()
        .unwrap()
}

#[test]
fn an_honest_receipt_is_kept_and_checks_against_a_later_head() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    let (audit, relay) = (key(1), key(7));
    let rk = relay.verifying_key().to_bytes();
    let bundle = b"sealed disclosure";
    let log = vec![entry(
        1,
        "warrant",
        "W-1",
        "granted",
        &hex::encode(Sha256::digest(bundle)),
        b"req-1",
    )];
    let expected = Expected {
        relay_key: &rk,
        kind: "warrant",
        request: b"req-1",
        warrant_id: "W-1",
        decision: "granted",
        bundle: Some(bundle),
    };
    receipts::keep(&inv, &receipt(&log, 0, &audit, &relay), &expected).unwrap();
    let out = receipts_verify(&inv, &head_file(dir.path(), &log, &audit));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn malicious_relay_answers_an_unmask_with_the_warrants_receipt_and_never_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let relay = key(7);
    let rk = relay.verifying_key().to_bytes();
    let bundle = b"sealed disclosure";
    let log = vec![entry(
        1,
        "warrant",
        "W-1",
        "granted",
        &hex::encode(Sha256::digest(bundle)),
        b"warrant",
    )];
    let r = receipt(&log, 0, &key(1), &relay);
    let unmask = Expected {
        relay_key: &rk,
        kind: "unmask",
        request: b"unmask",
        warrant_id: "W-1",
        decision: "granted",
        bundle: None,
    };
    assert!(receipts::keep(dir.path(), &r, &unmask).is_err());
    // Nor does an earlier unmask's entry stand for a new unmask request.
    let log = vec![entry(1, "unmask", "W-1", "granted", "", b"first unmask")];
    let r = receipt(&log, 0, &key(1), &relay);
    let second = Expected {
        request: b"second unmask",
        ..unmask
    };
    assert!(receipts::keep(dir.path(), &r, &second).is_err());
}

#[test]
fn malicious_relay_answers_a_refusal_with_someone_elses_unverifiable_entry() {
    let dir = tempfile::tempdir().unwrap();
    let relay = key(7);
    let rk = relay.verifying_key().to_bytes();
    let r = receipt(
        &[entry(
            1,
            "unverifiable",
            "",
            "refused",
            "",
            b"someone else's",
        )],
        0,
        &key(1),
        &relay,
    );
    let expected = Expected {
        relay_key: &rk,
        kind: "warrant",
        request: b"mine",
        warrant_id: "W-1",
        decision: "refused",
        bundle: None,
    };
    assert!(receipts::keep(dir.path(), &r, &expected).is_err());
}

#[test]
fn malicious_relay_grants_with_a_receipt_from_a_throwaway_log() {
    let dir = tempfile::tempdir().unwrap();
    let rk = key(7).verifying_key().to_bytes();
    let bundle = b"sealed disclosure";
    let log = vec![entry(
        1,
        "warrant",
        "W-1",
        "granted",
        &hex::encode(Sha256::digest(bundle)),
        b"req",
    )];
    let r = receipt(&log, 0, &key(50), &key(51));
    let expected = Expected {
        relay_key: &rk,
        kind: "warrant",
        request: b"req",
        warrant_id: "W-1",
        decision: "granted",
        bundle: Some(bundle),
    };
    assert!(receipts::keep(dir.path(), &r, &expected).is_err());
}

#[test]
fn malicious_relay_cannot_overwrite_a_kept_receipt_by_reusing_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    let (audit, relay) = (key(1), key(7));
    let rk = relay.verifying_key().to_bytes();
    let expect = |id: &'static str, request: &'static [u8]| Expected {
        relay_key: &rk,
        kind: "warrant",
        request,
        warrant_id: id,
        decision: "refused",
        bundle: None,
    };
    let e0 = entry(1, "warrant", "W-0", "refused", "", b"r0");
    let honest = vec![e0.clone(), entry(2, "warrant", "W-1", "refused", "", b"r1")];
    receipts::keep(
        &inv,
        &receipt(&honest, 1, &audit, &relay),
        &expect("W-1", b"r1"),
    )
    .unwrap();
    // The operator truncates the log and logs another request at W-1's place.
    let forked = vec![e0, entry(2, "warrant", "W-2", "refused", "", b"r2")];
    let second = receipts::keep(
        &inv,
        &receipt(&forked, 1, &audit, &relay),
        &expect("W-2", b"r2"),
    );
    assert!(
        second.is_err(),
        "a rewritten place was taken for a fresh receipt"
    );
    assert_eq!(
        receipts::kept(&inv).unwrap().len(),
        2,
        "both kept, as evidence"
    );
    let out = receipts_verify(&inv, &head_file(dir.path(), &forked, &audit));
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn malicious_relay_changes_its_audit_key_and_old_receipts_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    let relay = key(7);
    let rk = relay.verifying_key().to_bytes();
    let expected = Expected {
        relay_key: &rk,
        kind: "warrant",
        request: b"r1",
        warrant_id: "W-1",
        decision: "refused",
        bundle: None,
    };
    let old_log = [entry(1, "warrant", "W-1", "refused", "", b"r1")];
    receipts::keep(&inv, &receipt(&old_log, 0, &key(1), &relay), &expected).unwrap();
    // A head of a new log under a new audit key: nothing checked is a failure.
    let new_log = [entry(1, "warrant", "W-9", "granted", "", b"r9")];
    let out = receipts_verify(&inv, &head_file(dir.path(), &new_log, &key(2)));
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And once a receipt under the new key is kept, the old one is broken.
    let new = Expected {
        request: b"r9",
        warrant_id: "W-9",
        decision: "granted",
        ..expected
    };
    receipts::keep(&inv, &receipt(&new_log, 0, &key(2), &relay), &new).unwrap();
    let out = receipts_verify(&inv, &head_file(dir.path(), &new_log, &key(2)));
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("another audit key"));
}
