//! The investigator's tool, `sotto-warrant`, driven as a person would: a
//! warrant served end to end through the binaries, and what the tool itself
//! refuses or warns about before a relay is ever asked (an existing --out, a
//! fingerprint where the relay key belongs, an over-long window, a bad
//! target), and how it shows a warrant file, hostile ones included.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use sotto_investigator::{InvestigatorKeys, WarrantFile};
use sotto_proto::v1;
use sotto_tests::{RelayProcess, bin, sotto_ok};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn run(program: &str, args: &[&str]) -> Output {
    std::process::Command::new(bin(program))
        .args(args)
        .output()
        .unwrap()
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A failed run's stderr: one line, beginning `error: `.
fn run_err(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(!out.status.success(), "{program} {args:?} succeeded");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `sotto-warrant keygen` in `dir`; returns (public key, delivery key).
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let out = run_ok(
        "sotto-warrant",
        &["keygen", "--out", &path(dir), "--name", name],
    );
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("keygen prints {prefix:?}: {out}"))
            .to_owned()
    };
    (line("public key: "), line("delivery key: "))
}

/// The arguments of an `issue` that succeeds, but for its targets: a window
/// from `from_days_ago` days ago until tomorrow, expiring in 30 days.
fn issue_args(key: &Path, relay_key: &str, out: &Path, from_days_ago: i64) -> Vec<String> {
    let now = OffsetDateTime::now_utc();
    [
        "issue",
        "--key",
        &path(key),
        "--relay-key",
        relay_key,
        "--id",
        "W-2026-042",
        "--case",
        "CASE-42",
        "--from",
        &rfc3339(now - Duration::days(from_days_ago)),
        "--until",
        &rfc3339(now + Duration::days(1)),
        "--expires",
        &rfc3339(now + Duration::days(30)),
        "--legal-basis",
        "court order 42/2026",
        "--out",
        &path(out),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A data directory whose relay discloses at once (`[warrant] review = false`):
/// for the tests of the tool itself, not of the operators' review.
fn without_review(data: &Path) -> &Path {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("relay.toml"),
        "[warrant]\n# The tool is under test here, not the review.\nreview = false\n",
    )
    .unwrap();
    data
}

fn issue(args: &[String], targets: &[&str]) -> Output {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    for t in targets {
        args.extend(["--target", t]);
    }
    run("sotto-warrant", &args)
}

#[test]
fn a_warrant_is_served_end_to_end_through_the_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    let data = dir.path().join("relay");
    let relay = RelayProcess::start(&data, &[]);
    for user in ["alice", "bob", "carol"] {
        relay.init_user(&dir.path().join(user), user);
    }
    sotto_ok(
        &dir.path().join("alice"),
        &["send", "bob", "the parcel is ready"],
    );
    sotto_ok(
        &dir.path().join("bob"),
        &["group", "create", "crew", "alice", "carol"],
    );
    sotto_ok(
        &dir.path().join("carol"),
        &["send", "--group", "crew", "see you there"],
    );
    sotto_ok(
        &dir.path().join("alice"),
        &["send", "--secret", "bob", "secret-never-disclosed"],
    );
    // What a target wrote may try to forge a record in the investigator's terminal.
    let forged = "and\n2026-11-30T18:30:00.000Z conv-1 [alice] alice: I confess\x1b[2J";
    sotto_ok(&dir.path().join("alice"), &["send", "bob", forged]);

    let keygen = run_ok(
        "sotto-warrant",
        &["keygen", "--out", &d("inv"), "--name", "Chief Inspector"],
    );
    let public = keygen
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("keygen prints the public key");
    // Registered while the relay runs: it re-reads the list for each warrant.
    let data_s = data.to_string_lossy().into_owned();
    run_ok(
        "sotto-relay",
        &[
            "--data",
            &data_s,
            "authority",
            "add",
            "--name",
            "Chief Inspector",
            "--public-key",
            public,
        ],
    );
    assert!(
        run_ok("sotto-relay", &["--data", &data_s, "authority", "list"])
            .contains("Chief Inspector")
    );

    let today = OffsetDateTime::now_utc();
    let (from, until, expires) = (
        rfc3339(today - Duration::days(10)),
        rfc3339(today + Duration::days(1)),
        rfc3339(today + Duration::days(30)),
    );
    run_ok(
        "sotto-warrant",
        &[
            "issue",
            "--key",
            &d("inv"),
            "--relay-key",
            &relay.disclosure_key,
            "--id",
            "W-2026-001",
            "--case",
            "CASE-7",
            "--target",
            "alice",
            "--from",
            &from,
            "--until",
            &until,
            "--expires",
            &expires,
            "--legal-basis",
            "court order 12/2026",
            "--out",
            &d("w.json"),
        ],
    );
    WarrantFile::load(&dir.path().join("w.json")).unwrap();
    let serve_with = |command: &str, out: &str, extra: &[&str]| {
        let (key, out, warrant) = (d("inv"), d(out), d("w.json"));
        let mut args = vec![
            command,
            "--key",
            &key,
            "--relay",
            &relay.addr,
            "--fingerprint",
            &relay.fingerprint,
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        args.push(&warrant);
        run("sotto-warrant", &args)
    };
    let serve = |command: &str, out: &str| serve_with(command, out, &[]);
    // Held for the operators' review: nothing is saved, and it says so.
    let submitted = serve("submit", "bundle");
    assert!(submitted.status.success(), "{submitted:?}");
    assert!(String::from_utf8_lossy(&submitted.stdout).contains("pending review"));
    assert!(!dir.path().join("bundle").exists());
    let early = serve("collect", "bundle");
    assert_eq!(early.status.code(), Some(3), "{early:?}");
    assert!(String::from_utf8_lossy(&early.stdout).contains("pending review"));
    assert!(!dir.path().join("bundle").exists());

    // The operator looks at it (never a message of it) and approves it.
    let relay_cmd = |args: &[&str]| {
        let mut all = vec!["--data", &data_s, "warrant"];
        all.extend_from_slice(args);
        run_ok("sotto-relay", &all)
    };
    let listed = relay_cmd(&["list", "--pending"]);
    assert!(
        listed.contains("W-2026-001	Chief Inspector	case CASE-7	pending	0 of 1"),
        "{listed}"
    );
    let shown = relay_cmd(&["show", "W-2026-001"]);
    for said in [
        "Chief Inspector",
        "CASE-7",
        "court order 12/2026",
        "alice",
        "3 records",
    ] {
        assert!(shown.contains(said), "{said}: {shown}");
    }
    assert!(!shown.contains("parcel") && !shown.contains("see you there"));
    let approved = relay_cmd(&["approve", "W-2026-001", "--by", "Operator One"]);
    assert!(approved.contains("disclosed (3 records)"), "{approved}");
    assert!(relay_cmd(&["list", "--pending"]).contains("no warrant held"));

    let collected = serve("collect", "bundle");
    assert!(collected.status.success(), "{collected:?}");
    // Fetched again by its number: the same bytes.
    let again = serve_with("collect", "bundle-again", &["--delivery", "1"]);
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("delivery 1"),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read(d("bundle")).unwrap(),
        std::fs::read(d("bundle-again")).unwrap()
    );
    let opened = run_ok(
        "sotto-warrant",
        &[
            "open",
            "--key",
            &d("inv"),
            "--relay-key",
            &relay.disclosure_key,
            "--json",
            &d("bundle"),
        ],
    );
    let disclosure: Value = serde_json::from_str(opened.trim()).unwrap();
    assert_eq!(disclosure["warrant_id"], "W-2026-001");
    assert_eq!(disclosure["case"], "CASE-7");
    assert_eq!(disclosure["relay_key"], relay.disclosure_key.as_str());
    assert_eq!(disclosure["targets"], serde_json::json!(["alice"]));
    let records = disclosure["records"].as_array().unwrap();
    let texts: Vec<&str> = records
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["the parcel is ready", "see you there", forged]);
    for r in records {
        for field in ["conversation", "from", "participants", "sent_at", "text"] {
            assert!(!r[field].is_null(), "{field} missing");
        }
    }
    assert!(
        !opened.contains("bob")
            && !opened.contains("carol")
            && !opened.contains("secret-never-disclosed")
    );
    let pseudonyms: Vec<String> = disclosure["pseudonyms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pseudonyms.len(), 2);

    // The text form escapes controls and indents a record's further lines.
    let open_text = [
        "open",
        "--key",
        &d("inv"),
        "--relay-key",
        &relay.disclosure_key,
        &d("bundle"),
    ];
    let text = run_ok("sotto-warrant", &open_text);
    assert!(
        text.lines()
            .any(|l| l == "    2026-11-30T18:30:00.000Z conv-1 [alice] alice: I confess\\u{1b}[2J"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "{text}");
    // A reader that went away (`| head`) ends it quietly, with exit 0.
    let mut child = std::process::Command::new(bin("sotto-warrant"))
        .args(open_text)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    assert!(
        closed.status.success() && closed.stderr.is_empty(),
        "{closed:?}"
    );

    // A wrong pinned relay key is refused.
    let wrong = run(
        "sotto-warrant",
        &[
            "open",
            "--key",
            &d("inv"),
            "--relay-key",
            &"11".repeat(32),
            &d("bundle"),
        ],
    );
    assert!(!wrong.status.success());

    let carol_pseudonym = records[1]["from"].as_str().unwrap();
    let (inv, warrant) = (d("inv"), d("w.json"));
    let unmask = |pseudonym: &str, reason: &str| {
        run(
            "sotto-warrant",
            &[
                "unmask",
                "--key",
                &inv,
                "--relay",
                &relay.addr,
                "--fingerprint",
                &relay.fingerprint,
                "--warrant",
                &warrant,
                "--pseudonym",
                pseudonym,
                "--reason",
                reason,
            ],
        )
    };
    let unmasked = unmask(carol_pseudonym, "identify the sender");
    assert!(unmasked.status.success());
    // Unmask answers carry receipts, refusals too, kept beside the keys
    // (after those of the submission, two collections and the review's
    // approval, which is logged but answers no investigator).
    assert!(String::from_utf8_lossy(&unmasked.stderr).contains("receipt: entry 6 "));
    let unmasked = String::from_utf8(unmasked.stdout).unwrap();
    assert_eq!(unmasked.trim(), format!("{carol_pseudonym}\tcarol"));
    let refused = unmask("anon-000000000000000000000000", "fishing");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not_disclosed"));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("receipt: entry 7 "));
    assert_eq!(
        std::fs::read_dir(dir.path().join("inv/receipts"))
            .unwrap()
            .count(),
        6
    );

    assert!(
        run_ok("sotto-relay", &["--data", &data_s, "audit", "verify"])
            .contains("intact: 7 entries")
    );
    let report: Value = serde_json::from_str(
        run_ok(
            "sotto-relay",
            &["--data", &data_s, "transparency", "--json"],
        )
        .trim(),
    )
    .unwrap();
    let p = &report["periods"][0];
    assert_eq!(p["warrants_received"], 1);
    assert_eq!(p["warrants_held_for_review"], 1);
    assert_eq!(p["warrants_granted"], 1);
    assert_eq!(p["accounts_targeted"], 1);
    assert_eq!(p["records_disclosed"], 3);
    assert_eq!(p["pseudonyms_issued"], 2);
    assert_eq!(p["unmask_requests_received"], 2);
    assert_eq!(p["unmask_requests_granted"], 1);
    assert_eq!(p["secret_items_disclosed"], 0);
    assert_eq!(p["warrants_approved_in_review"], 1);
    assert_eq!(p["deliveries"], 1);
    // Computed from a signed head that covers the whole log; the warrant's
    // people are still to be told.
    assert_eq!(report["head"]["size"], 7);
    assert_eq!(report["outstanding"]["awaiting_notice"], 1);
    assert_eq!(report["outstanding"]["pending_review"], 0);

    // The head the operator publishes; the log is consistent with it.
    let head = data.join("../head.json");
    std::fs::write(
        &head,
        run_ok("sotto-relay", &["--data", &data_s, "audit", "head"]),
    )
    .unwrap();
    let head_s = head.to_string_lossy().into_owned();
    assert!(
        run_ok(
            "sotto-relay",
            &["--data", &data_s, "audit", "verify", "--against", &head_s]
        )
        .contains("consistent with the head")
    );

    // Edit a line of the log: `audit verify` fails and names it, with or
    // without the published head.
    let log = data.join("audit.log");
    let text = std::fs::read_to_string(&log)
        .unwrap()
        .replacen("\"records\":3", "\"records\":1", 1);
    std::fs::write(&log, text).unwrap();
    // (The first entry with a count of records is the approval's, the third.)
    let out = run("sotto-relay", &["--data", &data_s, "audit", "verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 3"));
    let out = run(
        "sotto-relay",
        &["--data", &data_s, "audit", "verify", "--against", &head_s],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 3"));
}

#[test]
fn submit_never_overwrites_an_existing_out_and_asks_the_relay_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(without_review(&dir.path().join("relay")), &[]);
    relay.init_user(&dir.path().join("alice"), "alice");
    let inv = dir.path().join("inv");
    let (public, _) = keygen(&inv, "chief");
    let data = path(&dir.path().join("relay"));
    run_ok(
        "sotto-relay",
        &[
            "--data",
            &data,
            "authority",
            "add",
            "--name",
            "chief",
            "--public-key",
            &public,
        ],
    );
    let warrant = dir.path().join("w.json");
    let out = issue(
        &issue_args(&inv, &relay.disclosure_key, &warrant, 10),
        &["alice"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bundle = dir.path().join("bundle");
    std::fs::write(&bundle, b"evidence from last week").unwrap();
    let submit = |to: &Path| {
        run(
            "sotto-warrant",
            &[
                "submit",
                "--key",
                &path(&inv),
                "--relay",
                &relay.addr,
                "--fingerprint",
                &relay.fingerprint,
                "--out",
                &path(to),
                &path(&warrant),
            ],
        )
    };
    let refused = submit(&bundle);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("exists already"), "{stderr}");
    assert_eq!(std::fs::read(&bundle).unwrap(), b"evidence from last week");

    // The relay was not asked: the warrant id (served once) is still unused.
    let fresh = dir.path().join("bundle-2");
    let served = submit(&fresh);
    assert!(
        served.status.success(),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
    assert!(fresh.exists());

    // Served now: a second submit is refused by the relay, with its code.
    let again = submit(&dir.path().join("bundle-3"));
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("refused (replayed)"), "{stderr}");
    assert!(!dir.path().join("bundle-3").exists());
}

#[test]
fn a_warrant_for_another_relay_is_refused_as_wrong_relay() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    relay.init_user(&dir.path().join("alice"), "alice");
    let inv = dir.path().join("inv");
    let (public, _) = keygen(&inv, "chief");
    let data = path(&dir.path().join("relay"));
    run_ok(
        "sotto-relay",
        &[
            "--data",
            &data,
            "authority",
            "add",
            "--name",
            "chief",
            "--public-key",
            &public,
        ],
    );
    // Another relay's disclosure key: any Ed25519 public key but this relay's.
    let (elsewhere, _) = keygen(&dir.path().join("elsewhere"), "elsewhere");
    let warrant = dir.path().join("w.json");
    let out = issue(&issue_args(&inv, &elsewhere, &warrant, 10), &["alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = run_err(
        "sotto-warrant",
        &[
            "submit",
            "--key",
            &path(&inv),
            "--relay",
            &relay.addr,
            "--fingerprint",
            &relay.fingerprint,
            "--out",
            &path(&dir.path().join("bundle")),
            &path(&warrant),
        ],
    );
    assert!(stderr.contains("refused (wrong_relay)"), "{stderr}");
    assert!(!dir.path().join("bundle").exists());
}

#[test]
fn a_fingerprint_given_as_relay_key_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    keygen(&inv, "chief");
    let warrant = dir.path().join("w.json");
    let fingerprint = format!("sha256:{}", "ab".repeat(32));
    let out = issue(&issue_args(&inv, &fingerprint, &warrant, 10), &["alice"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for words in [
        "--relay-key",
        "disclosure key:",
        "certificate fingerprint",
        "--fingerprint",
    ] {
        assert!(stderr.contains(words), "{words:?} missing: {stderr}");
    }
    assert!(!warrant.exists());
}

#[test]
fn issue_warns_of_a_window_over_90_days_and_still_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    let (relay_key, _) = keygen(&dir.path().join("relay-stand-in"), "relay");
    keygen(&inv, "chief");
    let warrant = dir.path().join("w.json");
    let out = issue(&issue_args(&inv, &relay_key, &warrant, 120), &["alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("121 days") && stderr.contains("90"),
        "{stderr}"
    );
    assert!(stderr.contains("may refuse"), "{stderr}");
    WarrantFile::load(&warrant).unwrap();

    // Within 90 days: no warning.
    let short = dir.path().join("short.json");
    let out = issue(&issue_args(&inv, &relay_key, &short, 30), &["alice"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn issue_refuses_a_target_that_is_not_a_username() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    let (relay_key, _) = keygen(&dir.path().join("relay-stand-in"), "relay");
    keygen(&inv, "chief");
    let warrant = dir.path().join("w.json");
    for target in ["Alice", "al ice", "bob\n\u{1b}[2J", "ab", "anon-\u{202e}x"] {
        let out = issue(
            &issue_args(&inv, &relay_key, &warrant, 10),
            &["alice", target],
        );
        assert!(!out.status.success(), "{target:?} was accepted");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("--target"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            !stderr.contains('\u{1b}') && !stderr.contains('\u{202e}'),
            "{stderr:?}"
        );
        assert!(!warrant.exists());
    }
}

#[test]
fn show_prints_an_issued_warrant_and_show_json_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    let (relay_key, _) = keygen(&dir.path().join("relay-stand-in"), "relay");
    let (_, delivery_key) = keygen(&inv, "Chief Inspector");
    let warrant = dir.path().join("w.json");
    let mut args = issue_args(&inv, &relay_key, &warrant, 10);
    args.extend(["--approver".into(), "Judge Dredd".into()]);
    let out = issue(&args, &["alice", "bob"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = run_ok("sotto-warrant", &["show", &path(&warrant)]);
    for line in [
        "warrant      W-2026-042".to_owned(),
        "case         CASE-42".to_owned(),
        "authority    Chief Inspector".to_owned(),
        "approver     Judge Dredd".to_owned(),
        "legal basis  court order 42/2026".to_owned(),
        "targets      alice, bob".to_owned(),
        format!("relay key    {relay_key}"),
        format!("delivery key {delivery_key}"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("window       ") && l.contains(" until "))
    );
    assert!(text.lines().any(|l| l.starts_with("expires      ")));

    let json = run_ok("sotto-warrant", &["show", "--json", &path(&warrant)]);
    assert_eq!(json.trim_end().lines().count(), 1, "{json}");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["id"], "W-2026-042");
    assert_eq!(v["case"], "CASE-42");
    assert_eq!(v["authority"], "Chief Inspector");
    assert_eq!(v["approver"], "Judge Dredd");
    assert_eq!(v["legal_basis"], "court order 42/2026");
    assert_eq!(v["targets"], serde_json::json!(["alice", "bob"]));
    assert_eq!(v["relay_key"], relay_key.as_str());
    assert_eq!(v["delivery_key"], delivery_key.as_str());
    let window_from = OffsetDateTime::parse(v["window_from"].as_str().unwrap(), &Rfc3339).unwrap();
    let window_until =
        OffsetDateTime::parse(v["window_until"].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!((window_until - window_from).whole_days(), 11);
    for field in ["not_before", "expires"] {
        OffsetDateTime::parse(v[field].as_str().unwrap(), &Rfc3339).unwrap();
    }
}

#[test]
fn show_neutralizes_control_characters_in_a_hostile_warrant_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = InvestigatorKeys::generate(&dir.path().join("inv"), "chief").unwrap();
    let hostile = v1::Warrant {
        id: "W-1\nexpires      2099-01-01T00:00:00Z".into(),
        case_reference: "CASE\u{1b}[2J\u{1b}]0;owned\u{7}".into(),
        authority: "chief".into(),
        legal_basis: "court \u{202e}redro".into(),
        approver: "judge\u{9b}31m".into(),
        targets: vec!["alice\r".into()],
        window_from: 1_790_000_000,
        window_until: 1_790_086_400,
        not_before: 1_790_000_000,
        expires: 1_800_000_000,
        delivery_key: keys.delivery_public().to_vec().into(),
        relay_key: vec![7; 32].into(),
        notify_after: 0,
    };
    let file = dir.path().join("hostile.json");
    WarrantFile::new(&keys.sign_warrant(&hostile))
        .save(&file)
        .unwrap();
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    let text = run_ok("sotto-warrant", &["show", &path(&file)]);
    assert!(!text.chars().any(unsafe_char), "{text:?}");
    assert_eq!(text.lines().count(), 12, "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("expires      2099")),
        "{text}"
    );
    let json = run_ok("sotto-warrant", &["show", "--json", &path(&file)]);
    assert!(
        !json.trim_end().chars().any(|c| unsafe_char(c) || c == '\n'),
        "{json:?}"
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["id"], hostile.id.as_str());
    assert_eq!(v["case"], hostile.case_reference.as_str());
}

/// What a curious operator who holds the master key does after editing the
/// log: signs every head again with the relay's own audit key, so the
/// relay's `audit.heads` agrees with the edited log.
fn resign_heads(data: &Path) {
    use sotto_server::warrant::audit;
    use sotto_warrant::transparency::{Tree, TreeHead};
    let config =
        sotto_server::RelayConfig::load(&sotto_server::datadir::config_path(data)).unwrap();
    let opened = sotto_server::datadir::open(data, &config).unwrap();
    let log = sotto_server::datadir::audit_path(data);
    let mut tree = Tree::new();
    let mut heads = String::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        tree.push(line.as_bytes());
        let head = TreeHead {
            size: tree.len(),
            root: tree.root(tree.len()).unwrap(),
            time_ms: 1,
        }
        .sign(&opened.audit_key);
        heads.push_str(&head.to_json());
        heads.push('\n');
    }
    std::fs::write(audit::heads_path(&log), heads).unwrap();
    // The relay's own record of what it last signed, sealed in its store:
    // with the master key, the operator removes it too, and the relay takes
    // the files as they are at its next start.
    let mut batch = sotto_server::store::Batch::default();
    batch.delete(sotto_server::store::Tree::Meta, b"audit_anchor".to_vec());
    opened.store.apply(batch).unwrap();
    opened.store.flush().unwrap();
}

#[test]
fn curious_operator_who_rewrites_the_log_is_caught_by_a_receipt_and_the_published_head() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let data_s = path(&data);
    let inv = dir.path().join("inv");
    let mut relay = RelayProcess::start(without_review(&data), &[]);
    relay.init_user(&dir.path().join("alice"), "alice");
    let (public, _) = keygen(&inv, "Chief Inspector");
    run_ok(
        "sotto-relay",
        &[
            "--data",
            &data_s,
            "authority",
            "add",
            "--name",
            "Chief Inspector",
            "--public-key",
            &public,
        ],
    );
    let submit = |warrant: &Path, out: &str| {
        run(
            "sotto-warrant",
            &[
                "submit",
                "--key",
                &path(&inv),
                "--relay",
                &relay.addr,
                "--fingerprint",
                &relay.fingerprint,
                "--out",
                &path(&dir.path().join(out)),
                &path(warrant),
            ],
        )
    };
    // A granted warrant, and a refused one (an unknown target): a receipt each.
    let granted = dir.path().join("granted.json");
    let args = issue_args(&inv, &relay.disclosure_key, &granted, 10);
    assert!(issue(&args, &["alice"]).status.success());
    let served = submit(&granted, "bundle");
    assert!(served.status.success(), "{served:?}");
    assert!(String::from_utf8_lossy(&served.stderr).contains("receipt: entry 1 "));
    let refused = dir.path().join("refused.json");
    let mut args = issue_args(&inv, &relay.disclosure_key, &refused, 10);
    args[6] = "W-2026-043".into();
    assert!(issue(&args, &["nobody-here"]).status.success());
    let out = submit(&refused, "bundle2");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("receipt: entry 2 "));
    assert_eq!(std::fs::read_dir(inv.join("receipts")).unwrap().count(), 2);

    // The head the operator publishes; both receipts are in it.
    let head = |name: &str| {
        let file = dir.path().join(name);
        std::fs::write(
            &file,
            run_ok("sotto-relay", &["--data", &data_s, "audit", "head"]),
        )
        .unwrap();
        path(&file)
    };
    let published = head("head-1.json");
    let receipts_verify = |head: &str, relay: &RelayProcess| {
        run(
            "sotto-warrant",
            &[
                "receipts",
                "verify",
                "--key",
                &path(&inv),
                "--head",
                head,
                "--relay",
                &relay.addr,
                "--fingerprint",
                &relay.fingerprint,
            ],
        )
    };
    let ok = receipts_verify(&published, &relay);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout)
            .matches("is in the published head of 2 entries")
            .count(),
        2
    );

    // The operator turns the refusal into nothing to see: the second entry
    // now says the warrant was granted, every head signed again.
    relay.terminate();
    let log = data.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 1 {
                l.replace("\"decision\":\"refused\"", "\"decision\":\"granted\"")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_ne!(edited.join("\n") + "\n", text);
    std::fs::write(&log, edited.join("\n") + "\n").unwrap();
    resign_heads(&data);
    let relay = RelayProcess::start(&data, &[]);
    // The relay's own heads agree with the edit ...
    assert!(run_ok("sotto-relay", &["--data", &data_s, "audit", "verify"]).contains("intact"));
    // ... but not the head it published, nor the investigator's receipt.
    let out = run(
        "sotto-relay",
        &[
            "--data",
            &data_s,
            "audit",
            "verify",
            "--against",
            &published,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("entries 1 to 2 do not match the published head"),
        "{out:?}"
    );
    let rewritten = head("head-2.json");
    let caught = receipts_verify(&rewritten, &relay);
    assert!(!caught.status.success(), "{caught:?}");
    let said = String::from_utf8_lossy(&caught.stdout);
    assert!(said.contains("NOT in the published head"), "{said}");

    // A head whose size was changed after signing is refused outright.
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(&published).unwrap()).unwrap();
    forged["size"] = 1.into();
    let forged_file = dir.path().join("forged.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let out = run(
        "sotto-relay",
        &[
            "--data",
            &data_s,
            "audit",
            "verify",
            "--against",
            &path(&forged_file),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid signed tree head"));
    let out = receipts_verify(&path(&forged_file), &relay);
    assert!(!out.status.success());
}
