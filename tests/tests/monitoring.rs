//! Time through the relay's own clock, set by the test (never slept for):
//! record times, audit entries, expiry; and monitoring warrants, served in
//! deliveries as their window runs, attacked by a hostile investigator.

use sotto_client::relay::Recipient;
use sotto_investigator::{
    Answered, InvestigatorError, InvestigatorKeys, collect_warrant, new_unmask_request, unmask,
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
    })
}

async fn send(from: &TestUser, to: &str, text: &str, id: u8) {
    from.client
        .send_normal(Recipient::User(to), text, [id; 16])
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
    send(&suspect, "contact", "meet at noon", 1).await;
    let signed = warrant(&relay, &chief, "W-1", (T0 - DAY, T0 + HOUR, T0 + 2 * DAY));
    let conn = relay.investigator().await;
    let submitted = sotto_investigator::submit_warrant(&conn, signed.clone()).await;
    assert!(matches!(submitted, Ok(Answered::PendingReview(_))));
    relay.approve("chief", "W-1", "operator").await;
    let disclosure = opened(&chief, collect_warrant(&conn, signed.clone()).await);
    // The record carries the relay's time, not the machine's.
    assert_eq!(disclosure.records.len(), 1);
    assert_eq!(disclosure.records[0].sent_at, T0);
    // So do the audit entries: every one so far was written at T0.
    let logged = entries(&relay);
    assert!(logged.len() >= 3);
    for e in &logged {
        assert!(e.time.starts_with("2027-01-15T08:00:00"), "{e:?}");
    }
    // Past the warrant's expiry by the relay's clock, its pseudonyms are no
    // longer unmasked (the machine's clock is a year before).
    relay.running().clock().advance(2 * DAY);
    let pseudonym = disclosure.pseudonyms[0].clone();
    let request = new_unmask_request(&chief, "W-1", vec![pseudonym], "who", (T0 + 2 * DAY) / SEC);
    let late = unmask(&conn, chief.sign_unmask(&request)).await;
    assert_eq!(refusal(late), "expired");
    let last = entries(&relay).pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.reason.as_str()),
        ("unmask", "expired")
    );
    assert!(last.time.starts_with("2027-01-17T08:00:00"), "{last:?}");
    conn.close().await;
}
