//! The warrant module through a real relay, attacked as a hostile
//! investigator, an unregistered party and a curious operator would: every
//! refusal with its code, the window that cannot be stretched, warrants bound
//! to one relay, ids per authority, unmask after expiry, replayed and read
//! unmask answers, floods of forgeries, the secret-chat boundary, pseudonyms,
//! the audit chain and the transparency report.

use std::path::Path;

use prost::Message;
use sotto_client::relay::{ClientError, Recipient};
use sotto_investigator::{
    Answered, InvestigatorError, InvestigatorKeys, RelayConnection, collect_warrant,
    new_unmask_request, submit_warrant, unmask as unmask_request,
};
use sotto_proto::v1::{self, ErrorCode};
use sotto_server::warrant::audit::{self, AuditEntry, Verified};
use sotto_server::warrant::authorities;
use sotto_tests::TestRelay;

const DAY: i64 = 86_400;

fn now() -> i64 {
    sotto_server::now_ms() / 1000
}

fn investigator(dir: &Path, name: &str) -> InvestigatorKeys {
    InvestigatorKeys::generate(&dir.join(name), name).unwrap()
}

fn register_authority(relay: &TestRelay, keys: &InvestigatorKeys) {
    relay.register_authority(keys);
}

fn relay_key(relay: &TestRelay) -> Vec<u8> {
    hex::decode(&relay.running().disclosure_key).unwrap()
}

fn warrant(relay: &TestRelay, keys: &InvestigatorKeys, id: &str, targets: &[&str]) -> v1::Warrant {
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
        relay_key: relay_key(relay).into(),
        notify_after: 0,
    }
}

async fn connect(relay: &TestRelay) -> RelayConnection {
    RelayConnection::connect(&relay.addr.to_string(), relay.fingerprint)
        .await
        .unwrap()
}

/// Serves a warrant as an investigator and an operator do: submitted, held
/// for review, approved, collected. Its disclosure, or why not.
async fn submit(
    relay: &TestRelay,
    signed: v1::SignedWarrant,
) -> Result<v1::DisclosureBundle, InvestigatorError> {
    let conn = connect(relay).await;
    let answer = match submit_warrant(&conn, signed.clone()).await {
        Ok(Answered::PendingReview(p)) => {
            let authority = v1::Warrant::decode(signed.warrant.as_ref())
                .unwrap()
                .authority;
            relay.approve(&authority, &p.warrant_id, "operator").await;
            collect_warrant(&conn, signed).await
        }
        other => other,
    };
    conn.close().await;
    match answer? {
        Answered::Disclosure(bundle) => Ok(bundle),
        Answered::PendingReview(p) => panic!("still pending after approval: {p:?}"),
    }
}

/// Signs and sends an unmask request; returns the request with the answer.
async fn unmask_raw(
    relay: &TestRelay,
    keys: &InvestigatorKeys,
    warrant_id: &str,
    pseudonyms: &[String],
) -> (
    v1::SignedUnmaskRequest,
    v1::UnmaskRequest,
    Result<v1::SealedBundle, InvestigatorError>,
) {
    let request = new_unmask_request(
        keys,
        warrant_id,
        pseudonyms.to_vec(),
        "identify a contact",
        now(),
    );
    let signed = keys.sign_unmask(&request);
    let conn = connect(relay).await;
    let answer = unmask_request(&conn, signed.clone()).await;
    conn.close().await;
    (signed, request, answer)
}

async fn unmask(
    relay: &TestRelay,
    keys: &InvestigatorKeys,
    warrant_id: &str,
    pseudonyms: &[String],
) -> Result<Vec<(String, String)>, InvestigatorError> {
    let (_, request, answer) = unmask_raw(relay, keys, warrant_id, pseudonyms).await;
    Ok(keys
        .open_unmasked(&answer?, &pin(relay), &request)?
        .into_iter()
        .map(|u| (u.pseudonym, u.username))
        .collect())
}

fn refusal_code<T: std::fmt::Debug>(result: Result<T, InvestigatorError>) -> String {
    match result {
        Err(InvestigatorError::Refused { refusal, .. }) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn open(keys: &InvestigatorKeys, sealed: &v1::DisclosureBundle) -> v1::Disclosure {
    keys.open_disclosure(sealed, None).unwrap().disclosure
}

/// "suspect" wrote "hello" to "contact": one record, one pseudonym.
async fn suspect_wrote_to_contact(relay: &TestRelay) {
    let suspect = relay.register("suspect").await;
    relay.register("contact").await;
    suspect
        .client
        .send_normal(Recipient::User("contact"), "hello", [1; 16])
        .await
        .unwrap();
}

/// The disclosure of a fresh warrant `id` against "suspect", opened.
async fn disclosed(relay: &TestRelay, keys: &InvestigatorKeys, id: &str) -> v1::Disclosure {
    let signed = keys.sign_warrant(&warrant(relay, keys, id, &["suspect"]));
    open(keys, &submit(relay, signed).await.unwrap())
}

fn pin(relay: &TestRelay) -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::VerifyingKey::try_from(relay_key(relay).as_slice()).unwrap()
}

fn entries(relay: &TestRelay) -> Vec<AuditEntry> {
    audit::entries(&relay.data_dir().join("audit.log")).unwrap()
}

#[tokio::test]
async fn every_refusal_has_its_reason_and_is_logged() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    let stranger = investigator(dir.path(), "stranger");
    register_authority(&relay, &chief);
    relay.register("target-one").await;
    let w = |id: &str, targets: &[&str]| warrant(&relay, &chief, id, targets);

    let mut unverifiable: Vec<(&str, v1::SignedWarrant)> = Vec::new();
    unverifiable.push((
        "unregistered_authority",
        stranger.sign_warrant(&warrant(&relay, &stranger, "W-a", &["target-one"])),
    ));
    let mut bad_sig = chief.sign_warrant(&w("W-b", &["target-one"]));
    let mut sig = bad_sig.signature.to_vec();
    sig[0] ^= 1;
    bad_sig.signature = sig.into();
    unverifiable.push(("bad_signature", bad_sig));
    // Tampered: a target added after signing.
    let mut tampered = chief.sign_warrant(&w("W-c", &["target-one"]));
    let mut t = v1::Warrant::decode(tampered.warrant.as_ref()).unwrap();
    t.targets.push("someone-else".into());
    tampered.warrant = t.encode_to_vec().into();
    unverifiable.push(("bad_signature", tampered));

    let mut refused: Vec<(&str, v1::SignedWarrant)> = Vec::new();
    let mut expired = w("W-d", &["target-one"]);
    expired.expires = now() - 1;
    refused.push(("expired", chief.sign_warrant(&expired)));
    let mut early = w("W-e", &["target-one"]);
    early.not_before = now() + DAY;
    refused.push(("not_yet_valid", chief.sign_warrant(&early)));
    let mut long = w("W-f", &["target-one"]);
    long.window_from = now() - 91 * DAY;
    refused.push(("window_too_long", chief.sign_warrant(&long)));
    refused.push((
        "unknown_target",
        chief.sign_warrant(&w("W-g", &["nobody-here"])),
    ));
    refused.push(("no_targets", chief.sign_warrant(&w("W-h", &[]))));
    let mut backwards = w("W-j", &["target-one"]);
    backwards.window_until = backwards.window_from;
    refused.push(("bad_window", chief.sign_warrant(&backwards)));
    let mut low_order = w("W-k", &["target-one"]);
    low_order.delivery_key = vec![0u8; 32].into();
    refused.push(("bad_delivery_key", chief.sign_warrant(&low_order)));
    let mut elsewhere = w("W-l", &["target-one"]);
    elsewhere.relay_key = vec![7u8; 32].into();
    refused.push(("wrong_relay", chief.sign_warrant(&elsewhere)));

    for (expected, signed) in unverifiable.iter().chain(&refused) {
        assert_eq!(
            refusal_code(submit(&relay, signed.clone()).await),
            *expected
        );
    }
    // Replayed: the first is granted, the same id again is refused.
    let signed = chief.sign_warrant(&w("W-i", &["target-one"]));
    submit(&relay, signed.clone()).await.unwrap();
    assert_eq!(refusal_code(submit(&relay, signed).await), "replayed");

    let entries = entries(&relay);
    let logged: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.kind.as_str(), e.reason.as_str()))
        .collect();
    let mut want: Vec<(&str, &str)> = unverifiable
        .iter()
        .map(|(code, _)| ("unverifiable", *code))
        .collect();
    want.extend(refused.iter().map(|(code, _)| ("warrant", *code)));
    // Held, approved in review, collected; then the copy is a replay.
    want.extend([
        ("warrant", ""),
        ("review", ""),
        ("collect", ""),
        ("unverifiable", "replayed"),
    ]);
    assert_eq!(logged, want);
    // What an unverifiable request claimed is not taken into the log.
    assert!(
        entries[..3]
            .iter()
            .all(|e| e.warrant_id.is_empty() && e.authority.is_empty() && e.targets.is_empty())
    );
    // A refused warrant of a registered authority is logged with its window and relay.
    let long_entry = entries
        .iter()
        .find(|e| e.reason == "window_too_long")
        .unwrap();
    assert_eq!(long_entry.window_until - long_entry.window_from, 92 * DAY);
    assert_eq!(long_entry.relay, relay.running().disclosure_key);
    assert!(entries.iter().all(|e| e.secret_items == 0));
}

#[tokio::test]
async fn refusals_say_the_limit_and_the_unknown_target() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    relay.register("target-one").await;
    let mut long = warrant(&relay, &chief, "W-1", &["target-one"]);
    long.window_from = long.window_until - 120 * DAY;
    match submit(&relay, chief.sign_warrant(&long)).await {
        Err(InvestigatorError::Refused { message, .. }) => assert!(
            message.contains("window 120 days exceeds this relay's maximum of 90"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let unknown = warrant(&relay, &chief, "W-2", &["target-one", "ghost-user"]);
    match submit(&relay, chief.sign_warrant(&unknown)).await {
        Err(InvestigatorError::Refused { message, .. }) => {
            assert!(message.contains("\"ghost-user\""), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn hostile_investigator_cannot_stretch_the_window_with_one_integer() {
    // The outside review's warrant: with `until - from` computed unchecked,
    // this start wrapped the length to a small number and every record of
    // the target in the archive was disclosed.
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    let suspect = relay.register("suspect").await;
    relay.register("contact").await;
    suspect
        .client
        .send_normal(Recipient::User("contact"), "before the window", [1; 16])
        .await
        .unwrap();
    let mut hostile = warrant(&relay, &chief, "W-wrap", &["suspect"]);
    hostile.window_from = -9_223_372_036_854_775_807;
    assert_eq!(
        refusal_code(submit(&relay, chief.sign_warrant(&hostile)).await),
        "bad_window"
    );
    for (from, until) in [
        (i64::MIN, i64::MAX),
        (i64::MIN, now()),
        (now(), i64::MAX),
        (-1, now()),
    ] {
        let mut w = warrant(&relay, &chief, &format!("W-{from}-{until}"), &["suspect"]);
        (w.window_from, w.window_until) = (from, until);
        assert_eq!(
            refusal_code(submit(&relay, chief.sign_warrant(&w)).await),
            "bad_window",
            "[{from}, {until})"
        );
    }
    let mut extreme_validity = warrant(&relay, &chief, "W-validity", &["suspect"]);
    extreme_validity.expires = i64::MAX;
    assert_eq!(
        refusal_code(submit(&relay, chief.sign_warrant(&extreme_validity)).await),
        "bad_validity"
    );
    let logged = entries(&relay);
    let first = &logged[0];
    assert_eq!(
        (first.window_from, first.reason.as_str()),
        (-9_223_372_036_854_775_807, "bad_window"),
        "the refusal is logged with the window asked for"
    );
    // A window that ended before the message was sent discloses nothing of it.
    let mut past = warrant(&relay, &chief, "W-past", &["suspect"]);
    past.window_until = now() - 60;
    let disclosure = open(
        &chief,
        &submit(&relay, chief.sign_warrant(&past)).await.unwrap(),
    );
    assert!(disclosure.records.is_empty(), "{:?}", disclosure.records);
}

#[tokio::test]
async fn hostile_investigator_warrant_for_another_relay_is_refused() {
    let relay_a = TestRelay::start().await;
    let relay_b = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay_a, &chief);
    register_authority(&relay_b, &chief);
    relay_a.register("suspect").await;
    relay_b.register("suspect").await;
    let for_b = chief.sign_warrant(&warrant(&relay_b, &chief, "W-1", &["suspect"]));
    assert_eq!(
        refusal_code(submit(&relay_a, for_b.clone()).await),
        "wrong_relay"
    );
    let sealed = submit(&relay_b, for_b).await.unwrap();
    let pin_b = pin(&relay_b);
    chief.open_disclosure(&sealed, Some(&pin_b)).unwrap();
    let pin_a = pin(&relay_a);
    assert!(chief.open_disclosure(&sealed, Some(&pin_a)).is_err());
}

#[tokio::test]
async fn warrant_ids_are_one_namespace_per_authority() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    let other = investigator(dir.path(), "other-court");
    register_authority(&relay, &chief);
    register_authority(&relay, &other);
    suspect_wrote_to_contact(&relay).await;
    let mine = disclosed(&relay, &chief, "W-1").await;
    let theirs = disclosed(&relay, &other, "W-1").await;
    assert_eq!(mine.pseudonyms.len(), 1);
    assert_ne!(
        mine.pseudonyms, theirs.pseudonyms,
        "unlinkable across authorities"
    );
    // Each authority can unmask only under its own W-1.
    assert_eq!(
        unmask(&relay, &chief, "W-1", &mine.pseudonyms)
            .await
            .unwrap()[0]
            .1,
        "contact"
    );
    assert_eq!(
        refusal_code(unmask(&relay, &other, "W-1", &mine.pseudonyms).await),
        "not_disclosed"
    );
}

#[tokio::test]
async fn hostile_investigator_cannot_unmask_after_the_warrant_expired() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    suspect_wrote_to_contact(&relay).await;
    let mut short = warrant(&relay, &chief, "W-short", &["suspect"]);
    short.expires = now() + 2;
    let disclosure = open(
        &chief,
        &submit(&relay, chief.sign_warrant(&short)).await.unwrap(),
    );
    // Wait on the clock itself until the warrant has expired.
    while now() < short.expires {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        refusal_code(unmask(&relay, &chief, "W-short", &disclosure.pseudonyms).await),
        "expired"
    );
}

#[tokio::test]
async fn network_attacker_cannot_replay_or_read_an_unmask_answer() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    let eavesdropper = investigator(dir.path(), "eavesdropper");
    register_authority(&relay, &chief);
    suspect_wrote_to_contact(&relay).await;
    let disclosure = disclosed(&relay, &chief, "W-1").await;
    let (signed, request, answer) = unmask_raw(&relay, &chief, "W-1", &disclosure.pseudonyms).await;
    let sealed = answer.unwrap();
    // The answer is sealed to the warrant's delivery key: whoever captured the
    // request (or the answer) cannot read it, and it names no one in clear.
    let pin = pin(&relay);
    assert!(eavesdropper.open_unmasked(&sealed, &pin, &request).is_err());
    assert!(!sealed.encode_to_vec().windows(7).any(|w| w == b"contact"));
    assert_eq!(
        chief.open_unmasked(&sealed, &pin, &request).unwrap()[0].username,
        "contact"
    );
    // The captured signed request, sent again within its freshness window.
    let conn = connect(&relay).await;
    assert_eq!(
        refusal_code(unmask_request(&conn, signed).await),
        "replayed"
    );
    let logged = entries(&relay);
    let last = logged.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.reason.as_str()),
        ("unverifiable", "replayed")
    );
    let granted = logged.iter().find(|e| e.kind == "unmask").unwrap();
    assert_eq!(granted.unmask_reason, "identify a contact");
}

#[tokio::test]
async fn unregistered_party_flood_cannot_block_a_registered_authority() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    let forger = investigator(dir.path(), "forger");
    register_authority(&relay, &chief);
    relay.register("target-one").await;
    let conn = connect(&relay).await;
    let forgeries = 60;
    for n in 0..forgeries {
        // Claims to be the chief, signed with another key.
        let mut w = warrant(&relay, &forger, &format!("F-{n}"), &["target-one"]);
        w.authority = chief.name.clone();
        let code = refusal_code(submit_warrant(&conn, forger.sign_warrant(&w)).await);
        assert!(code == "bad_signature" || code == "rate_limited", "{code}");
    }
    // The chief's budget is untouched: its warrant is served (held for review).
    let held = submit_warrant(
        &conn,
        chief.sign_warrant(&warrant(&relay, &chief, "W-1", &["target-one"])),
    )
    .await;
    assert!(matches!(held, Ok(Answered::PendingReview(_))), "{held:?}");
    conn.close().await;
    relay.approve("chief", "W-1", "operator").await;
    let logged = entries(&relay);
    let individual = logged.iter().filter(|e| e.kind == "unverifiable").count();
    assert!(
        individual <= sotto_server::warrant::UNVERIFIABLE_PER_MINUTE as usize,
        "{individual} forgeries got a synced line each"
    );
    // What was over the budget is counted, once the relay writes its count.
    let mut relay = relay;
    relay.stop().await;
    let logged = entries(&relay);
    let report = audit::transparency(&logged);
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].warrants_received, 1, "forgeries are not warrants");
    assert_eq!(report[0].warrants_granted, 1);
    assert_eq!(report[0].unverifiable_requests, forgeries);
    assert!(matches!(
        audit::verify(&relay.data_dir().join("audit.log")).unwrap(),
        Verified::Intact { .. }
    ));
}

#[tokio::test]
async fn a_broken_authority_list_tells_the_investigator_nothing_local() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    relay.register("target-one").await;
    std::fs::write(
        relay.data_dir().join("authorities.toml"),
        "[[authority]\nname = \"chief\"\n",
    )
    .unwrap();
    let answer = submit(
        &relay,
        chief.sign_warrant(&warrant(&relay, &chief, "W-1", &["target-one"])),
    )
    .await;
    match answer {
        Err(InvestigatorError::Failed { code, message }) => {
            assert_eq!(code, ErrorCode::Internal);
            let data_dir = relay.data_dir().to_string_lossy().into_owned();
            assert!(!message.contains(&data_dir), "{message}");
            assert!(!message.contains("authorities.toml"), "{message}");
            assert!(!message.contains('/'), "{message}");
        }
        other => panic!("expected an internal failure, got {other:?}"),
    }
    let last = entries(&relay).pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.reason.as_str()),
        ("unverifiable", "registry_unreadable"),
        "nothing was verified, so it counts as unverifiable"
    );
}

#[tokio::test]
async fn usernames_that_look_like_pseudonyms_are_refused() {
    let relay = TestRelay::start().await;
    let client = relay.connect().await;
    let identity = sotto_client::identity::Identity::generate();
    match client
        .register("anon-0123456789abcdef01234567", &identity)
        .await
    {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::InvalidUsername),
        other => panic!("expected a refusal, got {other:?}"),
    }
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
        chief.sign_warrant(&warrant(&relay, &chief, "W-1", &["whistle"])),
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
    let entry = entries(&relay).pop().unwrap();
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

    let first = disclosed(&relay, &chief, "W-1").await;
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
            chief.sign_warrant(&warrant(&relay, &chief, "W-2", &["suspect"])),
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
        "unknown_warrant",
        "another authority cannot find the chief's warrant"
    );

    // The audit log never names a non-target.
    let log = std::fs::read_to_string(relay.data_dir().join("audit.log")).unwrap();
    for name in ["bystander-ann", "bystander-ben", "outsider", "meet at noon"] {
        assert!(!log.contains(name), "{name} is in the audit log");
    }
    let report = audit::transparency(&entries(&relay));
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
            chief.sign_warrant(&warrant(&relay, &chief, id, &["target-one"])),
        )
        .await
        .unwrap();
    }
    let path = relay.data_dir().join("audit.log");
    // Each warrant: held, approved in review, collected.
    assert!(matches!(
        audit::verify(&path).unwrap(),
        Verified::Intact { entries: 9, .. }
    ));
    let original = std::fs::read_to_string(&path).unwrap();
    for line in 0..9 {
        let edited: Vec<String> = original
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == line {
                    l.replace("\"case\":\"case-of-", "\"case\":\"withdrawn-")
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

// --- The outside review's findings, each as the attack that found it. ---

#[tokio::test]
async fn another_user_cannot_make_a_targets_disclosure_undeliverable() {
    // Seventeen maximum-size messages put the disclosure over one frame: it
    // must still arrive (in parts), whole and verifiable, and match the hash
    // the audit log keeps.
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    let suspect = relay.register("suspect").await;
    relay.register("contact").await;
    let big = "x".repeat(sotto_proto::MAX_TEXT);
    for n in 0..20u8 {
        suspect
            .client
            .send_normal(Recipient::User("contact"), &big, [n; 16])
            .await
            .unwrap();
    }
    let bundle = submit(
        &relay,
        chief.sign_warrant(&warrant(&relay, &chief, "W-big", &["suspect"])),
    )
    .await
    .unwrap();
    assert!(bundle.parts.len() > 1, "{} parts", bundle.parts.len());
    let disclosure = chief
        .open_disclosure(&bundle, Some(&pin(&relay)))
        .unwrap()
        .disclosure;
    assert_eq!(disclosure.records.len(), 20);
    let entry = entries(&relay).pop().unwrap();
    assert_eq!(entry.records, 20);
    use sha2::Digest;
    assert_eq!(
        entry.bundle_sha256,
        hex::encode(sha2::Sha256::digest(bundle.encode_to_vec()))
    );
    // A part missing is noticed.
    let mut short = bundle.clone();
    short.parts.pop();
    assert!(chief.open_disclosure(&short, None).is_err());
}

#[tokio::test]
async fn copies_of_answered_unmask_requests_spend_no_budget_fresh_or_stale() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    suspect_wrote_to_contact(&relay).await;
    let conn = connect(&relay).await;
    // A stale request and a fresh one for a warrant that does not exist,
    // each copied and sent again and again.
    let mut stale = new_unmask_request(&chief, "W-1", vec!["anon-x".into()], "why", now() - 660);
    stale.warrant_id = "W-1".into();
    let stale = chief.sign_unmask(&stale);
    let nope = chief.sign_unmask(&new_unmask_request(
        &chief,
        "W-NOPE",
        vec!["anon-x".into()],
        "why",
        now(),
    ));
    let mut codes = std::collections::BTreeMap::new();
    for signed in [&stale, &nope] {
        for _ in 0..40 {
            let code = refusal_code(unmask_request(&conn, signed.clone()).await);
            *codes.entry(code).or_insert(0) += 1;
        }
    }
    // Each is answered once; every copy is a replay (within the small budget
    // of unverifiable requests, then only counted).
    assert_eq!(codes.get("stale"), Some(&1), "{codes:?}");
    assert_eq!(codes.get("unknown_warrant"), Some(&1), "{codes:?}");
    assert_eq!(
        codes.get("replayed").copied().unwrap_or(0)
            + codes.get("rate_limited").copied().unwrap_or(0),
        78,
        "{codes:?}"
    );
    // The chief's budget is untouched.
    assert!(
        submit_warrant(
            &conn,
            chief.sign_warrant(&warrant(&relay, &chief, "W-1", &["suspect"]))
        )
        .await
        .is_ok()
    );
    let logged = entries(&relay);
    assert!(logged.len() <= 2 + 1 + 10, "{} audit lines", logged.len());
}

#[tokio::test]
async fn unregistered_party_flood_while_the_registry_is_broken_is_counted_apart() {
    let mut relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let forger = investigator(dir.path(), "forger");
    relay.register("target-one").await;
    std::fs::write(relay.data_dir().join("authorities.toml"), "[[authority]\n").unwrap();
    let conn = connect(&relay).await;
    for n in 0..30 {
        let w = warrant(&relay, &forger, &format!("F-{n}"), &["target-one"]);
        assert!(
            submit_warrant(&conn, forger.sign_warrant(&w))
                .await
                .is_err()
        );
    }
    conn.close().await;
    relay.stop().await;
    let logged = entries(&relay);
    assert!(
        logged.iter().all(|e| e.kind == "unverifiable"),
        "{logged:?}"
    );
    let report = audit::transparency(&logged);
    assert_eq!(report[0].warrants_received, 0);
    assert_eq!(report[0].unverifiable_requests, 30);
}

#[tokio::test]
async fn hidden_group_members_keep_no_alphabetical_place() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    let mike = relay.register("mike").await;
    let hidden = ["zoe-hidden", "adam-hidden", "yuri-hidden", "bella-hidden"];
    for name in hidden {
        relay.register(name).await;
    }
    mike.client
        .create_group("crew", &hidden.map(String::from))
        .await
        .unwrap();
    mike.client
        .send_normal(Recipient::Group("crew"), "hello crew", [1; 16])
        .await
        .unwrap();
    let signed = chief.sign_warrant(&warrant(&relay, &chief, "W-1", &["mike"]));
    let disclosure = open(&chief, &submit(&relay, signed).await.unwrap());
    let participants = &disclosure.records[0].participants;
    let mut sorted = participants.clone();
    sorted.sort();
    assert_eq!(participants, &sorted, "shown in the order of what is shown");
}

#[tokio::test]
async fn a_name_registered_again_with_another_key_inherits_no_warrant() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    suspect_wrote_to_contact(&relay).await;
    let w = warrant(&relay, &chief, "W-1", &["suspect"]);
    let disclosure = open(
        &chief,
        &submit(&relay, chief.sign_warrant(&w)).await.unwrap(),
    );
    // The operator replaces "chief" by a new key holder of the same name.
    let newcomer = InvestigatorKeys::generate(&dir.path().join("newcomer"), "chief").unwrap();
    let path = relay.data_dir().join("authorities.toml");
    let mut file = authorities::load(&path).unwrap();
    file.remove("chief").unwrap();
    file.add("chief", &newcomer.public_key_hex()).unwrap();
    authorities::save(&path, &file).unwrap();
    assert_eq!(
        refusal_code(unmask(&relay, &newcomer, "W-1", &disclosure.pseudonyms).await),
        "unknown_warrant"
    );
    // Nor is it handed the kept disclosure of the very same warrant bytes.
    let conn = connect(&relay).await;
    let collected = collect_warrant(&conn, newcomer.sign_warrant(&w)).await;
    conn.close().await;
    assert_eq!(refusal_code(collected), "replayed");
}

#[tokio::test]
async fn hostile_investigator_cannot_start_a_log_line_with_an_unmask_warrant_id() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let chief = investigator(dir.path(), "chief");
    register_authority(&relay, &chief);
    assert_eq!(
        refusal_code(
            unmask(
                &relay,
                &chief,
                "W-1\r\n2099-01-01T00:00:00Z INFO granted",
                &["anon-x".into()]
            )
            .await
        ),
        "malformed"
    );
}

#[test]
fn curious_operator_authority_list_prints_nothing_raw() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let init = std::process::Command::new(sotto_tests::bin("sotto-relay"))
        .args(["--data", data.to_str().unwrap(), "init"])
        .output()
        .unwrap();
    assert!(init.status.success());
    std::fs::write(
        data.join("authorities.toml"),
        "[[authority]]\nname = \"x\\u001b[2J\\u001b[31mred\\nfake\\tline\"\npublic_key = \"zz\\u001b]0;pwned\\u0007\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(sotto_tests::bin("sotto-relay"))
        .args(["--data", data.to_str().unwrap(), "authority", "list"])
        .output()
        .unwrap();
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !stream.contains(&0x1b),
            "{}",
            String::from_utf8_lossy(stream)
        );
        assert!(!stream.contains(&0x07));
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
