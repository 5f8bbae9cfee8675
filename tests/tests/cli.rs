//! The command-line contract, end to end through the built binaries:
//! `sotto-relay` as a child process, `sotto` run per command.

use std::path::Path;

use serde_json::Value;
use sotto_tests::{RelayProcess, bin, files_containing, repoint, sotto, sotto_ok};

fn init(profile: &Path, relay: &RelayProcess, user: &str) {
    relay.init_user(profile, user);
}

fn sync_json(profile: &Path) -> Vec<Value> {
    sotto_ok(profile, &["sync", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

#[test]
fn two_users_chat_through_the_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    assert!(relay.fingerprint.starts_with("sha256:") && relay.fingerprint.len() == 71);
    let (alice, bob, carol) = (
        dir.path().join("alice"),
        dir.path().join("bob"),
        dir.path().join("carol"),
    );
    init(&alice, &relay, "alice");
    init(&bob, &relay, "bob");
    init(&carol, &relay, "carol");

    sotto_ok(&alice, &["send", "bob", "hello bob"]);
    sotto_ok(&bob, &["group", "create", "team", "alice", "carol"]);
    sotto_ok(&bob, &["send", "--group", "team", "hi team"]);

    let got = sync_json(&bob);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["mode"], "normal");
    assert_eq!(got[0]["from"], "alice");
    assert_eq!(got[0]["group"], Value::Null);
    assert_eq!(got[0]["text"], "hello bob");
    assert!(got[0]["id"].as_u64().is_some());
    let sent_at = got[0]["sent_at"].as_str().unwrap();
    assert!(
        sent_at.contains('T') && sent_at.ends_with('Z'),
        "RFC 3339: {sent_at}"
    );

    for member in [&alice, &carol] {
        let got = sync_json(member);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["group"], "team");
        assert_eq!(got[0]["from"], "bob");
    }
    // A second sync has nothing new.
    assert!(sync_json(&bob).is_empty());
    // The human form is one line a message.
    sotto_ok(&alice, &["send", "bob", "second"]);
    let human = sotto_ok(&bob, &["sync"]);
    assert_eq!(human.lines().count(), 1);
    assert!(human.contains("alice: second"));

    // No profile holds a readable body.
    for profile in [&alice, &bob, &carol] {
        assert!(files_containing(profile, b"hello bob").is_empty());
        assert!(files_containing(profile, b"hi team").is_empty());
    }
    let log = relay.terminate();
    assert!(!log.contains("hello bob") && !log.contains("hi team"));
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let alice = dir.path().join("alice");
    init(&alice, &relay, "alice");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["send", "nobody", "hi"], "no account named nobody"),
        (
            vec!["send", "--group", "nogroup", "hi"],
            "no group named nogroup",
        ),
        (
            vec!["init", "--relay", &relay.addr, "--user", "alice2"],
            "profile exists",
        ),
    ];
    for (args, reason) in cases {
        let out = sotto(&alice, &args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }

    // A taken username, and a bad name, on a fresh profile.
    let other = dir.path().join("other");
    let out = sotto(
        &other,
        &[
            "init",
            "--relay",
            &relay.addr,
            "--fingerprint",
            &relay.fingerprint,
            "--user",
            "alice",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));
    assert!(
        !other.join("vault").exists(),
        "a failed registration leaves no profile"
    );
    let out = sotto(
        &other,
        &["init", "--relay", &relay.addr, "--user", "No Spaces"],
    );
    assert!(!out.status.success());

    // No profile: said before any passphrase is asked for.
    let out = sotto(&dir.path().join("nobody"), &["sync"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no profile in"));

    // The wrong passphrase.
    let out = std::process::Command::new(bin("sotto"))
        .arg("--profile")
        .arg(&alice)
        .arg("sync")
        .env("SOTTO_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
}

#[test]
fn a_wrong_fingerprint_refuses_to_connect() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = sotto(
        &dir.path().join("alice"),
        &[
            "init",
            "--relay",
            &relay.addr,
            "--fingerprint",
            &wrong,
            "--user",
            "alice",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to connect"));
}

#[test]
fn an_acknowledged_message_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = RelayProcess::start(&data, &[("SOTTO_LOG", "trace")]);
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&alice, &relay, "alice");
    init(&bob, &relay, "bob");
    sotto_ok(&alice, &["send", "bob", "durable-canary-9"]);
    // `send` exited 0: the relay said the message is on disk. Pull the plug.
    let log = relay.kill_9();
    assert!(
        !log.contains("durable-canary-9"),
        "the relay's log holds no body, even at trace level"
    );
    assert!(files_containing(&data, b"durable-canary-9").is_empty());

    let relay = RelayProcess::start(&data, &[]);
    repoint(&bob, &relay.addr);
    let got = sync_json(&bob);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["text"], "durable-canary-9");
}

#[test]
fn the_relay_prints_what_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let out = std::process::Command::new(bin("sotto-relay"))
        .arg("--data")
        .arg(&data)
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fingerprint = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .expect("init prints the fingerprint");
    assert!(stdout.lines().any(|l| l.starts_with("disclosure key: ")));
    let audit_key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("audit key: "))
        .expect("init prints the audit key");
    for path in [
        "relay.toml",
        "tls/cert.der",
        "tls/key.der",
        "db",
        "authorities.toml",
        "master.key",
        "audit.heads",
    ] {
        assert!(data.join(path).exists(), "{path} is laid out");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in ["master.key", "tls/key.der"] {
            let mode = std::fs::metadata(data.join(secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{secret} is private to its owner");
        }
    }
    // serve over the same directory keeps the same certificate.
    let relay = RelayProcess::start(&data, &[]);
    assert_eq!(relay.fingerprint, fingerprint);
    assert_eq!(relay.disclosure_key.len(), 64);
    // ... and the same audit key, which signed the empty log's head.
    assert_eq!(relay.audit_key, audit_key);
    let head = std::process::Command::new(bin("sotto-relay"))
        .arg("--data")
        .arg(&data)
        .args(["audit", "head"])
        .output()
        .unwrap();
    assert!(head.status.success(), "{head:?}");
    let head: Value = serde_json::from_slice(&head.stdout).unwrap();
    assert_eq!(head["size"], 0);
    assert_eq!(head["key"], audit_key);
}
