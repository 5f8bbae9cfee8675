//! The operators' review of warrants through a real relay, attacked as a
//! hostile investigator (who resubmits, collects early, unmasks early) and as
//! one operator who would approve twice; a rejection that stays final; held
//! warrants that outlive a restart; the admin socket of a real `sotto-relay`
//! process (private, removed at a clean stop, a stale one no obstacle, a
//! clear word when no relay runs).

use std::path::Path;

use prost::Message;
use sha2::{Digest, Sha256};
use sotto_client::relay::Recipient;
use sotto_investigator::receipts::{self, Expected};
use sotto_investigator::{
    Answered, InvestigatorError, InvestigatorKeys, collect_delivery, collect_warrant,
    new_unmask_request, submit_warrant, unmask,
};
use sotto_proto::v1;
use sotto_server::RelayConfig;
use sotto_server::admin::{AdminAnswer, AdminRequest};
use sotto_server::warrant::audit;
use sotto_tests::{RelayProcess, TestRelay, bin};

const DAY: i64 = 86_400;

fn now() -> i64 {
    sotto_server::now_ms() / 1000
}

/// A relay with a registered authority "chief", and "suspect" who wrote
/// "meet at noon" to "contact".
async fn relay_with_a_suspect(config: RelayConfig, dir: &Path) -> (TestRelay, InvestigatorKeys) {
    let relay = TestRelay::start_with(config).await;
    let chief = InvestigatorKeys::generate(&dir.join("chief"), "chief").unwrap();
    relay.register_authority(&chief);
    let suspect = relay.register("suspect").await;
    relay.register("contact").await;
    suspect
        .client
        .send_normal(Recipient::User("contact"), "meet at noon", [1; 16])
        .await
        .unwrap();
    (relay, chief)
}

fn warrant(relay: &TestRelay, chief: &InvestigatorKeys, id: &str) -> v1::SignedWarrant {
    chief.sign_warrant(&v1::Warrant {
        id: id.into(),
        case_reference: "CASE-9".into(),
        authority: chief.name.clone(),
        legal_basis: "court order 9/2026".into(),
        approver: "judge".into(),
        targets: vec!["suspect".into()],
        window_from: now() - 30 * DAY,
        window_until: now() + DAY,
        not_before: now() - 60,
        expires: now() + 7 * DAY,
        delivery_key: chief.delivery_public().to_vec().into(),
        relay_key: hex::decode(&relay.running().disclosure_key).unwrap().into(),
        notify_after: 0,
    })
}

/// Submits (or collects) on a fresh connection: the answer and its receipts.
async fn ask(
    relay: &TestRelay,
    signed: &v1::SignedWarrant,
    collect: bool,
) -> (Result<Answered, InvestigatorError>, Vec<v1::Receipt>) {
    let conn = relay.investigator().await;
    let answer = if collect {
        collect_warrant(&conn, signed.clone()).await
    } else {
        submit_warrant(&conn, signed.clone()).await
    };
    let receipts = conn.take_receipts();
    conn.close().await;
    (answer, receipts)
}

/// Delivery `n` of a warrant, fetched again on a fresh connection.
async fn delivery(
    relay: &TestRelay,
    signed: &v1::SignedWarrant,
    n: u64,
) -> Result<Answered, InvestigatorError> {
    let conn = relay.investigator().await;
    let answer = collect_delivery(&conn, signed.clone(), Some(n)).await;
    conn.close().await;
    answer
}

fn pending(answer: Result<Answered, InvestigatorError>) -> v1::PendingReview {
    match answer {
        Ok(Answered::PendingReview(p)) => p,
        other => panic!("expected pending review, got {other:?}"),
    }
}

fn disclosure(answer: Result<Answered, InvestigatorError>) -> v1::DisclosureBundle {
    match answer {
        Ok(Answered::Disclosure(bundle)) => bundle,
        other => panic!("expected a disclosure, got {other:?}"),
    }
}

fn refusal(answer: Result<Answered, InvestigatorError>) -> (String, String) {
    match answer {
        Err(InvestigatorError::Refused { refusal, message }) => (refusal, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn admin(relay: &TestRelay, request: AdminRequest) -> AdminAnswer {
    relay.admin(request).await.unwrap()
}

fn approve(id: &str, by: &str) -> AdminRequest {
    AdminRequest::Approve {
        id: id.into(),
        authority: None,
        by: by.into(),
    }
}

fn entries(relay: &TestRelay) -> Vec<audit::AuditEntry> {
    audit::entries(&relay.data_dir().join("audit.log")).unwrap()
}

/// Whatever the relay handed out so far, decrypted, holds no record: nothing
/// was disclosed.
fn nothing_disclosed(relay: &TestRelay) {
    for e in entries(relay) {
        assert!(
            e.bundle_sha256.is_empty() && e.records == 0,
            "disclosed before approval: {e:?}"
        );
    }
}

#[tokio::test]
async fn hostile_investigator_gets_nothing_before_approval_however_it_asks() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, chief) = relay_with_a_suspect(RelayConfig::default(), dir.path()).await;
    let signed = warrant(&relay, &chief, "W-1");
    let sent = signed.encode_to_vec();
    let rk = hex::decode(&relay.running().disclosure_key).unwrap();
    let rk: [u8; 32] = rk.try_into().unwrap();
    let inv = dir.path().join("chief");

    // Held: the answer says so, with a receipt of the entry that says so.
    let (answer, kept) = ask(&relay, &signed, false).await;
    let p = pending(answer);
    assert_eq!(
        (p.warrant_id.as_str(), p.approvals, p.approvals_needed),
        ("W-1", 0, 1)
    );
    let expected = |kind, decision, bundle| Expected {
        relay_key: &rk,
        kind,
        request: &sent,
        warrant_id: "W-1",
        decision,
        bundle,
    };
    receipts::keep(&inv, &kept[0], &expected("warrant", "pending", None)).unwrap();

    // Sent again: not a replay, and still nothing.
    let (answer, _) = ask(&relay, &signed, false).await;
    pending(answer);
    // Collected early: nothing.
    let (answer, kept) = ask(&relay, &signed, true).await;
    pending(answer);
    receipts::keep(&inv, &kept[0], &expected("collect", "pending", None)).unwrap();
    // Unmasked early, guessing: no grant, nothing revealed.
    let request = new_unmask_request(&chief, "W-1", vec!["anon-0".into()], "early", now());
    let conn = relay.investigator().await;
    let unmasked = unmask(&conn, chief.sign_unmask(&request)).await;
    conn.close().await;
    match unmasked {
        Err(InvestigatorError::Refused { refusal, .. }) => assert_eq!(refusal, "unknown_warrant"),
        other => panic!("an unmask before approval: {other:?}"),
    }
    nothing_disclosed(&relay);

    // The operator sees what it asks and how much it would disclose, never a message.
    let shown = match admin(
        &relay,
        AdminRequest::Show {
            id: "W-1".into(),
            authority: None,
        },
    )
    .await
    {
        AdminAnswer::Held(views) => views,
        other => panic!("{other:?}"),
    };
    let v = &shown[0];
    assert_eq!(
        (
            v.stage.as_str(),
            v.authority.as_str(),
            v.case.as_str(),
            v.records
        ),
        ("pending", "chief", "CASE-9", 1)
    );
    assert_eq!(v.targets, ["suspect"]);
    assert_eq!(v.legal_basis, "court order 9/2026");
    assert!(!serde_json::to_string(&shown).unwrap().contains("noon"));
    nothing_disclosed(&relay);

    // Approved: disclosed, the same bytes at every collection.
    assert_eq!(
        admin(&relay, approve("W-1", "alice")).await,
        AdminAnswer::Disclosed { records: 1 }
    );
    let (answer, kept) = ask(&relay, &signed, true).await;
    let first = disclosure(answer);
    let bytes = first.encode_to_vec();
    receipts::keep(
        &inv,
        &kept[0],
        &expected("collect", "granted", Some(&bytes)),
    )
    .unwrap();
    let opened = chief.open_disclosure(&first, None).unwrap().disclosure;
    assert_eq!(opened.records[0].text, "meet at noon");
    let again = delivery(&relay, &signed, 1).await;
    assert_eq!(disclosure(again).encode_to_vec(), bytes);
    // Submitted once more: a replay, as any served warrant.
    let (answer, _) = ask(&relay, &signed, false).await;
    assert_eq!(refusal(answer).0, "replayed");
    // Another warrant under the same id, while it was held or since: a replay.
    let mut other = v1::Warrant::decode(signed.warrant.as_ref()).unwrap();
    other.targets.push("contact".into());
    let (answer, _) = ask(&relay, &chief.sign_warrant(&other), true).await;
    assert_eq!(refusal(answer).0, "replayed");

    // Every step is in the log.
    let steps: Vec<(String, String)> = entries(&relay)
        .into_iter()
        .map(|e| (e.kind, e.decision))
        .collect();
    let steps: Vec<(&str, &str)> = steps
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        steps[..6],
        [
            ("warrant", "pending"),
            ("warrant", "pending"),
            ("collect", "pending"),
            ("unmask", "refused"),
            ("review", "granted"),
            ("collect", "granted"),
        ]
    );
    // The metrics tell held warrants from disclosed ones.
    let metrics = relay.running().state().metrics_text();
    for series in [
        "sotto_warrant_requests_total{kind=\"warrant\",decision=\"pending\"} 2",
        "sotto_warrant_requests_total{kind=\"collect\",decision=\"pending\"} 1",
        "sotto_warrant_requests_total{kind=\"collect\",decision=\"granted\"} 2",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    assert!(!metrics.contains("kind=\"warrant\",decision=\"granted\""));
    let granted = &entries(&relay)[4];
    assert_eq!((granted.operator.as_str(), granted.records), ("alice", 1));
    assert_eq!(granted.bundle_sha256, hex::encode(Sha256::digest(&bytes)));
}

#[tokio::test]
async fn hostile_investigator_cannot_undo_a_rejection_which_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, chief) = relay_with_a_suspect(RelayConfig::default(), dir.path()).await;
    let signed = warrant(&relay, &chief, "W-2");
    pending(ask(&relay, &signed, false).await.0);
    let reject = AdminRequest::Reject {
        id: "W-2".into(),
        authority: None,
        by: "alice".into(),
        reason: "no grounds shown".into(),
    };
    assert_eq!(admin(&relay, reject.clone()).await, AdminAnswer::Rejected);
    for collect in [true, false] {
        let (code, message) = refusal(ask(&relay, &signed, collect).await.0);
        assert_eq!(code, "rejected");
        assert!(message.contains("no grounds shown"), "{message}");
    }
    for request in [approve("W-2", "bob"), reject] {
        match admin(&relay, request).await {
            AdminAnswer::Refused(why) => assert!(why.contains("final"), "{why}"),
            other => panic!("a rejected warrant was decided again: {other:?}"),
        }
    }
    nothing_disclosed(&relay);
    let rejected = entries(&relay)
        .into_iter()
        .find(|e| e.kind == "review")
        .unwrap();
    assert_eq!(
        (
            rejected.decision.as_str(),
            rejected.operator.as_str(),
            rejected.review_reason.as_str()
        ),
        ("rejected", "alice", "no grounds shown")
    );
    let report = audit::transparency(&entries(&relay));
    assert_eq!(report[0].warrants_rejected_in_review, 1);
    assert_eq!(report[0].warrants_granted, 0);
}

#[tokio::test]
async fn one_operator_approving_twice_does_not_make_two_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RelayConfig::default();
    config.warrant.approvals = 2;
    let (relay, chief) = relay_with_a_suspect(config, dir.path()).await;
    let signed = warrant(&relay, &chief, "W-3");
    assert_eq!(
        pending(ask(&relay, &signed, false).await.0).approvals_needed,
        2
    );
    assert_eq!(
        admin(&relay, approve("W-3", "alice")).await,
        AdminAnswer::Approved {
            approvals: 1,
            needed: 2
        }
    );
    match admin(&relay, approve("W-3", "alice")).await {
        AdminAnswer::Refused(why) => assert!(why.contains("already"), "{why}"),
        other => panic!("one operator approved twice: {other:?}"),
    }
    let p = pending(ask(&relay, &signed, true).await.0);
    assert_eq!((p.approvals, p.approvals_needed), (1, 2));
    nothing_disclosed(&relay);
    // An operator's name is one plain line, and never empty.
    for by in ["", "  ", "bob\nalice"] {
        assert!(matches!(
            admin(&relay, approve("W-3", by)).await,
            AdminAnswer::Refused(_)
        ));
    }
    assert_eq!(
        admin(&relay, approve("W-3", "bob")).await,
        AdminAnswer::Disclosed { records: 1 }
    );
    disclosure(ask(&relay, &signed, true).await.0);
    let approvals: Vec<(String, u64)> = entries(&relay)
        .into_iter()
        .filter(|e| e.kind == "review")
        .map(|e| (e.operator, e.approvals))
        .collect();
    assert_eq!(approvals, [("alice".into(), 1), ("bob".into(), 2)]);
}

#[tokio::test]
async fn a_held_warrant_outlives_a_restart_and_is_approved_after() {
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, chief) = relay_with_a_suspect(RelayConfig::default(), dir.path()).await;
    let signed = warrant(&relay, &chief, "W-4");
    pending(ask(&relay, &signed, false).await.0);
    relay.restart().await;
    match admin(&relay, AdminRequest::List { pending: true }).await {
        AdminAnswer::Held(views) => {
            assert_eq!(views.len(), 1);
            assert_eq!(
                (views[0].id.as_str(), views[0].stage.as_str()),
                ("W-4", "pending")
            );
        }
        other => panic!("{other:?}"),
    }
    pending(ask(&relay, &signed, true).await.0);
    relay.approve("chief", "W-4", "alice").await;
    let bundle = disclosure(ask(&relay, &signed, true).await.0);
    relay.restart().await;
    assert_eq!(
        disclosure(delivery(&relay, &signed, 1).await).encode_to_vec(),
        bundle.encode_to_vec(),
        "the disclosure kept across a restart"
    );
}

#[tokio::test]
async fn without_review_a_warrant_is_disclosed_at_once_and_collected_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RelayConfig::default();
    config.warrant.review = false;
    let (relay, chief) = relay_with_a_suspect(config, dir.path()).await;
    let signed = warrant(&relay, &chief, "W-5");
    let first = disclosure(ask(&relay, &signed, false).await.0);
    let again = disclosure(delivery(&relay, &signed, 1).await);
    assert_eq!(first.encode_to_vec(), again.encode_to_vec());
    match admin(&relay, AdminRequest::List { pending: true }).await {
        AdminAnswer::Held(views) => assert!(views.is_empty()),
        other => panic!("{other:?}"),
    }
}

fn relay_cli(data: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin("sotto-relay"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_admin_socket_is_private_gone_at_a_clean_stop_and_no_obstacle_when_stale() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let socket = data.join("admin.sock");
    // No relay: a clear word, not a hang.
    std::fs::create_dir_all(&data).unwrap();
    let out = relay_cli(&data, &["warrant", "list"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no relay is running"), "{said}");

    let mut relay = RelayProcess::start(&data, &[]);
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = relay_cli(&data, &["warrant", "list", "--pending"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no warrant held"));
    let out = relay_cli(&data, &["warrant", "approve", "W-9", "--by", "alice"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no warrant \"W-9\" is held"));
    relay.terminate();
    assert!(!socket.exists(), "the socket outlived a clean stop");
    let out = relay_cli(&data, &["warrant", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no relay is running"));

    // Killed: its socket stays, answering nobody; the next relay replaces it.
    let mut relay = RelayProcess::start(&data, &[]);
    relay.kill_9();
    assert!(socket.exists());
    let out = relay_cli(&data, &["warrant", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no relay is running"));
    let _relay = RelayProcess::start(&data, &[]);
    assert!(relay_cli(&data, &["warrant", "list"]).status.success());
}

#[test]
fn approvals_must_be_one_or_two() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("relay.toml"), "[warrant]\napprovals = 3\n").unwrap();
    let out = relay_cli(&data, &["init"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("warrant.approvals = 3 is out of range"),
        "{said}"
    );
}

#[tokio::test]
async fn the_last_approval_checks_the_warrant_again_and_discloses_nothing_that_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, chief) = relay_with_a_suspect(RelayConfig::default(), dir.path()).await;
    let signed = warrant(&relay, &chief, "W-6");
    pending(ask(&relay, &signed, false).await.0);
    // The authority is struck off while its warrant waits.
    let path = relay.data_dir().join("authorities.toml");
    let mut file = sotto_server::warrant::authorities::load(&path).unwrap();
    file.remove("chief").unwrap();
    sotto_server::warrant::authorities::save(&path, &file).unwrap();
    match admin(&relay, approve("W-6", "alice")).await {
        AdminAnswer::Refused(why) => {
            assert!(why.contains("unregistered_authority"), "{why}")
        }
        other => panic!("a warrant of a removed authority was approved: {other:?}"),
    }
    nothing_disclosed(&relay);
    let refused = entries(&relay).pop().unwrap();
    assert_eq!(
        (
            refused.kind.as_str(),
            refused.decision.as_str(),
            refused.reason.as_str()
        ),
        ("review", "refused", "unregistered_authority")
    );
    // Still held, with no approval counted; registered again, it is approved.
    relay.register_authority(&chief);
    assert_eq!(
        admin(&relay, approve("W-6", "alice")).await,
        AdminAnswer::Disclosed { records: 1 }
    );
}

#[tokio::test]
async fn one_operator_cannot_approve_twice_by_spelling_the_name_differently() {
    // "alice", "Alice", " alice", "alice\u{200b}" look alike in `warrant
    // show` (a zero-width space is shown as is): they are one operator.
    let dir = tempfile::tempdir().unwrap();
    let mut config = RelayConfig::default();
    config.warrant.approvals = 2;
    let (relay, chief) = relay_with_a_suspect(config, dir.path()).await;
    let signed = warrant(&relay, &chief, "W-7");
    pending(ask(&relay, &signed, false).await.0);
    assert_eq!(
        admin(&relay, approve("W-7", "alice")).await,
        AdminAnswer::Approved {
            approvals: 1,
            needed: 2
        }
    );
    for by in [
        "Alice",
        " alice",
        "alice ",
        "ALICE",
        "alice\u{200b}",
        "al\u{200d}ice",
        "\u{feff}alice",
        "alice\u{00ad}",
    ] {
        match admin(&relay, approve("W-7", by)).await {
            AdminAnswer::Refused(_) => {}
            other => panic!("{by:?} counted as a second operator after \"alice\": {other:?}"),
        }
    }
    let p = pending(ask(&relay, &signed, true).await.0);
    assert_eq!((p.approvals, p.approvals_needed), (1, 2));
    nothing_disclosed(&relay);
    // Two names that differ in more than spelling are two operators.
    assert_eq!(
        admin(&relay, approve("W-7", "Operator Two")).await,
        AdminAnswer::Disclosed { records: 1 }
    );
}

#[test]
fn local_user_never_finds_the_admin_socket_open_to_others_even_under_a_lax_umask() {
    // A relay started with umask 000 in a data directory the operator made
    // 0755 (`mkdir`): the socket must never be on its path with a mode
    // another user could connect through, not even between its making and
    // its chmod. A local user who connects in that moment keeps the
    // connection, and is the operator.
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(relay_cli(&data, &["init"]).status.success());
    let socket = data.join("admin.sock");
    for _ in 0..8 {
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (stop, socket) = (stop.clone(), socket.clone());
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(meta) = std::fs::symlink_metadata(&socket)
                        && meta.file_type().is_socket()
                    {
                        seen.insert(meta.permissions().mode() & 0o777);
                    }
                }
                seen
            })
        };
        let mut child = std::process::Command::new("sh")
            .args(["-c", "umask 000; exec \"$0\" \"$@\""])
            .arg(bin("sotto-relay"))
            .arg("--data")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !relay_cli(&data, &["warrant", "list"]).status.success() {
            assert!(started.elapsed() < std::time::Duration::from_secs(60));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = std::process::Command::new("kill")
            .arg(child.id().to_string())
            .status();
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        assert!(
            seen.iter().all(|mode| mode & 0o077 == 0),
            "the admin socket was seen with modes {:?}",
            seen.iter().map(|m| format!("{m:o}")).collect::<Vec<_>>()
        );
    }
}
