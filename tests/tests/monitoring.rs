//! Time through the relay's own clock, set by the test (never slept for):
//! record times, audit entries, expiry; and monitoring warrants, served in
//! deliveries as their window runs, attacked by a hostile investigator.

use prost::Message;
use sotto_client::relay::{Recipient, RelayClient};
use sotto_investigator::{
    Answered, InvestigatorError, InvestigatorKeys, collect_delivery, collect_warrant,
    new_unmask_request, unmask,
};
use sotto_proto::v1;
use sotto_server::RelayConfig;
use sotto_server::warrant::audit;
use sotto_tests::{TestRelay, TestUser};

const SEC: i64 = 1000;
const HOUR: i64 = 3600 * SEC;
const DAY: i64 = 24 * HOUR;
/// 2027-01-15T08:00:00Z: the test's "now", far from the machine's.
const T0: i64 = 1_800_000_000_000;

/// A relay whose clock reads `T0`, with a registered authority "chief", a
/// target "suspect" and "contact", who is not one.
async fn relay_at_t0(dir: &std::path::Path) -> (TestRelay, InvestigatorKeys, TestUser, TestUser) {
    let relay = TestRelay::start_with(RelayConfig::default()).await;
    relay.running().clock().set(T0);
    let chief = InvestigatorKeys::generate(&dir.join("chief"), "chief").unwrap();
    relay.register_authority(&chief);
    let suspect = relay.register("suspect").await;
    let contact = relay.register("contact").await;
    (relay, chief, suspect, contact)
}

/// Warrant `id` for "suspect", its window and expiry in milliseconds (whole seconds).
fn warrant(
    relay: &TestRelay,
    chief: &InvestigatorKeys,
    id: &str,
    (from, until, expires): (i64, i64, i64),
) -> v1::SignedWarrant {
    chief.sign_warrant(&v1::Warrant {
        id: id.into(),
        case_reference: "CASE-15".into(),
        authority: chief.name.clone(),
        legal_basis: "court order 15/2027".into(),
        approver: "judge".into(),
        targets: vec!["suspect".into()],
        window_from: from / SEC,
        window_until: until / SEC,
        not_before: (T0 - HOUR) / SEC,
        expires: expires / SEC,
        delivery_key: chief.delivery_public().to_vec().into(),
        relay_key: hex::decode(&relay.running().disclosure_key).unwrap().into(),
        notify_after: 0,
    })
}

async fn send(from: &RelayClient, to: &str, text: &str, id: u8) {
    from.send_normal(Recipient::User(to), text, [id; 16])
        .await
        .unwrap();
}

fn opened(chief: &InvestigatorKeys, answer: Result<Answered, InvestigatorError>) -> v1::Disclosure {
    match answer {
        Ok(Answered::Disclosure(bundle)) => {
            chief.open_disclosure(&bundle, None).unwrap().disclosure
        }
        other => panic!("expected a disclosure, got {other:?}"),
    }
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

#[tokio::test]
async fn the_relays_clock_stamps_records_and_entries_and_decides_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, chief, suspect, _contact) = relay_at_t0(dir.path()).await;
    send(&suspect.client, "contact", "meet at noon", 1).await;
    // A delivery holds what was sent before the moment it is made.
    relay.running().clock().advance(SEC);
    let signed = warrant(&relay, &chief, "W-1", (T0 - DAY, T0 + HOUR, T0 + 2 * DAY));
    let conn = relay.investigator().await;
    let submitted = sotto_investigator::submit_warrant(&conn, signed.clone()).await;
    assert!(matches!(submitted, Ok(Answered::PendingReview(_))));
    relay.approve("chief", "W-1", "operator").await;
    let disclosure = opened(&chief, collect_warrant(&conn, signed.clone()).await);
    // The record carries the relay's time, not the machine's.
    assert_eq!(disclosure.records.len(), 1);
    assert_eq!(disclosure.records[0].sent_at, T0);
    // So do the audit entries: every one so far was written at T0 + 1 s.
    let logged = entries(&relay);
    assert!(logged.len() >= 3);
    for e in &logged {
        assert!(e.time.starts_with("2027-01-15T08:00:01"), "{e:?}");
    }
    // Past the warrant's expiry by the relay's clock, its pseudonyms are no
    // longer unmasked (the machine's clock is a year before).
    relay.running().clock().advance(2 * DAY);
    let pseudonym = disclosure.pseudonyms[0].clone();
    let now = relay.running().clock().now_secs();
    let request = new_unmask_request(&chief, "W-1", vec![pseudonym], "who", now);
    let late = unmask(&conn, chief.sign_unmask(&request)).await;
    assert_eq!(refusal(late), "expired");
    let last = entries(&relay).pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.reason.as_str()),
        ("unmask", "expired")
    );
    assert!(last.time.starts_with("2027-01-17T08:00:01"), "{last:?}");
    conn.close().await;
}

/// Every record's text in a delivery, in order.
fn texts(d: &v1::Disclosure) -> Vec<&str> {
    d.records.iter().map(|r| r.text.as_str()).collect()
}

fn bundle(answer: Result<Answered, InvestigatorError>) -> v1::DisclosureBundle {
    match answer {
        Ok(Answered::Disclosure(bundle)) => bundle,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn a_monitoring_warrant_is_delivered_in_batches_of_new_records_until_its_window_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, chief, suspect, contact) = relay_at_t0(dir.path()).await;
    let other = relay.register("other").await;
    let until = T0 + 3 * HOUR;
    let signed = warrant(&relay, &chief, "W-M", (T0 - DAY, until, T0 + 2 * DAY));
    send(&suspect.client, "contact", "one", 1).await;
    relay.running().clock().advance(60 * SEC);
    let conn = relay.investigator().await;
    let submitted = sotto_investigator::submit_warrant(&conn, signed.clone()).await;
    assert!(matches!(submitted, Ok(Answered::PendingReview(_))));
    relay.approve("chief", "W-M", "operator").await;

    let first = bundle(collect_warrant(&conn, signed.clone()).await);
    let d1 = chief.open_disclosure(&first, None).unwrap().disclosure;
    assert_eq!(
        (d1.delivery, d1.is_final, texts(&d1)),
        (1, false, vec!["one"])
    );
    assert_eq!((d1.covers_from, d1.covers_until), (T0 - DAY, T0 + 60 * SEC));

    relay.running().clock().advance(HOUR);
    send(&suspect.client, "contact", "two", 2).await;
    send(&contact.client, "suspect", "three", 3).await;
    send(&other.client, "suspect", "hello", 4).await;
    send(&contact.client, "other", "not about the suspect", 5).await;
    relay.running().clock().advance(60 * SEC);
    let second = bundle(collect_warrant(&conn, signed.clone()).await);
    let d2 = chief.open_disclosure(&second, None).unwrap().disclosure;
    assert_eq!((d2.delivery, d2.is_final), (2, false));
    assert_eq!(texts(&d2), vec!["two", "three", "hello"]);
    assert_eq!(d2.covers_from, d1.covers_until, "no gap, no overlap");
    // The contact is the same pseudonym in both deliveries.
    let contact_in = |d: &v1::Disclosure, text: &str| {
        let r = d.records.iter().find(|r| r.text == text).unwrap();
        r.participants
            .iter()
            .find(|p| *p != "suspect")
            .unwrap()
            .clone()
    };
    assert_eq!(contact_in(&d1, "one"), contact_in(&d2, "two"));
    let other_pseudonym = d2.records[2].from.clone();
    assert_ne!(other_pseudonym, contact_in(&d2, "two"));
    conn.close().await;

    // What was delivered outlives a restart (the clock is the test's again).
    relay.restart().await;
    let suspect = relay.login(&suspect).await;
    relay.running().clock().set(until - SEC);
    send(&suspect, "contact", "four", 6).await;
    relay.running().clock().set(until);
    send(&suspect, "contact", "five, after the window", 7).await;
    relay.running().clock().advance(60 * SEC);
    let conn = relay.investigator().await;
    let third = bundle(collect_warrant(&conn, signed.clone()).await);
    let d3 = chief.open_disclosure(&third, None).unwrap().disclosure;
    assert_eq!(
        (d3.delivery, d3.is_final, texts(&d3)),
        (3, true, vec!["four"])
    );
    assert_eq!((d3.covers_from, d3.covers_until), (d2.covers_until, until));

    // Nothing more after the final one; each one fetched again is the same bytes.
    let more = collect_warrant(&conn, signed.clone()).await;
    assert_eq!(refusal(more), "all_delivered");
    for (n, kept) in [(1, &first), (2, &second), (3, &third)] {
        let again = bundle(collect_delivery(&conn, signed.clone(), Some(n)).await);
        assert_eq!(again.encode_to_vec(), kept.encode_to_vec(), "delivery {n}");
    }

    // A pseudonym first issued in delivery 2 is unmasked under the warrant.
    let now = relay.running().clock().now_secs();
    let request = new_unmask_request(&chief, "W-M", vec![other_pseudonym], "who", now);
    let sealed = unmask(&conn, chief.sign_unmask(&request)).await.unwrap();
    let relay_key = chief.open_disclosure(&first, None).unwrap().relay_key;
    let names = chief.open_unmasked(&sealed, &relay_key, &request).unwrap();
    assert_eq!(names[0].username, "other");
    conn.close().await;

    // Each delivery is an entry of the log, the last one marked final.
    let collected: Vec<_> = entries(&relay)
        .into_iter()
        .filter(|e| e.kind == "collect" && e.decision == "granted")
        .map(|e| (e.delivery, e.final_delivery))
        .collect();
    assert_eq!(
        collected,
        vec![
            (1, false),
            (2, false),
            (3, true),
            (1, false),
            (2, false),
            (3, true)
        ]
    );
    // The report counts three deliveries: each once, however often fetched.
    let report = audit::transparency(&entries(&relay));
    assert_eq!(report.iter().map(|p| p.deliveries).sum::<u64>(), 3);
}

#[tokio::test]
async fn hostile_investigator_asking_for_a_delivery_not_made_is_refused_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, chief, suspect, _contact) = relay_at_t0(dir.path()).await;
    let window = (T0 - DAY, T0 + DAY, T0 + 2 * DAY);
    let mine = warrant(&relay, &chief, "W-1", window);
    let other = warrant(&relay, &chief, "W-2", window);
    let conn = relay.investigator().await;
    for signed in [&mine, &other] {
        let submitted = sotto_investigator::submit_warrant(&conn, signed.clone()).await;
        assert!(matches!(submitted, Ok(Answered::PendingReview(_))));
        // Before approval, asked for by number or not: pending (exit 3), nothing disclosed.
        for n in [None, Some(1)] {
            let early = collect_delivery(&conn, signed.clone(), n).await;
            assert!(matches!(early, Ok(Answered::PendingReview(_))), "{early:?}");
        }
    }
    relay.approve("chief", "W-1", "operator").await;
    relay.approve("chief", "W-2", "operator").await;
    bundle(collect_warrant(&conn, mine.clone()).await);
    bundle(collect_warrant(&conn, other.clone()).await);
    relay.running().clock().advance(HOUR);
    send(&suspect.client, "contact", "later", 1).await;
    relay.running().clock().advance(SEC);
    // W-2 has a delivery 2; W-1 has not.
    bundle(collect_warrant(&conn, other.clone()).await);
    for asked in [0, 2, 3, u64::MAX] {
        let answer = collect_delivery(&conn, mine.clone(), Some(asked)).await;
        assert_eq!(refusal(answer), "no_such_delivery", "delivery {asked}");
    }
    let refused = entries(&relay)
        .into_iter()
        .filter(|e| e.kind == "collect" && e.reason == "no_such_delivery" && e.warrant_id == "W-1")
        .count();
    assert_eq!(refused, 4);
    // Past its expiry, no new delivery is made; one made is still fetched again.
    relay.running().clock().advance(2 * DAY);
    assert_eq!(
        refusal(collect_warrant(&conn, mine.clone()).await),
        "expired"
    );
    bundle(collect_delivery(&conn, mine.clone(), Some(1)).await);
    conn.close().await;
}

#[tokio::test]
async fn hostile_investigator_cannot_fill_the_relays_disk_with_deliveries_of_one_warrant() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RelayConfig::default();
    // The authority's budget is not what stops it here.
    config.warrant.requests_per_minute = 10_000;
    let relay = TestRelay::start_with(config).await;
    relay.running().clock().set(T0);
    let chief = InvestigatorKeys::generate(&dir.path().join("chief"), "chief").unwrap();
    relay.register_authority(&chief);
    relay.register("suspect").await;
    let signed = warrant(
        &relay,
        &chief,
        "W-F",
        (T0 - DAY, T0 + 30 * DAY, T0 + 31 * DAY),
    );
    let conn = relay.investigator().await;
    let submitted = sotto_investigator::submit_warrant(&conn, signed.clone()).await;
    assert!(matches!(submitted, Ok(Answered::PendingReview(_))));
    relay.approve("chief", "W-F", "operator").await;
    let max = sotto_server::warrant::MAX_DELIVERIES;
    for n in 1..=max {
        let d = bundle(collect_warrant(&conn, signed.clone()).await);
        if n == max {
            let last = chief.open_disclosure(&d, None).unwrap().disclosure;
            assert_eq!((last.delivery, last.is_final), (max, false));
        }
    }
    let over = collect_warrant(&conn, signed.clone()).await;
    assert_eq!(refusal(over), "delivery_limit");
    // What was made is still there to fetch again.
    bundle(collect_delivery(&conn, signed.clone(), Some(max)).await);
    conn.close().await;
}
