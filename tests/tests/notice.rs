//! Delayed notice: the people a warrant disclosed are told once its
//! `notify_after` passes (targets, and anyone whose pseudonym was unmasked;
//! nobody else), by the relay's clock set by the test; an authority may
//! postpone it twice, and a hostile one tries to postpone it for ever.

use sotto_client::profile::Profile;
use sotto_client::relay::{Recipient, RelayClient};
use sotto_investigator::{
    Answered, InvestigatorError, InvestigatorKeys, collect_warrant, extend_notice, new_extension,
    new_unmask_request, submit_warrant, unmask,
};
use sotto_proto::v1;
use sotto_server::RelayConfig;
use sotto_server::warrant::{audit, authorities};
use sotto_tests::{PASSPHRASE, TestRelay, TestUser, init_profile};

const SEC: i64 = 1000;
const HOUR: i64 = 3600 * SEC;
const DAY: i64 = 24 * HOUR;
/// 2027-01-15T08:00:00Z: the test's "now".
const T0: i64 = 1_800_000_000_000;
/// The warrant's window ends here, and its notice is due ten days later.
const UNTIL: i64 = T0 + HOUR;
const DUE: i64 = UNTIL + 10 * DAY;

/// A relay whose clock reads `T0`, an authority "chief", a target "suspect".
async fn relay_at_t0(dir: &std::path::Path) -> (TestRelay, InvestigatorKeys, TestUser) {
    let relay = TestRelay::start_with(RelayConfig::default()).await;
    relay.running().clock().set(T0);
    let chief = InvestigatorKeys::generate(&dir.join("chief"), "chief").unwrap();
    relay.register_authority(&chief);
    let suspect = relay.register("suspect").await;
    (relay, chief, suspect)
}

/// Warrant `id` for "suspect" (window `T0 - DAY` to `UNTIL`), told at `notify_after` ms (0: default).
fn warrant(
    relay: &TestRelay,
    by: &InvestigatorKeys,
    id: &str,
    notify_after: i64,
) -> v1::SignedWarrant {
    by.sign_warrant(&v1::Warrant {
        id: id.into(),
        case_reference: "CASE-N".into(),
        authority: by.name.clone(),
        legal_basis: "court order N/2027".into(),
        approver: "judge".into(),
        targets: vec!["suspect".into()],
        window_from: (T0 - DAY) / SEC,
        window_until: UNTIL / SEC,
        not_before: (T0 - HOUR) / SEC,
        expires: (T0 + 2 * DAY) / SEC,
        delivery_key: by.delivery_public().to_vec().into(),
        relay_key: hex::decode(&relay.running().disclosure_key).unwrap().into(),
        notify_after: notify_after / SEC,
    })
}

async fn send(from: &RelayClient, to: &str, text: &str, id: u8) {
    from.send_normal(Recipient::User(to), text, [id; 16])
        .await
        .unwrap();
}

/// Warrant `id`, submitted, approved by the operator `deciding` ms later,
/// and its first delivery collected.
async fn disclosed(
    relay: &TestRelay,
    chief: &InvestigatorKeys,
    id: &str,
    signed: &v1::SignedWarrant,
    deciding: i64,
) -> v1::Disclosure {
    let conn = relay.investigator().await;
    let submitted = submit_warrant(&conn, signed.clone()).await;
    assert!(
        matches!(submitted, Ok(Answered::PendingReview(_))),
        "{submitted:?}"
    );
    relay.running().clock().advance(deciding);
    relay.approve("chief", id, "operator").await;
    let disclosure = match collect_warrant(&conn, signed.clone()).await {
        Ok(Answered::Disclosure(bundle)) => {
            chief.open_disclosure(&bundle, None).unwrap().disclosure
        }
        other => panic!("expected a disclosure, got {other:?}"),
    };
    conn.close().await;
    disclosure
}

fn refusal<T: std::fmt::Debug>(answer: Result<T, InvestigatorError>) -> String {
    match answer {
        Err(InvestigatorError::Refused { refusal, .. }) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn entries(relay: &TestRelay) -> Vec<audit::AuditEntry> {
    audit::entries(&relay.data_dir().join("audit.log")).unwrap()
}

async fn notices(client: &RelayClient) -> Vec<v1::WarrantNotice> {
    client.fetch(100).await.unwrap().notices
}

#[tokio::test]
async fn targets_and_unmasked_people_are_told_once_the_notice_is_due_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, chief, suspect) = relay_at_t0(dir.path()).await;
    // "contact" uses the terminal client's profile: its `sync` prints the notice.
    let contact_dir = dir.path().join("contact");
    init_profile(&relay, &contact_dir, "contact").await;
    let mut profile = Profile::open(&contact_dir, PASSPHRASE).unwrap();
    let contact = profile.connect().await.unwrap();
    let bystander = relay.register("bystander").await;
    send(&suspect.client, "contact", "one", 1).await;
    send(&contact, "suspect", "two", 2).await;
    send(&bystander.client, "suspect", "three", 3).await;
    send(&bystander.client, "contact", "not the suspect's", 4).await;
    relay.running().clock().advance(SEC);

    let signed = warrant(&relay, &chief, "W-N", DUE);
    let disclosure = disclosed(&relay, &chief, "W-N", &signed, 2 * HOUR).await;
    assert_eq!(disclosure.records.len(), 3);
    // The contact's pseudonym is unmasked; the bystander's is not.
    let contact_pseudonym = disclosure.records[0]
        .participants
        .iter()
        .find(|p| *p != "suspect")
        .unwrap()
        .clone();
    let conn = relay.investigator().await;
    let now = relay.running().clock().now_secs();
    let request = new_unmask_request(&chief, "W-N", vec![contact_pseudonym], "who", now);
    unmask(&conn, chief.sign_unmask(&request)).await.unwrap();
    conn.close().await;

    // Not a moment before it is due.
    relay.running().clock().set(DUE - SEC);
    for client in [&suspect.client, &contact, &bystander.client] {
        assert!(notices(client).await.is_empty());
    }
    assert!(!entries(&relay).iter().any(|e| e.kind == "notice"));
    assert_eq!(audit::outstanding(&entries(&relay)).awaiting_notice, 1);

    relay.running().clock().set(DUE);
    let told = notices(&suspect.client).await;
    assert_eq!(told.len(), 1, "{told:?}");
    let n = &told[0];
    assert_eq!(
        (
            n.authority.as_str(),
            n.warrant_id.as_str(),
            n.case_reference.as_str()
        ),
        ("chief", "W-N", "CASE-N")
    );
    assert_eq!(n.legal_basis, "court order N/2027");
    assert_eq!(
        (n.window_from, n.window_until),
        ((T0 - DAY) / SEC, UNTIL / SEC)
    );
    assert_eq!((n.records, n.target), (3, true));
    // It comes again until acknowledged, then never.
    assert_eq!(notices(&suspect.client).await, told);
    suspect.client.ack_notices(vec![n.id]).await.unwrap();
    assert!(notices(&suspect.client).await.is_empty());
    // The bystander was never named to the investigator: not told.
    assert!(notices(&bystander.client).await.is_empty());

    // The contact's `sotto sync` prints it, apart from messages.
    contact.close().await;
    let mut out = Vec::new();
    sotto_client::commands::sync::run(&mut profile, false, &mut out)
        .await
        .unwrap();
    let printed = String::from_utf8(out).unwrap();
    let notice_line = printed
        .lines()
        .find(|l| l.contains("[notice from the relay]"))
        .unwrap_or_else(|| panic!("no notice in {printed:?}"));
    assert!(
        notice_line.contains("you were not a target"),
        "{notice_line}"
    );
    assert!(notice_line.contains("warrant W-N"), "{notice_line}");
    assert!(
        notice_line.contains("disclosed 2 of your normal messages"),
        "{notice_line}"
    );
    assert!(
        notice_line.contains("Secret chats were not disclosed"),
        "{notice_line}"
    );
    // Shown once: the next sync prints no notice (the relay dropped it on the ack).
    let mut again = Vec::new();
    sotto_client::commands::sync::run(&mut profile, false, &mut again)
        .await
        .unwrap();
    assert!(!String::from_utf8(again).unwrap().contains("notice"));
    drop(profile);

    // One log entry: two people told; the unmasked name is not in it.
    let logged: Vec<_> = entries(&relay)
        .into_iter()
        .filter(|e| e.kind == "notice")
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!((logged[0].count, logged[0].warrant_id.as_str()), (2, "W-N"));
    // The transparency report counts them, and what is still open.
    let report = audit::transparency(&entries(&relay));
    assert_eq!(report.len(), 1, "one half-year: {report:?}");
    let p = &report[0];
    assert_eq!((p.people_notified, p.warrants_notified), (2, 1));
    assert_eq!((p.warrants_approved_in_review, p.deliveries), (1, 1));
    assert_eq!(p.median_secs_to_decision, Some(2 * 3600));
    let open = audit::outstanding(&entries(&relay));
    assert_eq!((open.pending_review, open.awaiting_notice), (0, 0));
    let line = std::fs::read_to_string(relay.data_dir().join("audit.log")).unwrap();
    let notice_line = line.lines().find(|l| l.contains("\"notice\"")).unwrap();
    assert!(!notice_line.contains("contact"), "{notice_line}");
}

#[tokio::test]
async fn hostile_authority_cannot_postpone_a_notice_for_ever_or_for_someone_else() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, chief, suspect) = relay_at_t0(dir.path()).await;
    let rival = InvestigatorKeys::generate(&dir.path().join("rival"), "rival").unwrap();
    relay.register_authority(&rival);
    send(&suspect.client, "suspect", "note to self", 1).await;
    relay.running().clock().advance(SEC);

    // A notice asked for too early, too late, or at an absurd time: refused at once.
    let conn = relay.investigator().await;
    let max = UNTIL + 365 * DAY;
    for (id, at, code) in [
        ("W-early", UNTIL - SEC, "notice_too_early"),
        ("W-late", max + SEC, "notice_too_late"),
        ("W-neg", -SEC, "notice_too_early"),
        ("W-huge", i64::MAX / SEC * SEC, "notice_too_late"),
    ] {
        let answer = submit_warrant(&conn, warrant(&relay, &chief, id, at)).await;
        assert_eq!(refusal(answer), code, "{id}");
    }
    conn.close().await;

    // A warrant with the default notice: 180 days after its window.
    let signed = warrant(&relay, &chief, "W-X", 0);
    disclosed(&relay, &chief, "W-X", &signed, 2 * HOUR).await;
    let due = UNTIL / SEC + 180 * 86_400;
    let conn = relay.investigator().await;
    let now = || relay.running().clock().now_secs();
    let extend = |by: &InvestigatorKeys, id: &str, at: i64| {
        by.sign_extension(&new_extension(
            by,
            id,
            at,
            "the investigation goes on",
            now(),
        ))
    };

    // Beyond the maximum in one step, or to the end of time: refused.
    for at in [due + 365 * 86_400 + 1, i64::MAX] {
        let answer = extend_notice(&conn, extend(&chief, "W-X", at)).await;
        assert_eq!(refusal(answer), "notice_too_late");
    }
    // Earlier is not an extension.
    let answer = extend_notice(&conn, extend(&chief, "W-X", due - 1)).await;
    assert_eq!(refusal(answer), "not_an_extension");
    // Another authority cannot postpone it, even naming its id.
    let answer = extend_notice(&conn, extend(&rival, "W-X", due + 1)).await;
    assert_eq!(refusal(answer), "unknown_warrant");
    // A forged signature: unverifiable.
    let mut forged = extend(&chief, "W-X", due + 1);
    forged.signature = rival
        .sign_extension(&new_extension(&chief, "W-X", due + 1, "forged", now()))
        .signature;
    assert_eq!(refusal(extend_notice(&conn, forged).await), "bad_signature");
    // A stale request.
    let stale = chief.sign_extension(&new_extension(&chief, "W-X", due + 1, "old", now() - 3600));
    assert_eq!(refusal(extend_notice(&conn, stale).await), "stale");

    // Twice, each by at most the maximum; a replay and a third are refused.
    let first = extend(&chief, "W-X", due + 100 * 86_400);
    let extended = extend_notice(&conn, first.clone()).await.unwrap();
    assert_eq!(
        (extended.notify_after, extended.extensions),
        (due + 100 * 86_400, 1)
    );
    assert_eq!(refusal(extend_notice(&conn, first).await), "replayed");
    let later = due + 100 * 86_400 + 365 * 86_400;
    let extended = extend_notice(&conn, extend(&chief, "W-X", later))
        .await
        .unwrap();
    assert_eq!((extended.notify_after, extended.extensions), (later, 2));
    let answer = extend_notice(&conn, extend(&chief, "W-X", later + 1)).await;
    assert_eq!(refusal(answer), "no_more_extensions");

    // A newcomer registered under the authority's name (another key) cannot either.
    let newcomer = InvestigatorKeys::generate(&dir.path().join("newcomer"), "chief").unwrap();
    let path = relay.data_dir().join("authorities.toml");
    let mut file = authorities::load(&path).unwrap();
    file.remove("chief").unwrap();
    file.add("chief", &newcomer.public_key_hex()).unwrap();
    authorities::save(&path, &file).unwrap();
    let answer = extend_notice(&conn, extend(&newcomer, "W-X", later + 1)).await;
    assert_eq!(refusal(answer), "unknown_warrant");

    // Not told at the first due time, told at the postponed one.
    relay.running().clock().set(due * SEC);
    assert!(notices(&suspect.client).await.is_empty());
    relay.running().clock().set(later * SEC);
    assert_eq!(notices(&suspect.client).await.len(), 1);
    // Once due, too late to postpone (the authority's key again).
    let mut file = authorities::load(&path).unwrap();
    file.remove("chief").unwrap();
    file.add("chief", &chief.public_key_hex()).unwrap();
    authorities::save(&path, &file).unwrap();
    let answer = extend_notice(&conn, extend(&chief, "W-X", later + 1)).await;
    assert_eq!(refusal(answer), "already_notified");
    conn.close().await;

    // Every extension, granted or refused, is in the log.
    let extensions: Vec<_> = entries(&relay)
        .into_iter()
        .filter(|e| e.kind == "extension" || (e.kind == "unverifiable" && e.request == "extension"))
        .map(|e| e.decision)
        .collect();
    assert_eq!(extensions.iter().filter(|d| *d == "granted").count(), 2);
    let report = audit::transparency(&entries(&relay));
    let granted: u64 = report.iter().map(|p| p.notice_extensions_granted).sum();
    assert_eq!(granted, 2);
    assert!(extensions.len() >= 8, "{extensions:?}");
}

/// A hostile investigator asks to have the targets told as soon as the
/// window ends, and collects the rest of the window only after they were:
/// the notice would understate what was disclosed. Notices wait for the
/// warrant's expiry (no delivery or unmask after it), so they tell it all.
#[tokio::test]
async fn hostile_investigator_cannot_make_a_notice_understate_what_was_disclosed() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, chief, suspect) = relay_at_t0(dir.path()).await;
    let contact = relay.register("contact").await;
    send(&suspect.client, "contact", "one", 1).await;
    relay.running().clock().advance(SEC);
    // Told as soon as the window ends; the warrant stays valid a day longer.
    let signed = warrant(&relay, &chief, "W-U", UNTIL);
    let first = disclosed(&relay, &chief, "W-U", &signed, 0).await;
    assert_eq!(first.records.len(), 1);

    // The window runs on; the suspect writes more.
    relay.running().clock().set(UNTIL - 10 * SEC);
    send(&suspect.client, "contact", "two", 2).await;
    send(&contact.client, "suspect", "three", 3).await;

    // The window has ended, the warrant has not expired: nobody told yet.
    relay.running().clock().set(UNTIL + 60 * SEC);
    assert!(notices(&suspect.client).await.is_empty());

    // The investigator collects the rest of the window.
    let conn = relay.investigator().await;
    let rest = match collect_warrant(&conn, signed.clone()).await {
        Ok(Answered::Disclosure(bundle)) => {
            chief.open_disclosure(&bundle, None).unwrap().disclosure
        }
        other => panic!("expected a delivery, got {other:?}"),
    };
    conn.close().await;
    assert_eq!(rest.records.len(), 2);

    // Once the warrant expired, the suspect is told of all three.
    relay.running().clock().set(T0 + 2 * DAY);
    let told = notices(&suspect.client).await;
    assert_eq!(told.iter().map(|n| n.records).collect::<Vec<_>>(), [3]);
}
