//! The warrant module through a real relay: the grant path end to end through
//! the binaries, every refusal, the secret-chat boundary, pseudonyms, unmask,
//! the audit chain and the transparency report.

use std::path::Path;

use prost::Message;
use serde_json::Value;
use sotto_client::investigator::{InvestigatorKeys, WarrantFile};
use sotto_client::relay::{ClientError, Recipient};
use sotto_proto::v1::{self, ErrorCode, request, response};
use sotto_server::audit::{self, Verified};
use sotto_server::warrant::AuthorityFile;
use sotto_tests::{RelayProcess, TestRelay, bin, sotto_ok};

const DAY: i64 = 86_400;

fn now() -> i64 {
    sotto_server::now_ms() / 1000
}

fn investigator(dir: &Path, name: &str) -> InvestigatorKeys {
    InvestigatorKeys::generate(&dir.join(name), name).unwrap()
}

fn register_authority(relay: &TestRelay, keys: &InvestigatorKeys) {
    let path = relay.data_dir().join("authorities.toml");
    let mut file = AuthorityFile::load(&path).unwrap();
    file.add(&keys.name, &keys.public_key_hex()).unwrap();
    file.save(&path).unwrap();
}

fn warrant(keys: &InvestigatorKeys, id: &str, targets: &[&str]) -> v1::Warrant {
    v1::Warrant {
        id: id.into(),
        case_reference: format!("case-of-{id}"),
        authority: keys.name.clone(),
        legal_basis: "court order".into(),
        approver: "chief".into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        window_from: now() - 30 * DAY,
        window_until: now() + DAY,
        not_before: now() - 60,
        expires: now() + 7 * DAY,
        delivery_key: keys.delivery_public().to_vec().into(),
    }
}

async fn submit(
    relay: &TestRelay,
    signed: v1::SignedWarrant,
) -> Result<v1::SealedDisclosure, ClientError> {
    let client = relay.connect().await;
    match client
        .request(request::Kind::SubmitWarrant(v1::SubmitWarrant {
            warrant: Some(signed),
        }))
        .await?
    {
        response::Kind::Disclosure(d) => Ok(d),
        other => panic!("expected a disclosure, got {other:?}"),
    }
}

async fn unmask(
    relay: &TestRelay,
    keys: &InvestigatorKeys,
    warrant_id: &str,
    pseudonyms: &[String],
) -> Result<Vec<(String, String)>, ClientError> {
    let request = v1::UnmaskRequest {
        warrant_id: warrant_id.into(),
        authority: keys.name.clone(),
        pseudonyms: pseudonyms.to_vec(),
        reason: "identify a contact".into(),
        issued_at: now(),
    };
    let client = relay.connect().await;
    match client
        .request(request::Kind::Unmask(v1::Unmask {
            request: Some(keys.sign_unmask(&request)),
        }))
        .await?
    {
        response::Kind::Unmasked(u) => Ok(u
            .unmasked
            .into_iter()
            .map(|u| (u.pseudonym, u.username))
            .collect()),
        other => panic!("expected an unmasking, got {other:?}"),
    }
}

fn refusal_code(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(ClientError::Refused { code, message }) => {
            assert!(
                matches!(code, ErrorCode::WarrantRefused | ErrorCode::UnmaskRefused),
                "{code:?}"
            );
            message
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(code, _)| code.to_owned())
                .unwrap_or(message)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Decrypted bundle plaintext as bytes (to search) and the disclosure.
fn open(keys: &InvestigatorKeys, sealed: &v1::SealedDisclosure) -> v1::Disclosure {
    keys.open(sealed, None).unwrap().disclosure
}

#[tokio::test]
async fn every_refusal_has_its_reason_and_is_logged() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    let stranger = investigator(dir.path(), "stranger");
    register_authority(&relay, &chief);
    relay.register("target-one").await;

    let mut cases: Vec<(&str, v1::SignedWarrant)> = Vec::new();
    cases.push((
        "unregistered_authority",
        stranger.sign_warrant(&warrant(&stranger, "W-a", &["target-one"])),
    ));
    let mut bad_sig = chief.sign_warrant(&warrant(&chief, "W-b", &["target-one"]));
    let mut sig = bad_sig.signature.to_vec();
    sig[0] ^= 1;
    bad_sig.signature = sig.into();
    cases.push(("bad_signature", bad_sig));
    // Tampered: a target added after signing.
    let mut tampered = chief.sign_warrant(&warrant(&chief, "W-c", &["target-one"]));
    let mut w = v1::Warrant::decode(tampered.warrant.as_ref()).unwrap();
    w.targets.push("someone-else".into());
    tampered.warrant = w.encode_to_vec().into();
    cases.push(("bad_signature", tampered));
    let mut expired = warrant(&chief, "W-d", &["target-one"]);
    expired.expires = now() - 1;
    cases.push(("expired", chief.sign_warrant(&expired)));
    let mut early = warrant(&chief, "W-e", &["target-one"]);
    early.not_before = now() + DAY;
    cases.push(("not_yet_valid", chief.sign_warrant(&early)));
    let mut long = warrant(&chief, "W-f", &["target-one"]);
    long.window_from = now() - 91 * DAY;
    cases.push(("window_too_long", chief.sign_warrant(&long)));
    cases.push((
        "unknown_target",
        chief.sign_warrant(&warrant(&chief, "W-g", &["nobody-here"])),
    ));
    cases.push((
        "no_targets",
        chief.sign_warrant(&warrant(&chief, "W-h", &[])),
    ));

    for (expected, signed) in cases {
        assert_eq!(refusal_code(submit(&relay, signed).await), expected);
    }
    // Replayed: the first is granted, the same id again is refused.
    let signed = chief.sign_warrant(&warrant(&chief, "W-i", &["target-one"]));
    submit(&relay, signed.clone()).await.unwrap();
    assert_eq!(refusal_code(submit(&relay, signed).await), "replayed");

    let entries = audit::entries(&relay.data_dir().join("audit.log")).unwrap();
    let reasons: Vec<&str> = entries.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "unregistered_authority",
            "bad_signature",
            "bad_signature",
            "expired",
            "not_yet_valid",
            "window_too_long",
            "unknown_target",
            "no_targets",
            "",
            "replayed"
        ]
    );
    assert!(entries.iter().all(|e| e.secret_items == 0));
}

#[tokio::test]
async fn a_target_who_only_used_secret_chats_gets_an_empty_disclosure() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    let target = relay.register("whistle").await;
    relay.register("friend").await;
    let envelope = b"ENVELOPE-BYTES-that-must-never-leave-7f3a".to_vec();
    target
        .client
        .send_secret("friend", envelope.clone(), [1; 16])
        .await
        .unwrap();
    assert_eq!(
        relay.running().state().secret_envelopes_waiting().unwrap(),
        1
    );

    let sealed = submit(
        &relay,
        chief.sign_warrant(&warrant(&chief, "W-1", &["whistle"])),
    )
    .await
    .unwrap();
    let disclosure = open(&chief, &sealed);
    assert!(disclosure.records.is_empty());
    assert!(disclosure.pseudonyms.is_empty());
    let plain = disclosure.encode_to_vec();
    assert!(
        !plain
            .windows(envelope.len())
            .any(|w| w == envelope.as_slice())
    );
    assert!(!plain.windows(6).any(|w| w == b"friend"));
    let entry = audit::entries(&relay.data_dir().join("audit.log"))
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (entry.decision.as_str(), entry.records, entry.secret_items),
        ("granted", 0, 0)
    );
}

#[tokio::test]
async fn non_targets_appear_only_as_pseudonyms_that_differ_across_warrants() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    let suspect = relay.register("suspect").await;
    relay.register("bystander-ann").await;
    relay.register("bystander-ben").await;
    let outsider = relay.register("outsider").await;
    suspect
        .client
        .send_normal(Recipient::User("bystander-ann"), "meet at noon", [1; 16])
        .await
        .unwrap();
    suspect
        .client
        .create_group("plans", &["bystander-ann".into(), "bystander-ben".into()])
        .await
        .unwrap();
    suspect
        .client
        .send_normal(Recipient::Group("plans"), "all set", [2; 16])
        .await
        .unwrap();
    outsider
        .client
        .send_normal(Recipient::User("bystander-ben"), "unrelated", [3; 16])
        .await
        .unwrap();

    let first = open(
        &chief,
        &submit(
            &relay,
            chief.sign_warrant(&warrant(&chief, "W-1", &["suspect"])),
        )
        .await
        .unwrap(),
    );
    let texts: Vec<&str> = first.records.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        ["meet at noon", "all set"],
        "the target's records only"
    );
    let plain = first.encode_to_vec();
    for name in ["bystander-ann", "bystander-ben", "outsider", "plans"] {
        assert!(
            !plain.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} is in the bundle"
        );
    }
    assert_eq!(first.pseudonyms.len(), 2);
    assert!(first.pseudonyms.iter().all(|p| p.starts_with("anon-")));
    let ann = first.records[0]
        .participants
        .iter()
        .find(|p| p.starts_with("anon-"))
        .unwrap()
        .clone();
    assert!(
        first.records[1].participants.contains(&ann),
        "stable within one warrant"
    );

    let second = open(
        &chief,
        &submit(
            &relay,
            chief.sign_warrant(&warrant(&chief, "W-2", &["suspect"])),
        )
        .await
        .unwrap(),
    );
    assert!(
        second
            .pseudonyms
            .iter()
            .all(|p| !first.pseudonyms.contains(p)),
        "unlinkable across warrants"
    );

    // Unmask: a pseudonym of W-1 under W-1 is revealed; under W-2 it is refused.
    let revealed = unmask(&relay, &chief, "W-1", std::slice::from_ref(&ann))
        .await
        .unwrap();
    assert_eq!(revealed, [(ann.clone(), "bystander-ann".to_owned())]);
    assert_eq!(
        refusal_code(unmask(&relay, &chief, "W-2", std::slice::from_ref(&ann)).await),
        "not_disclosed"
    );
    assert_eq!(
        refusal_code(unmask(&relay, &chief, "W-404", std::slice::from_ref(&ann)).await),
        "unknown_warrant"
    );
    let stranger = investigator(dir.path(), "stranger");
    register_authority(&relay, &stranger);
    assert_eq!(
        refusal_code(unmask(&relay, &stranger, "W-1", &[ann]).await),
        "other_authority"
    );

    // The audit log never names a non-target.
    let log = std::fs::read_to_string(relay.data_dir().join("audit.log")).unwrap();
    for name in ["bystander-ann", "bystander-ben", "outsider", "meet at noon"] {
        assert!(!log.contains(name), "{name} is in the audit log");
    }
    let report = audit::transparency(&audit::entries(&relay.data_dir().join("audit.log")).unwrap());
    assert_eq!(report.len(), 1);
    let p = &report[0];
    assert_eq!(
        (p.warrants_received, p.warrants_granted, p.warrants_refused),
        (2, 2, 0)
    );
    assert_eq!(
        (
            p.accounts_targeted,
            p.records_disclosed,
            p.pseudonyms_issued
        ),
        (1, 4, 4)
    );
    assert_eq!(
        (
            p.unmask_requests_received,
            p.unmask_requests_granted,
            p.pseudonyms_unmasked
        ),
        (4, 1, 1)
    );
    assert_eq!(p.secret_items_disclosed, 0);
}

#[tokio::test]
async fn editing_any_audit_line_breaks_the_chain_at_that_line() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    relay.register("target-one").await;
    for id in ["W-1", "W-2", "W-3"] {
        submit(
            &relay,
            chief.sign_warrant(&warrant(&chief, id, &["target-one"])),
        )
        .await
        .unwrap();
    }
    let path = relay.data_dir().join("audit.log");
    assert!(matches!(
        audit::verify(&path).unwrap(),
        Verified::Intact { entries: 3, .. }
    ));
    let original = std::fs::read_to_string(&path).unwrap();
    for line in 0..3 {
        let edited: Vec<String> = original
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == line {
                    l.replace("\"decision\":\"granted\"", "\"decision\":\"refused\"")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        match audit::verify(&path).unwrap() {
            Verified::Broken { line: at, .. } => assert_eq!(at, line as u64 + 1),
            intact => panic!("an edit of line {} went unnoticed: {intact:?}", line + 1),
        }
    }
    std::fs::write(&path, &original).unwrap();
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
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

    let today = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (from, until, expires) = (
        fmt(today - time::Duration::days(10)),
        fmt(today + time::Duration::days(1)),
        fmt(today + time::Duration::days(30)),
    );
    run_ok(
        "sotto-warrant",
        &[
            "issue",
            "--key",
            &d("inv"),
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
    run_ok(
        "sotto-warrant",
        &[
            "submit",
            "--key",
            &d("inv"),
            "--relay",
            &relay.addr,
            "--fingerprint",
            &relay.fingerprint,
            "--out",
            &d("bundle"),
            &d("w.json"),
        ],
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
    assert_eq!(texts, ["the parcel is ready", "see you there"]);
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
    let unmasked = String::from_utf8(unmasked.stdout).unwrap();
    assert_eq!(unmasked.trim(), format!("{carol_pseudonym}\tcarol"));
    let refused = unmask("anon-000000000000000000000000", "fishing");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not_disclosed"));

    assert!(
        run_ok("sotto-relay", &["--data", &data_s, "audit", "verify"])
            .contains("intact: 3 entries")
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
    assert_eq!(p["warrants_granted"], 1);
    assert_eq!(p["accounts_targeted"], 1);
    assert_eq!(p["records_disclosed"], 2);
    assert_eq!(p["pseudonyms_issued"], 2);
    assert_eq!(p["unmask_requests_received"], 2);
    assert_eq!(p["unmask_requests_granted"], 1);
    assert_eq!(p["secret_items_disclosed"], 0);

    // Edit a line of the log: `audit verify` fails and names it.
    let log = data.join("audit.log");
    let text = std::fs::read_to_string(&log)
        .unwrap()
        .replacen("\"records\":2", "\"records\":1", 1);
    std::fs::write(&log, text).unwrap();
    let out = run("sotto-relay", &["--data", &data_s, "audit", "verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
