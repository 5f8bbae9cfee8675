//! PQXDH through a real relay: one-time ML-KEM-1024 prekeys go out once to
//! concurrent takers, run low, are topped up; a relay that strips the PQ
//! prekey cannot make a client fall back to classical X3DH; the relay refuses
//! PQ prekeys not signed as PQ prekeys.

use std::collections::HashSet;
use std::path::Path;

use prost::Message;
use sotto_client::commands;
use sotto_client::e2e::verify_bundle;
use sotto_client::profile::Profile;
use sotto_server::records::PrekeySetRecord;
use sotto_server::store::{Batch, Tree};
use sotto_tests::{PASSPHRASE, TestRelay, init_profile, repoint};

async fn send_secret(dir: &Path, to: &str, text: &str) -> anyhow::Result<()> {
    let mut profile = Profile::open(dir, PASSPHRASE)?;
    commands::send::run_secret(&mut profile, to, text, None, &mut Vec::new()).await
}

async fn sync_texts(dir: &Path) -> Vec<String> {
    sotto_tests::sync_json(dir)
        .await
        .iter()
        .map(|l| l["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Many takers, as from many addresses; bob's bundles are not rate-limited
/// below what the test takes.
fn many_takers() -> sotto_server::RelayConfig {
    let mut config = sotto_server::RelayConfig {
        prekey_bundles_per_minute: 1000,
        ..Default::default()
    };
    config.limits.registrations_per_address_per_hour = 100_000;
    // Every taker holds its connection open while all ask at once.
    config.limits.connections_per_address = 200;
    config
}

#[tokio::test]
async fn one_time_pq_prekeys_go_out_once_to_concurrent_takers_run_low_and_are_topped_up() {
    let relay = TestRelay::start_with(many_takers()).await;
    let dir = tempfile::tempdir().unwrap();
    let bob = dir.path().join("bob");
    init_profile(&relay, &bob, "bob").await;
    let state = relay.running().state();
    assert_eq!(state.pq_one_time_prekeys_left("bob").await.unwrap(), 100);

    // 81 takers, each on its own connection, all asking at once.
    let mut takers = Vec::new();
    for n in 0..81 {
        takers.push(relay.register(&format!("taker-{n}")).await);
    }
    let bundles = futures_join(takers.iter().map(|t| t.client.fetch_bundle("bob"))).await;
    let mut ids = HashSet::new();
    let mut last_resort = HashSet::new();
    for bundle in bundles {
        let bundle = bundle.unwrap();
        verify_bundle(&bundle).expect("a bundle the relay hands out verifies");
        let pq = bundle.pq_prekey.expect("every bundle has a PQ prekey");
        if pq.created_at == 0 {
            assert!(
                ids.insert(pq.id),
                "one-time PQ prekey {} went out twice",
                pq.id
            );
        } else {
            last_resort.insert(pq.id);
        }
    }
    assert_eq!(ids.len(), 81, "every taker got a one-time PQ prekey");
    assert!(last_resort.is_empty());
    assert_eq!(state.pq_one_time_prekeys_left("bob").await.unwrap(), 19);

    // bob is told they run low, and his next sync tops them up.
    let profile = Profile::open(&bob, PASSPHRASE).unwrap();
    let owner = relay.login_as("bob", profile.identity()).await;
    let low = owner.fetch(10).await.unwrap().prekeys_low.expect("told");
    assert_eq!(low.pq_remaining, 19);
    drop((owner, profile));
    sync_texts(&bob).await;
    assert!(state.pq_one_time_prekeys_left("bob").await.unwrap() >= 100);

    // A taker's second bundle the same day gets the last-resort PQ prekey,
    // and a session over it works.
    let again = takers[0].client.fetch_bundle("bob").await.unwrap();
    assert!(again.one_time.is_none());
    assert_ne!(
        again.pq_prekey.unwrap().created_at,
        0,
        "the last-resort one"
    );
    let alice = dir.path().join("alice");
    init_profile(&relay, &alice, "alice").await;
    send_secret(&alice, "bob", "after quantum").await.unwrap();
    assert_eq!(sync_texts(&bob).await, ["after quantum"]);
    let p = Profile::open(&alice, PASSPHRASE).unwrap();
    assert!(p.sessions["bob"].current().is_post_quantum());
}

/// Polls the futures together (each request on its own connection, so the
/// relay serves them at once) and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending: Vec<_> = futures.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => {
                outputs[*i] = Some(out);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// A hostile operator removes `user`'s PQ prekeys from the relay's store
/// (and restarts it): its bundles go out without one.
async fn strip_pq_prekeys(relay: &mut TestRelay, user: &str) {
    relay
        .tamper(|opened| {
            let blind = sotto_server::accounts::blind_user(&opened.sealer, user);
            let key = opened.sealer.tree_key(Tree::Prekeys, &blind);
            let sealed = opened.store.get(Tree::Prekeys, &key).unwrap().unwrap();
            let plain = opened
                .sealer
                .open_padded(Tree::Prekeys, &key, &sealed)
                .unwrap();
            let mut set = PrekeySetRecord::decode(plain.as_slice()).unwrap();
            assert!(set.pq_last_resort.is_some());
            set.pq_last_resort = None;
            set.pq_one_time.clear();
            let mut batch = Batch::default();
            batch.put(
                Tree::Prekeys,
                key.to_vec(),
                opened
                    .sealer
                    .seal_padded(Tree::Prekeys, &key, &set.encode_to_vec()),
            );
            batch
        })
        .await;
}

#[tokio::test]
async fn malicious_relay_that_strips_the_pq_prekey_cannot_start_a_classical_session() {
    let mut relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init_profile(&relay, &alice, "alice").await;
    init_profile(&relay, &bob, "bob").await;
    strip_pq_prekeys(&mut relay, "bob").await;
    for profile in [&alice, &bob] {
        repoint(profile, &relay.addr.to_string());
    }
    let bundle = relay
        .register("eve")
        .await
        .client
        .fetch_bundle("bob")
        .await
        .unwrap();
    assert!(bundle.pq_prekey.is_none() && bundle.signed_prekey.is_some());

    let err = send_secret(&alice, "bob", "harvest me later")
        .await
        .unwrap_err();
    let said = format!("{err:#}");
    assert!(said.contains("post-quantum"), "{said}");
    let p = Profile::open(&alice, PASSPHRASE).unwrap();
    assert!(!p.sessions.contains_key("bob"), "no session was set up");
    assert!(p.outbox.is_empty(), "nothing was encrypted");
    drop(p);
    assert!(sync_texts(&bob).await.is_empty());
}

#[tokio::test]
async fn the_relay_refuses_pq_prekeys_not_signed_as_pq_prekeys() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bob = dir.path().join("bob");
    init_profile(&relay, &bob, "bob").await;
    let mut profile = Profile::open(&bob, PASSPHRASE).unwrap();
    let pq = profile.generate_pq_one_time(1);
    let good = profile
        .prekeys
        .upload(profile.identity(), Vec::new(), pq)
        .unwrap();
    let client = relay.login_as("bob", profile.identity()).await;

    // A KEM key signed as if it were a curve prekey.
    let mut as_curve = good.clone();
    let key = &mut as_curve.pq_one_time[0];
    key.signature = profile
        .identity()
        .sign(&sotto_proto::transcript::signed_prekey(&key.public_key))
        .to_bytes()
        .to_vec()
        .into();
    let err = client.upload_prekeys(as_curve).await.unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");

    // A curve key presented as a PQ prekey (with its own signature).
    let mut curve_as_kem = good.clone();
    let spk = curve_as_kem.signed_prekey.clone().unwrap();
    let last = curve_as_kem.pq_last_resort.as_mut().unwrap();
    last.public_key = spk.public_key;
    last.signature = spk.signature;
    assert!(client.upload_prekeys(curve_as_kem).await.is_err());

    // Keys of the right size, signed, that are no ML-KEM-1024 keys: every
    // coefficient 4095, above q (FIPS 203's check), as last-resort and as one-time.
    let not_a_key = vec![0xff; 1568];
    let sign_pq = |id: u32| -> bytes::Bytes {
        profile
            .identity()
            .sign(&sotto_proto::transcript::pq_prekey(id, &not_a_key))
            .to_bytes()
            .to_vec()
            .into()
    };
    let mut garbage = good.clone();
    let last = garbage.pq_last_resort.as_mut().unwrap();
    last.public_key = not_a_key.clone().into();
    last.signature = sign_pq(last.id);
    let err = client.upload_prekeys(garbage).await.unwrap_err();
    assert!(err.to_string().contains("FIPS 203"), "{err}");
    let mut garbage = good.clone();
    let one = &mut garbage.pq_one_time[0];
    one.public_key = not_a_key.clone().into();
    one.signature = sign_pq(one.id);
    assert!(client.upload_prekeys(garbage).await.is_err());

    // No last-resort PQ prekey at all.
    let mut without = good.clone();
    without.pq_last_resort = None;
    assert!(client.upload_prekeys(without).await.is_err());

    let before = relay
        .running()
        .state()
        .pq_one_time_prekeys_left("bob")
        .await
        .unwrap();
    client.upload_prekeys(good).await.unwrap();
    assert_eq!(
        relay
            .running()
            .state()
            .pq_one_time_prekeys_left("bob")
            .await
            .unwrap(),
        before + 1
    );
}

/// `payload` as the relay would deliver it from `from`.
fn envelope(
    from: &str,
    id: u64,
    payload: &sotto_proto::v1::SecretPayload,
) -> sotto_proto::v1::SecretEnvelope {
    sotto_proto::v1::SecretEnvelope {
        id,
        from: from.into(),
        ciphertext: payload.encode_to_vec().into(),
        queued_at: 0,
        group: Default::default(),
    }
}

#[tokio::test]
async fn malicious_relay_stripping_the_kem_from_a_strangers_first_message_changes_nothing() {
    // Carol, whom bob has never heard from, starts a PQXDH session; the relay
    // empties the KEM fields of her first message (or an old client, or
    // anyone with an account, sends one like it). Bob refuses it, and must
    // keep nothing of it: no trust in the key it names (that is for a first
    // message that decrypts), no held envelope (strangers would fill the
    // held list, pushing out what real contacts' held messages there are),
    // no session reset, no prekey used.
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bob = dir.path().join("bob");
    init_profile(&relay, &bob, "bob").await;
    let carol = relay.register("carol").await;
    let bundle = verify_bundle(&carol.client.fetch_bundle("bob").await.unwrap()).unwrap();
    let mut session = sotto_client::e2e::Session::initiate(&carol.identity, &bundle).unwrap();
    let content = sotto_proto::v1::SecretContent {
        text: "hello bob".into(),
        client_id: vec![7; sotto_proto::CLIENT_ID_LEN].into(),
        ..Default::default()
    };
    let genuine = session.encrypt(&content.encode_to_vec()).unwrap();
    let mut stripped = genuine.clone();
    let Some(sotto_proto::v1::secret_payload::Kind::Prekey(first)) = stripped.kind.as_mut() else {
        panic!("a first message carries the PQXDH header");
    };
    first.pq_ciphertext = Default::default();
    first.pq_prekey_id = first.pq_prekey_id.map(|_| 0);

    let mut p = Profile::open(&bob, PASSPHRASE).unwrap();
    let before = (p.prekeys.one_time_count(), p.prekeys.pq_one_time_count());
    let mut warnings = Vec::new();
    for id in 0..3 {
        match sotto_client::secret::receive(
            &mut p,
            &envelope("carol", 900 + id, &stripped),
            &mut warnings,
        ) {
            sotto_client::secret::Received::Dropped(why) => {
                assert!(why.contains("post-quantum"), "{why}")
            }
            _ => panic!("a first message without a KEM ciphertext must be refused and not kept"),
        }
    }
    assert!(
        !p.contacts.contains_key("carol"),
        "carol's key was trusted on a refused message"
    );
    assert!(p.held.is_empty(), "a stranger's refused message was kept");
    assert!(!p.resets.contains("carol"));
    assert!(!p.sessions.contains_key("carol"));
    assert_eq!(
        (p.prekeys.one_time_count(), p.prekeys.pq_one_time_count()),
        before
    );

    // Her genuine first message is still answered.
    match sotto_client::secret::receive(&mut p, &envelope("carol", 999, &genuine), &mut warnings) {
        sotto_client::secret::Received::Message(entry) => assert_eq!(entry.text, "hello bob"),
        _ => panic!("the genuine first message is read"),
    }
    assert!(p.contacts.contains_key("carol"));
    assert!(p.sessions["carol"].current().is_post_quantum());
}

#[tokio::test]
async fn an_unanswered_classical_session_from_before_pqxdh_is_replaced_at_the_next_send() {
    // Bob's older version started a classical session with alice; she never
    // answered. Both run PQXDH now, so alice refuses its first messages: the
    // next send must start a PQXDH session, not go on with one that can never
    // be answered (nothing bob sent would ever be read).
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    init_profile(&relay, &alice, "alice").await;
    init_profile(&relay, &bob, "bob").await;
    {
        let mut p = Profile::open(&bob, PASSPHRASE).unwrap();
        let client = relay.login_as("bob", p.identity()).await;
        let bundle = verify_bundle(&client.fetch_bundle("alice").await.unwrap()).unwrap();
        let session = sotto_client::e2e::Session::initiate(p.identity(), &bundle).unwrap();
        // As the older version stored it: no PQ fields.
        let mut stored = serde_json::to_value(&session).unwrap();
        let map = stored.as_object_mut().unwrap();
        map.remove("post_quantum");
        let pending = map["pending_prekey"].as_object_mut().unwrap();
        pending.remove("pq_ciphertext");
        pending.remove("pq_prekey_id");
        let classical: sotto_client::e2e::Session = serde_json::from_value(stored).unwrap();
        assert!(classical.is_unanswered() && !classical.is_post_quantum());
        p.contacts.insert(
            "alice".into(),
            sotto_client::profile::Contact::trusted(hex::encode(bundle.identity_key.to_bytes())),
        );
        p.sessions.insert(
            "alice".into(),
            sotto_client::e2e::PeerSessions::new(classical),
        );
        p.save().unwrap();
    }
    send_secret(&bob, "alice", "after the upgrade")
        .await
        .unwrap();
    assert_eq!(sync_texts(&alice).await, ["after the upgrade"]);
    let p = Profile::open(&bob, PASSPHRASE).unwrap();
    assert!(p.sessions["alice"].current().is_post_quantum());
}

#[tokio::test]
async fn another_user_cannot_make_the_relay_check_and_flush_prekey_uploads_without_end() {
    // Each upload of 200 one-time PQ prekeys makes the relay check 201
    // signatures (plus two) and flush its store; before a limit, an account
    // could send them back to back on as many streams as it liked.
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mallory = dir.path().join("mallory");
    init_profile(&relay, &mallory, "mallory").await; // one upload
    let mut profile = Profile::open(&mallory, PASSPHRASE).unwrap();
    let pq = profile.generate_pq_one_time(200);
    let upload = profile
        .prekeys
        .upload(profile.identity(), Vec::new(), pq)
        .unwrap();
    let client = relay.login_as("mallory", profile.identity()).await;
    let mut refused = None;
    for n in 1..=50 {
        if let Err(e) = client.upload_prekeys(upload.clone()).await {
            refused = Some((n, e));
            break;
        }
    }
    let (n, err) = refused.expect("uploads are limited");
    assert_eq!(
        err.code(),
        Some(sotto_proto::v1::ErrorCode::RateLimited),
        "{err}"
    );
    assert!(n <= 10, "{n} uploads in a row were taken");
}
