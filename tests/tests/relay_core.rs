//! The relay core through a real relay on 127.0.0.1: accounts, login, normal
//! chats (1:1 and groups), durability across restarts, sealing at rest, bad input.

use std::time::Duration;

use sotto_client::identity::Identity;
use sotto_client::pinning::Fingerprint;
use sotto_client::relay::{ClientError, Recipient, RelayClient};
use sotto_proto::v1::{self, ErrorCode, push, request, response};
use sotto_tests::{TestRelay, files_containing};

fn id(n: u8) -> [u8; 16] {
    [n; 16]
}

fn refused_with(result: Result<impl std::fmt::Debug, ClientError>, code: ErrorCode) {
    match result {
        Err(ClientError::Refused { code: got, .. }) => assert_eq!(got, code),
        other => panic!("expected a refusal with {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_registered_user_logs_in_on_a_new_connection() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let again = relay.connect().await;
    again.login("alice", &alice.identity).await.unwrap();
    again.fetch(10).await.unwrap();
}

#[tokio::test]
async fn a_taken_username_is_refused() {
    let relay = TestRelay::start().await;
    relay.register("alice").await;
    let other = relay.connect().await;
    refused_with(
        other.register("alice", &Identity::generate()).await,
        ErrorCode::UsernameTaken,
    );
}

#[tokio::test]
async fn an_invalid_username_is_refused() {
    let relay = TestRelay::start().await;
    let client = relay.connect().await;
    refused_with(
        client.register("Al", &Identity::generate()).await,
        ErrorCode::InvalidUsername,
    );
}

#[tokio::test]
async fn login_with_the_wrong_key_is_refused() {
    let relay = TestRelay::start().await;
    relay.register("alice").await;
    let mallory = relay.connect().await;
    refused_with(
        mallory.login("alice", &Identity::generate()).await,
        ErrorCode::BadSignature,
    );
    // And the connection stays logged out.
    refused_with(mallory.fetch(10).await, ErrorCode::NotLoggedIn);
}

#[tokio::test]
async fn a_login_signature_is_bound_to_its_connection() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let victim = relay.connect().await;
    let attacker = relay.connect().await;
    // The attacker gets a nonce, has the victim's connection sign it (as a
    // relaying attacker would), and presents that signature on its own connection.
    let nonce = match attacker
        .request(request::Kind::Challenge(Default::default()))
        .await
        .unwrap()
    {
        response::Kind::Challenge(c) => c.nonce,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let mut victim_exporter = [0u8; 32];
    victim
        .connection()
        .export_keying_material(&mut victim_exporter, sotto_proto::LOGIN_EXPORTER_LABEL, b"")
        .unwrap();
    let signature = alice.identity.sign(&sotto_proto::transcript::login(
        "alice",
        &nonce,
        &victim_exporter,
    ));
    let result = attacker
        .request(request::Kind::Login(v1::Login {
            username: "alice".into(),
            signature: signature.to_bytes().to_vec().into(),
        }))
        .await;
    refused_with(result, ErrorCode::BadSignature);
}

#[tokio::test]
async fn a_login_without_a_challenge_is_refused() {
    let relay = TestRelay::start().await;
    relay.register("alice").await;
    let client = relay.connect().await;
    let result = client
        .request(request::Kind::Login(v1::Login {
            username: "alice".into(),
            signature: vec![0; 64].into(),
        }))
        .await;
    refused_with(result, ErrorCode::NoChallenge);
}

#[tokio::test]
async fn requests_before_login_are_refused() {
    let relay = TestRelay::start().await;
    relay.register("bob").await;
    let anon = relay.connect().await;
    refused_with(anon.fetch(10).await, ErrorCode::NotLoggedIn);
    refused_with(
        anon.send_normal(Recipient::User("bob"), "hi", id(1)).await,
        ErrorCode::NotLoggedIn,
    );
    refused_with(
        anon.create_group("team", &["bob".into()]).await,
        ErrorCode::NotLoggedIn,
    );
    refused_with(anon.ack(1, vec![]).await, ErrorCode::NotLoggedIn);
}

#[tokio::test]
async fn a_one_to_one_message_is_delivered_live_and_by_sync() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    let mut pushes = bob.client.subscribe().await.unwrap();

    let stored = alice
        .client
        .send_normal(Recipient::User("bob"), "hello bob", id(1))
        .await
        .unwrap();
    assert!(!stored.duplicate);

    let push = tokio::time::timeout(Duration::from_secs(10), pushes.next())
        .await
        .expect("the push arrives")
        .unwrap()
        .expect("the push stream is open");
    let Some(push::Kind::Normal(live)) = push.kind else {
        panic!("expected a normal message push");
    };
    assert_eq!(
        (live.from.as_str(), live.text.as_str(), live.id),
        ("alice", "hello bob", stored.id)
    );

    let batch = bob.client.fetch(100).await.unwrap();
    assert_eq!(batch.normal.len(), 1);
    assert_eq!(batch.normal[0].text, "hello bob");
    assert_eq!(batch.normal[0].to, "bob");
    bob.client.ack(batch.normal[0].seq, vec![]).await.unwrap();
    assert!(bob.client.fetch(100).await.unwrap().normal.is_empty());
    // The sender's own inbox holds nothing of it.
    assert!(alice.client.fetch(100).await.unwrap().normal.is_empty());
}

#[tokio::test]
async fn messages_are_delivered_after_the_relay_restarts() {
    let mut relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        alice
            .client
            .send_normal(Recipient::User("bob"), text, id(n as u8))
            .await
            .unwrap();
    }
    drop(alice.client);
    drop(bob.client);
    relay.restart().await;

    let bob_again = relay.connect().await;
    bob_again.login("bob", &bob.identity).await.unwrap();
    let batch = bob_again.fetch(100).await.unwrap();
    let texts: Vec<_> = batch.normal.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
}

#[tokio::test]
async fn a_group_message_fans_out_to_every_member() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    let carol = relay.register("carol").await;
    let dave = relay.register("dave").await;
    let created = alice
        .client
        .create_group("team", &["bob".into(), "carol".into()])
        .await
        .unwrap();
    assert_eq!(created.members, ["alice", "bob", "carol"]);

    bob.client
        .send_normal(Recipient::Group("team"), "standup at ten", id(1))
        .await
        .unwrap();
    for member in [&alice, &carol] {
        let batch = member.client.fetch(100).await.unwrap();
        assert_eq!(
            batch.normal.len(),
            1,
            "{} gets the group message",
            member.name
        );
        assert_eq!(batch.normal[0].group, "team");
        assert_eq!(batch.normal[0].from, "bob");
    }
    assert!(bob.client.fetch(100).await.unwrap().normal.is_empty());
    assert!(
        dave.client.fetch(100).await.unwrap().normal.is_empty(),
        "a non-member reads nothing"
    );
}

#[tokio::test]
async fn a_non_member_cannot_post_to_a_group() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    relay.register("bob").await;
    let mallory = relay.register("mallory").await;
    alice
        .client
        .create_group("team", &["bob".into()])
        .await
        .unwrap();
    refused_with(
        mallory
            .client
            .send_normal(Recipient::Group("team"), "let me in", id(1))
            .await,
        ErrorCode::NotAMember,
    );
    refused_with(
        mallory
            .client
            .send_normal(Recipient::Group("nosuchgroup"), "x", id(2))
            .await,
        ErrorCode::UnknownGroup,
    );
    refused_with(
        mallory.client.create_group("team", &["alice".into()]).await,
        ErrorCode::GroupExists,
    );
    assert!(alice.client.fetch(100).await.unwrap().normal.is_empty());
}

#[tokio::test]
async fn a_message_to_an_unknown_user_is_refused() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    refused_with(
        alice
            .client
            .send_normal(Recipient::User("nobody"), "hi", id(1))
            .await,
        ErrorCode::UnknownUser,
    );
}

#[tokio::test]
async fn a_retried_send_with_the_same_id_is_stored_once() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    let first = alice
        .client
        .send_normal(Recipient::User("bob"), "once", id(9))
        .await
        .unwrap();
    // The retry comes on a new connection, as after a dropped one.
    let retry_conn = relay.login(&alice).await;
    let retry = retry_conn
        .send_normal(Recipient::User("bob"), "once", id(9))
        .await
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.id, retry.sent_at), (first.id, first.sent_at));
    assert_eq!(bob.client.fetch(100).await.unwrap().normal.len(), 1);
}

#[tokio::test]
async fn concurrent_sends_are_all_stored_and_fetched_in_order() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    let client = std::sync::Arc::new(alice.client);
    let mut tasks = Vec::new();
    for n in 0..40u8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .send_normal(Recipient::User("bob"), &format!("m{n}"), id(n))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let batch = bob.client.fetch(100).await.unwrap();
    assert_eq!(batch.normal.len(), 40);
    assert!(batch.normal.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn no_message_body_or_username_reaches_the_data_directory() {
    let mut relay = TestRelay::start().await;
    let alice = relay.register("alice-canary").await;
    relay.register("bob-canary").await;
    alice
        .client
        .create_group("group-canary", &["bob-canary".into()])
        .await
        .unwrap();
    alice
        .client
        .send_normal(
            Recipient::User("bob-canary"),
            "body-canary-4471 one to one",
            id(1),
        )
        .await
        .unwrap();
    alice
        .client
        .send_normal(
            Recipient::Group("group-canary"),
            "body-canary-4471 in a group",
            id(2),
        )
        .await
        .unwrap();
    relay.stop().await;
    for needle in [
        "body-canary-4471",
        "alice-canary",
        "bob-canary",
        "group-canary",
    ] {
        let hits = files_containing(&relay.data_dir(), needle.as_bytes());
        assert!(hits.is_empty(), "{needle:?} found in {hits:?}");
    }
}

async fn raw_request(client: &RelayClient, bytes: &[u8]) -> v1::Response {
    let (mut send, mut recv) = client.connection().open_bi().await.unwrap();
    // The relay may stop the stream before it has read everything: ignore that.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    sotto_proto::frame::read_message(&mut recv, 1 << 20)
        .await
        .unwrap()
        .expect("the relay answers")
}

fn error_code(response: &v1::Response) -> ErrorCode {
    match &response.kind {
        Some(response::Kind::Error(e)) => ErrorCode::try_from(e.code).unwrap(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_and_garbage_frames_get_errors_while_others_keep_working() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    let mallory = relay.register("mallory").await;

    let mut oversized = (4u32 << 20).to_be_bytes().to_vec();
    oversized.extend(std::iter::repeat_n(0u8, 64 * 1024));
    assert_eq!(
        error_code(&raw_request(&mallory.client, &oversized).await),
        ErrorCode::FrameTooLarge
    );

    let garbage = [0u8, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        error_code(&raw_request(&mallory.client, &garbage).await),
        ErrorCode::BadFrame
    );

    let framed = sotto_proto::frame::encode(&v1::Request { kind: None });
    assert_eq!(
        error_code(&raw_request(&mallory.client, &framed).await),
        ErrorCode::BadRequest
    );

    // Everyone else, and mallory's own connection, carry on.
    alice
        .client
        .send_normal(Recipient::User("bob"), "still here", id(1))
        .await
        .unwrap();
    assert_eq!(
        bob.client.fetch(10).await.unwrap().normal[0].text,
        "still here"
    );
    mallory.client.fetch(10).await.unwrap();
}

#[tokio::test]
async fn a_text_over_the_limit_is_refused() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    relay.register("bob").await;
    let long = "x".repeat(sotto_proto::MAX_TEXT + 1);
    refused_with(
        alice
            .client
            .send_normal(Recipient::User("bob"), &long, id(1))
            .await,
        ErrorCode::TooLarge,
    );
}

#[tokio::test]
async fn a_client_pinned_to_another_fingerprint_refuses_to_connect() {
    let relay = TestRelay::start().await;
    let wrong = Fingerprint::parse(&format!("sha256:{}", "00".repeat(32))).unwrap();
    match RelayClient::connect(&relay.addr.to_string(), Some(wrong)).await {
        Err(ClientError::PinMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, relay.fingerprint);
        }
        Err(other) => panic!("expected a pin mismatch, got {other}"),
        Ok(_) => panic!("connected to a relay with the wrong fingerprint"),
    }
}

#[tokio::test]
async fn a_backlog_larger_than_a_frame_arrives_in_several_batches() {
    let relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    let big = "x".repeat(sotto_proto::MAX_TEXT - 16);
    for n in 0..40u8 {
        alice
            .client
            .send_normal(Recipient::User("bob"), &format!("{n:02}{big}"), id(n))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let mut batches = 0;
    loop {
        let batch = bob.client.fetch(500).await.unwrap();
        batches += 1;
        got.extend(batch.normal.iter().map(|m| m.text[..2].to_owned()));
        if let Some(last) = batch.normal.last() {
            bob.client.ack(last.seq, vec![]).await.unwrap();
        }
        if !batch.more {
            break;
        }
    }
    assert!(batches > 1, "40 × 64 KiB cannot fit one frame");
    assert_eq!(got, (0..40).map(|n| format!("{n:02}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn login_attempts_on_one_connection_are_rate_limited() {
    let relay = TestRelay::start().await;
    relay.register("alice").await;
    let guesser = relay.connect().await;
    let mut refused = 0;
    for _ in 0..12 {
        match guesser.login("alice", &Identity::generate()).await {
            Err(ClientError::Refused {
                code: ErrorCode::BadSignature,
                ..
            }) => {}
            Err(ClientError::Refused {
                code: ErrorCode::RateLimited,
                ..
            }) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused >= 2, "the 11th and 12th guesses are refused");
    // Another connection is not affected.
    relay
        .connect()
        .await
        .register("bob", &Identity::generate())
        .await
        .unwrap();
}

#[tokio::test]
async fn messages_on_both_sides_of_a_checkpoint_survive_kill_9() {
    use sotto_tests::RelayProcess;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    // Alice sends over four thousand messages at once: lift her send rate.
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("relay.toml"),
        "[limits]\nsends_per_minute = 100000\n",
    )
    .unwrap();
    let mut relay = RelayProcess::start(&data, &[]);
    let connect = |relay: &RelayProcess| {
        let addr = relay.addr.clone();
        let pin = Fingerprint::parse(&relay.fingerprint).unwrap();
        async move { RelayClient::connect(&addr, Some(pin)).await.unwrap() }
    };
    let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
    let alice = Arc::new(connect(&relay).await);
    alice.register("alice", &alice_id).await.unwrap();
    connect(&relay)
        .await
        .register("bob", &bob_id)
        .await
        .unwrap();

    // More than a checkpoint's worth, so some of it is checkpointed and the
    // rest lives only in the segments when the relay is killed.
    let total = sotto_server::archive::CHECKPOINT_EVERY as u32 + 300;
    let client_id = |n: u32| {
        let mut id = [0xc0; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id
    };
    let mut senders = tokio::task::JoinSet::new();
    for lane in 0..8 {
        let alice = alice.clone();
        senders.spawn(async move {
            for n in (lane..total).step_by(8) {
                alice
                    .send_normal(Recipient::User("bob"), &format!("m{n}"), client_id(n))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    relay.kill_9();

    let relay = RelayProcess::start(&data, &[]);
    let bob = connect(&relay).await;
    bob.login("bob", &bob_id).await.unwrap();
    let mut got = std::collections::HashSet::new();
    loop {
        let batch = bob.fetch(500).await.unwrap();
        let Some(last) = batch.normal.iter().map(|m| m.seq).max() else {
            break;
        };
        for m in &batch.normal {
            assert!(got.insert(m.text.clone()), "{} delivered twice", m.text);
        }
        bob.ack(last, vec![]).await.unwrap();
    }
    assert_eq!(got.len(), total as usize);
    assert!((0..total).all(|n| got.contains(&format!("m{n}"))));

    // A retry of a recent send is still recognised after the crash.
    let alice = connect(&relay).await;
    alice.login("alice", &alice_id).await.unwrap();
    let retry = alice
        .send_normal(Recipient::User("bob"), "m0", client_id(total - 1))
        .await
        .unwrap();
    assert!(retry.duplicate);
}
