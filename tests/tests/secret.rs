//! Secret chats through a real relay: several ratchet turns both ways, the
//! ciphertext-only queue (gone after the ack, kept across kill -9), nothing
//! readable anywhere, and identity changes.

use std::path::Path;

use prost::Message;
use serde_json::Value;
use sotto_client::commands;
use sotto_client::identity::Identity;
use sotto_client::profile::{Profile, ProfileConfig};
use sotto_client::secret;
use sotto_server::records::AccountRecord;
use sotto_server::store::{Batch, Tree};
use sotto_tests::{
    PASSPHRASE, RelayProcess, TestRelay, files_containing, init_profile, repoint, sotto_ok,
};

const PASS: &str = PASSPHRASE;

async fn init(relay: &TestRelay, dir: &Path, user: &str) {
    init_profile(relay, dir, user).await;
}

async fn send_secret(dir: &Path, to: &str, text: &str) -> anyhow::Result<()> {
    let mut profile = Profile::open(dir, PASS)?;
    commands::send::run_secret(&mut profile, to, text, None, &mut Vec::new()).await
}

use sotto_tests::sync_json as sync;

fn texts(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn secret_messages_flow_both_ways_across_several_ratchet_turns() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;

    for turn in 0..4 {
        for i in 0..2 {
            send_secret(&alice, "bob", &format!("a{turn}.{i}"))
                .await
                .unwrap();
        }
        let got = sync(&bob).await;
        assert_eq!(texts(&got), [format!("a{turn}.0"), format!("a{turn}.1")]);
        assert!(
            got.iter()
                .all(|l| l["mode"] == "secret" && l["from"] == "alice" && l["group"].is_null())
        );
        send_secret(&bob, "alice", &format!("b{turn}"))
            .await
            .unwrap();
        assert_eq!(texts(&sync(&alice).await), [format!("b{turn}")]);
    }
    // Alice's client told bob's that b3 arrived (a receipt, not a message);
    // once bob takes it, everything was acknowledged: the relay holds no
    // envelope any more.
    assert!(sync(&bob).await.is_empty());
    assert_eq!(
        relay.running().state().secret_envelopes_waiting().unwrap(),
        0
    );
}

#[tokio::test]
async fn an_envelope_is_gone_from_the_relay_once_acknowledged() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    send_secret(&alice, "bob", "queued until read")
        .await
        .unwrap();
    let state = relay.running().state();
    assert_eq!(state.secret_envelopes_waiting().unwrap(), 1);
    assert_eq!(texts(&sync(&bob).await), ["queued until read"]);
    // Gone; what waits now is bob's receipt for alice, until she takes it.
    assert_eq!(state.secret_envelopes_waiting().unwrap(), 1);
    assert!(sync(&alice).await.is_empty());
    assert_eq!(state.secret_envelopes_waiting().unwrap(), 0);
    assert_eq!(state.stored_entries(Tree::SecretQueue).unwrap(), 0);
    // And it never became history: the normal archive holds nothing.
    assert_eq!(state.stored_entries(Tree::Messages).unwrap(), 0);
    assert_eq!(state.stored_entries(Tree::ByParticipant).unwrap(), 0);
}

#[tokio::test]
async fn an_envelope_expires_after_its_time_to_live() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    send_secret(&alice, "bob", "nobody reads me").await.unwrap();
    let state = relay.running().state();
    let now = sotto_server::now_ms();
    assert_eq!(
        state.expire_secret_envelopes(now).unwrap(),
        0,
        "not expired yet"
    );
    let ttl_ms = sotto_server::RelayConfig::default().secret_ttl_secs as i64 * 1000;
    assert_eq!(
        state.expire_secret_envelopes(now + ttl_ms + 1000).unwrap(),
        1
    );
    assert_eq!(state.secret_envelopes_waiting().unwrap(), 0);
    assert!(sync(&bob).await.is_empty());
}

#[tokio::test]
async fn a_disappearing_message_leaves_the_history_when_its_timer_ends() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    let mut profile = Profile::open(&alice, PASS).unwrap();
    commands::send::run_secret(
        &mut profile,
        "bob",
        "self-destruct",
        Some(30),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(texts(&sync(&bob).await), ["self-destruct"]);

    let mut bob_profile = Profile::open(&bob, PASS).unwrap();
    let entry = bob_profile
        .history()
        .iter()
        .find(|e| e.text == "self-destruct")
        .unwrap();
    assert_eq!(entry.expire_secs, Some(30));
    let shown = entry.shown_at.expect("the timer starts when it is shown");
    assert_eq!(bob_profile.purge_expired(shown + 29_000), 0);
    assert_eq!(bob_profile.purge_expired(shown + 30_000), 1);
    bob_profile.save().unwrap();
    drop(bob_profile);
    let reopened = Profile::open(&bob, PASS).unwrap();
    assert!(reopened.history().iter().all(|e| e.text != "self-destruct"));
}

#[tokio::test]
async fn a_changed_identity_key_blocks_sending_until_trust() {
    let mut relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    send_secret(&alice, "bob", "hi bob").await.unwrap();
    sync(&bob).await;

    // Before: alice's session with bob.
    let base_before = {
        let p = Profile::open(&alice, PASS).unwrap();
        p.sessions["bob"].current().base_key()
    };
    // A hostile operator rebinds "bob" to a key of its own and speaks as bob.
    let mallory = Identity::generate();
    let mallory_key = mallory.public_key().to_bytes();
    rebind(&mut relay, "bob", &mallory).await;
    let fake_bob = dir.path().join("fake-bob");
    let config = ProfileConfig {
        relay: relay.addr.to_string(),
        fingerprint: relay.fingerprint.to_string(),
        username: "bob".into(),
    };
    let mut fake = Profile::create(&fake_bob, config, mallory, PASS).unwrap();
    let client = fake.connect().await.unwrap();
    secret::publish_prekeys(&mut fake, &client, None)
        .await
        .unwrap();
    drop(fake);
    for profile in [&alice, &bob] {
        repoint(profile, &relay.addr.to_string());
    }
    send_secret(&fake_bob, "alice", "it's me, bob")
        .await
        .unwrap();
    // Alice's client notices the key is not the one she trusted: the message
    // is held unread, not shown as bob's, and her session with bob stays.
    let got = sync(&alice).await;
    assert!(texts(&got).is_empty(), "{got:?}");
    {
        let p = Profile::open(&alice, PASS).unwrap();
        assert_eq!(p.held.len(), 1);
        assert_eq!(p.sessions["bob"].current().base_key(), base_before);
        assert!(p.history().iter().all(|e| e.text != "it's me, bob"));
    }
    let err = send_secret(&alice, "bob", "are you bob?")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("identity key has changed"),
        "{err}"
    );
    assert!(err.to_string().contains("sotto trust bob"));
    let profile = Profile::open(&alice, PASS).unwrap();
    assert!(profile.contacts["bob"].changed_to.is_some());
    drop(profile);

    // After comparing safety numbers, she accepts the key; sending works again.
    let mut profile = Profile::open(&alice, PASS).unwrap();
    // Trusting before a safety number was shown is refused.
    assert!(
        commands::verify::trust(&mut profile, "bob", None, &mut Vec::new())
            .await
            .is_err()
    );
    // The number shown is the NEW key's, said loudly: the one trust accepts.
    let mut shown = Vec::new();
    commands::verify::safety_number(&mut profile, "bob", &mut shown)
        .await
        .unwrap();
    let shown = String::from_utf8(shown).unwrap();
    let mallory_number =
        sotto_client::e2e::safety::display(&sotto_client::e2e::safety::safety_number(
            ("alice", &profile.identity().public_key().to_bytes()),
            ("bob", &mallory_key),
        ));
    assert!(shown.contains("NEW identity key"), "{shown}");
    assert!(shown.contains(&mallory_number), "{shown}");
    commands::verify::trust(&mut profile, "bob", None, &mut Vec::new())
        .await
        .unwrap();
    // Once trusted, the held message is read.
    assert!(
        profile
            .history()
            .iter()
            .any(|e| e.text == "it's me, bob" && e.from == "bob")
    );
    assert!(profile.held.is_empty());
    drop(profile);
    send_secret(&alice, "bob", "trusted now").await.unwrap();
    assert!(texts(&sync(&fake_bob).await).contains(&"trusted now".to_owned()));
}

#[test]
fn nothing_secret_is_readable_in_the_relay_its_logs_or_the_profiles_and_a_queued_envelope_survives_kill_9()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = RelayProcess::start(&data, &[("SOTTO_LOG", "trace")]);
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    for (profile, user) in [(&alice, "alice"), (&bob, "bob")] {
        relay.init_user(profile, user);
    }
    sotto_ok(&alice, &["send", "--secret", "bob", "secret-canary-31337"]);
    // Acknowledged to alice: the envelope is on the relay's disk. Pull the plug.
    let log = relay.kill_9();
    assert!(!log.contains("secret-canary-31337"));
    assert!(files_containing(&data, b"secret-canary-31337").is_empty());

    let mut relay = RelayProcess::start(&data, &[("SOTTO_LOG", "trace")]);
    repoint(&bob, &relay.addr);
    let got = sotto_ok(&bob, &["sync", "--json"]);
    let line: Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(line["mode"], "secret");
    assert_eq!(line["text"], "secret-canary-31337");

    let log = relay.terminate();
    assert!(!log.contains("secret-canary-31337"));
    for place in [&data, &alice, &bob] {
        let hits = files_containing(place, b"secret-canary-31337");
        assert!(hits.is_empty(), "found in {hits:?}");
    }
}

/// Many throwaway accounts, as from many addresses: the per-address limit on
/// new accounts is lifted, so that what is tested is the per-target rules.
fn many_accounts(prekey_bundles_per_minute: u32) -> sotto_server::RelayConfig {
    let mut config = sotto_server::RelayConfig {
        prekey_bundles_per_minute,
        ..Default::default()
    };
    config.limits.registrations_per_address_per_hour = 100_000;
    config
}

#[tokio::test]
async fn one_time_prekeys_go_out_once_run_low_get_topped_up_and_fall_back_to_the_signed_prekey() {
    // This test takes ~200 of bob's one-time prekeys in a minute: lift that limit.
    let relay = TestRelay::start_with(many_accounts(1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let bob = dir.path().join("bob");
    init(&relay, &bob, "bob").await;
    let state = relay.running().state();
    assert_eq!(state.one_time_prekeys_left("bob").await.unwrap(), 100);

    // 81 bundles: a requester gets one of bob's one-time prekeys a day, so 81 requesters.
    let mut seen_ids = std::collections::HashSet::new();
    for n in 0..81 {
        let fetcher = relay.register(&format!("fetcher-{n}")).await;
        let bundle = fetcher.client.fetch_bundle("bob").await.unwrap();
        let otk = bundle.one_time.expect("one-time prekeys are left");
        assert!(seen_ids.insert(otk.id), "a one-time prekey went out twice");
        // Asking again the same day gets the signed prekey alone.
        let again = fetcher.client.fetch_bundle("bob").await.unwrap();
        assert!(again.one_time.is_none() && again.signed_prekey.is_some());
    }
    assert_eq!(state.one_time_prekeys_left("bob").await.unwrap(), 19);
    let bob_profile = Profile::open(&bob, PASS).unwrap();
    let owner = relay.login_as("bob", bob_profile.identity()).await;
    let low = owner
        .fetch(10)
        .await
        .unwrap()
        .prekeys_low
        .expect("the owner is told");
    assert_eq!(low.remaining, 19);
    drop(owner);
    drop(bob_profile);

    // bob's next sync tops them up.
    sync(&bob).await;
    assert!(state.one_time_prekeys_left("bob").await.unwrap() >= 100);

    // With none left, a bundle carries the signed prekey alone, and X3DH still works.
    let mut n = 0;
    while state.one_time_prekeys_left("bob").await.unwrap() > 0 {
        let drainer = relay.register(&format!("drainer-{n}")).await;
        drainer.client.fetch_bundle("bob").await.unwrap();
        n += 1;
    }
    let alice = dir.path().join("alice");
    init(&relay, &alice, "alice").await;
    let late = relay.register("late").await;
    let bundle = late.client.fetch_bundle("bob").await.unwrap();
    assert!(bundle.one_time.is_none() && bundle.signed_prekey.is_some());
    send_secret(&alice, "bob", "no one-time key needed")
        .await
        .unwrap();
    assert_eq!(texts(&sync(&bob).await), ["no one-time key needed"]);
}

#[tokio::test]
async fn a_prekey_drain_by_throwaway_accounts_denies_no_new_contact() {
    // The review's attack: 150 throwaway accounts take bob's bundle within a
    // minute. Past bob's rate they get bundles without one-time prekeys; a
    // real new contact afterwards is still served and its secret chat works.
    let relay = TestRelay::start_with(many_accounts(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let bob = dir.path().join("bob");
    init(&relay, &bob, "bob").await;
    let mut with_one_time = 0;
    for n in 0..150 {
        let thrower = relay.register(&format!("throwaway-{n}")).await;
        let bundle = thrower.client.fetch_bundle("bob").await.unwrap();
        with_one_time += usize::from(bundle.one_time.is_some());
    }
    let state = relay.running().state();
    assert_eq!(
        with_one_time, 100,
        "all of bob's one-time prekeys, and no more"
    );
    assert_eq!(state.one_time_prekeys_left("bob").await.unwrap(), 0);

    let alice = dir.path().join("alice");
    init(&relay, &alice, "alice").await;
    send_secret(&alice, "bob", "still reachable").await.unwrap();
    assert_eq!(texts(&sync(&bob).await), ["still reachable"]);
}

#[tokio::test]
async fn an_accounts_one_time_prekeys_go_no_faster_than_its_limit_and_nobody_is_refused() {
    let relay = TestRelay::start_with(many_accounts(5)).await;
    let dir = tempfile::tempdir().unwrap();
    init(&relay, &dir.path().join("bob"), "bob").await;
    for i in 0..5 {
        // A fresh account and connection each time: the limit is bob's.
        let taker = relay.register(&format!("taker-{i}")).await;
        let bundle = taker.client.fetch_bundle("bob").await.unwrap();
        assert!(bundle.one_time.is_some());
    }
    let late = relay.register("taker-late").await;
    let bundle = late.client.fetch_bundle("bob").await.unwrap();
    assert!(
        bundle.one_time.is_none() && bundle.signed_prekey.is_some(),
        "past bob's rate a bundle goes without a one-time prekey, and is not refused"
    );
    assert_eq!(
        relay
            .running()
            .state()
            .one_time_prekeys_left("bob")
            .await
            .unwrap(),
        95
    );
}

/// A hostile operator binds `name` to `identity` in the relay's store (and restarts it).
async fn rebind(relay: &mut TestRelay, name: &str, identity: &Identity) {
    relay
        .tamper(|opened| {
            let key = sotto_server::accounts::blind_user(&opened.sealer, name);
            let record = AccountRecord {
                username: name.into(),
                identity_key: identity.public_key().to_bytes().to_vec(),
                created_at: 0,
            };
            let mut batch = Batch::default();
            batch.put(
                Tree::Accounts,
                key.to_vec(),
                opened
                    .sealer
                    .seal(Tree::Accounts, &key, &record.encode_to_vec()),
            );
            batch
        })
        .await;
}

#[tokio::test]
async fn malicious_relay_key_swap_after_the_safety_number_was_shown_is_not_trusted() {
    let mut relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    send_secret(&alice, "bob", "hi bob").await.unwrap();
    // Alice is shown bob's safety number and compares it (it matches).
    let mut shown = Vec::new();
    {
        let mut p = Profile::open(&alice, PASS).unwrap();
        commands::verify::safety_number(&mut p, "bob", &mut shown)
            .await
            .unwrap();
    }
    let shown = String::from_utf8(shown).unwrap();
    let digits: String = shown
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("Compare"))
        .collect::<String>()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(digits.len(), 60, "{shown}");
    // Then the relay swaps bob's key, and alice says `trust bob`.
    rebind(&mut relay, "bob", &Identity::generate()).await;
    repoint(&alice, &relay.addr.to_string());
    let mut p = Profile::open(&alice, PASS).unwrap();
    let err = commands::verify::trust(&mut p, "bob", None, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");
    let err = commands::verify::trust(&mut p, "bob", Some(&digits), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the safety number"), "{err}");
    let bob_key = Profile::open(&bob, PASS).unwrap().identity().public_key();
    assert_eq!(
        p.contacts["bob"].identity_key,
        hex::encode(bob_key.to_bytes()),
        "the real key stays trusted"
    );
}

#[tokio::test]
async fn simultaneous_initiation_converges_and_loses_nothing() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    // Both start a secret chat before either has heard from the other.
    send_secret(&alice, "bob", "hi from alice").await.unwrap();
    send_secret(&bob, "alice", "hi from bob").await.unwrap();
    assert_eq!(texts(&sync(&bob).await), ["hi from alice"]);
    assert_eq!(texts(&sync(&alice).await), ["hi from bob"]);
    for round in 0..3 {
        send_secret(&alice, "bob", &format!("a{round}"))
            .await
            .unwrap();
        send_secret(&bob, "alice", &format!("b{round}"))
            .await
            .unwrap();
        assert_eq!(texts(&sync(&bob).await), [format!("a{round}")]);
        assert_eq!(texts(&sync(&alice).await), [format!("b{round}")]);
    }
    let a = Profile::open(&alice, PASS).unwrap().sessions["bob"]
        .current()
        .base_key();
    let b = Profile::open(&bob, PASS).unwrap().sessions["alice"]
        .current()
        .base_key();
    assert_eq!(a, b, "both send on one session");
}

#[tokio::test]
async fn malicious_relay_replayed_first_message_is_refused() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    send_secret(&alice, "bob", "first").await.unwrap();
    // The relay keeps a copy of the first message (X3DH header and all).
    let captured = {
        let p = Profile::open(&bob, PASS).unwrap();
        let client = relay.login_as("bob", p.identity()).await;
        client.fetch(10).await.unwrap().secret.remove(0)
    };
    assert_eq!(texts(&sync(&bob).await), ["first"]);
    send_secret(&bob, "alice", "answer").await.unwrap();
    sync(&alice).await;
    let mut p = Profile::open(&bob, PASS).unwrap();
    let replay = |id| sotto_proto::v1::SecretEnvelope {
        id,
        ..captured.clone()
    };
    // Replayed while its session is kept: the message key is gone.
    let mut warnings = Vec::new();
    assert!(matches!(
        secret::receive(&mut p, &replay(9_000_001), &mut warnings),
        secret::Received::Dropped(_)
    ));
    // Replayed once its session is gone: the base key is remembered.
    p.sessions.remove("alice");
    match secret::receive(&mut p, &replay(9_000_002), &mut warnings) {
        secret::Received::Dropped(why) => assert!(why.contains("replayed"), "{why}"),
        _ => panic!("a replayed first message must not start a session"),
    }
    assert!(!p.sessions.contains_key("alice"));
    assert_eq!(p.history().iter().filter(|e| e.text == "first").count(), 1);
}

#[tokio::test]
async fn an_undecryptable_message_is_kept_and_a_session_reset_recovers() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    send_secret(&alice, "bob", "one").await.unwrap();
    assert_eq!(texts(&sync(&bob).await), ["one"]);
    send_secret(&bob, "alice", "two").await.unwrap();
    assert_eq!(texts(&sync(&alice).await), ["two"]);
    // Bob loses his session state (a restored backup, say).
    {
        let mut p = Profile::open(&bob, PASS).unwrap();
        p.sessions.remove("alice");
        p.save().unwrap();
    }
    send_secret(&alice, "bob", "lost?").await.unwrap();
    let mut p = Profile::open(&bob, PASS).unwrap();
    let mut out = Vec::new();
    commands::sync::run(&mut p, true, &mut out).await.unwrap();
    // Kept, encrypted: the message, and alice's receipt for "two", both
    // made in the session bob lost.
    assert_eq!(p.held.len(), 2, "kept, encrypted");
    assert!(p.resets.contains("alice"));
    drop(p);
    // Bob's next message starts a fresh session, and says so; then both ways work.
    send_secret(&bob, "alice", "back?").await.unwrap();
    assert_eq!(texts(&sync(&alice).await), ["back?"]);
    send_secret(&alice, "bob", "yes").await.unwrap();
    assert_eq!(texts(&sync(&bob).await), ["yes"]);
}

#[tokio::test]
async fn an_oversized_or_refused_secret_message_jams_nothing() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    // 120 KiB: refused before anything is encrypted or kept.
    let big = "x".repeat(120 * 1024);
    let err = send_secret(&alice, "bob", &big).await.unwrap_err();
    assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
    {
        let p = Profile::open(&alice, PASS).unwrap();
        assert!(p.outbox.is_empty() && p.pending.is_empty());
    }
    send_secret(&alice, "bob", "normal size").await.unwrap();
    assert_eq!(texts(&sync(&bob).await), ["normal size"]);

    // An entry the relay refuses for good (its recipient is gone, say) is
    // marked failed and kept; what comes after it still goes.
    {
        let mut p = Profile::open(&alice, PASS).unwrap();
        let mut stuck = p
            .outbox
            .first()
            .cloned()
            .unwrap_or(sotto_client::profile::OutboxEntry {
                to: String::new(),
                client_id: String::new(),
                payload: String::new(),
                failed: None,
            });
        stuck.to = "nobody-here".into();
        stuck.client_id = "ab".repeat(16);
        stuck.payload = hex::encode(b"opaque ciphertext");
        p.outbox.push(stuck);
        p.save().unwrap();
    }
    send_secret(&alice, "bob", "after the stuck one")
        .await
        .unwrap();
    assert_eq!(texts(&sync(&bob).await), ["after the stuck one"]);
    let mut p = Profile::open(&alice, PASS).unwrap();
    assert_eq!(p.outbox.len(), 1);
    assert!(
        p.outbox[0]
            .failed
            .as_deref()
            .unwrap()
            .contains("nobody-here")
    );
    let mut listed = Vec::new();
    commands::outbox::list(&p, &mut listed).unwrap();
    let listed = String::from_utf8(listed).unwrap();
    assert!(
        listed.starts_with("abababab") && listed.contains("FAILED"),
        "{listed}"
    );
    commands::outbox::drop(&mut p, "abababab", &mut Vec::new()).unwrap();
    assert!(p.outbox.is_empty());
}

#[tokio::test]
async fn a_timer_set_on_one_side_is_shown_and_applied_on_both() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    send_secret(&alice, "bob", "hello").await.unwrap();
    sync(&bob).await;
    // Alice sets a 30 s timer on the chat: a control message inside the session.
    {
        let mut p = Profile::open(&alice, PASS).unwrap();
        let client = p.connect().await.unwrap();
        let entry = secret::prepare(
            &mut p,
            &client,
            "bob",
            secret::Outgoing::timer(Some(30), commands::new_client_id()),
        )
        .await
        .unwrap();
        assert!(matches!(
            secret::deliver(&mut p, &client, &entry).await.unwrap(),
            secret::Delivered::Stored(_)
        ));
        assert_eq!(p.timers.get("bob"), Some(&30));
        assert!(
            p.history().iter().all(|e| !e.text.is_empty()),
            "no line for a control message"
        );
    }
    // Bob's side applies it: no message line, the chat's timer is 30 s, and
    // his next message (no --expire) carries it.
    let mut p = Profile::open(&bob, PASS).unwrap();
    let client = p.connect().await.unwrap();
    let fetched = commands::sync::fetch_new(&mut p, &client, false)
        .await
        .unwrap();
    assert!(fetched.entries.is_empty());
    assert_eq!(fetched.timers, [("alice".to_owned(), Some(30))]);
    assert!(
        fetched.warnings.iter().any(|w| w.contains("30 s")),
        "{:?}",
        fetched.warnings
    );
    assert_eq!(p.timers.get("alice"), Some(&30));
    drop(client);
    drop(p);
    send_secret(&bob, "alice", "short-lived").await.unwrap();
    let got = sync(&alice).await;
    assert_eq!(texts(&got), ["short-lived"]);
    let p = Profile::open(&alice, PASS).unwrap();
    let entry = p
        .history()
        .iter()
        .find(|e| e.text == "short-lived")
        .unwrap();
    assert_eq!(entry.expire_secs, Some(30));
}

#[tokio::test]
async fn malicious_relay_cannot_deliver_a_message_from_yourself_or_flood_the_held_list() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init(&relay, &alice, "alice").await;
    init(&relay, &bob, "bob").await;
    send_secret(&bob, "alice", "hi alice").await.unwrap();
    sync(&alice).await;
    let mut p = Profile::open(&alice, PASS).unwrap();
    let first = |from: &str, id: u64, key: [u8; 32]| {
        let payload = sotto_proto::v1::SecretPayload {
            kind: Some(sotto_proto::v1::secret_payload::Kind::Prekey(
                sotto_proto::v1::PrekeyMessage {
                    identity_key: key.to_vec().into(),
                    ..Default::default()
                },
            )),
        };
        sotto_proto::v1::SecretEnvelope {
            id,
            from: from.into(),
            ciphertext: payload.encode_to_vec().into(),
            queued_at: 0,
            group: Default::default(),
        }
    };
    let mut warnings = Vec::new();
    // "From alice", to alice.
    match secret::receive(&mut p, &first("alice", 777_001, [5; 32]), &mut warnings) {
        secret::Received::Dropped(why) => assert!(why.contains("from you"), "{why}"),
        _ => panic!("a message from yourself must be refused"),
    }
    assert!(!p.contacts.contains_key("alice"));
    // Many first messages under a key that is not bob's: at most 20 kept.
    for id in 0..50 {
        secret::receive(&mut p, &first("bob", 777_100 + id, [6; 32]), &mut warnings);
    }
    assert_eq!(p.held.len(), sotto_client::profile::MAX_HELD_PER_SENDER);
    // Garbage from a stranger is not kept at all.
    secret::receive(
        &mut p,
        &sotto_proto::v1::SecretEnvelope {
            id: 777_999,
            from: "stranger".into(),
            ciphertext: sotto_proto::v1::SecretPayload {
                kind: Some(sotto_proto::v1::secret_payload::Kind::Message(
                    sotto_proto::v1::RatchetMessage::default(),
                )),
            }
            .encode_to_vec()
            .into(),
            queued_at: 0,
            group: Default::default(),
        },
        &mut warnings,
    );
    assert!(p.held.iter().all(|h| h.from != "stranger"));
}
