//! ✓✓ on normal messages through a real relay: a sender learns that the
//! recipient's client fetched and acknowledged their message, live or after
//! coming back, and learns nothing else of the recipient's inbox; a group
//! message is delivered once every other member acknowledged it.

use std::time::Duration;

use sotto_client::profile::Profile;
use sotto_client::relay::{ClientError, Pushes, Recipient, RelayClient};
use sotto_client::tui::app::{ConvKey, Delivery};
use sotto_proto::v1::{Delivered, ErrorCode, push};
use sotto_tests::chat::{self, quit, typed, wait_for};
use sotto_tests::{PASSPHRASE, TestRelay, TestUser, init_profile};

const PASS: &str = PASSPHRASE;

fn id(n: u8) -> [u8; 16] {
    [n; 16]
}

fn direct(peer: &str, upto: u64) -> Delivered {
    Delivered {
        peer: peer.into(),
        group: String::new(),
        upto,
    }
}

fn group(name: &str, upto: u64) -> Delivered {
    Delivered {
        peer: String::new(),
        group: name.into(),
        upto,
    }
}

/// Sends one normal message; its relay id.
async fn send(from: &RelayClient, to: Recipient<'_>, text: &str, n: u8) -> u64 {
    from.send_normal(to, text, id(n)).await.unwrap().id
}

/// Fetches what waits and acknowledges all of it; the texts.
async fn fetch_and_ack(client: &RelayClient) -> Vec<String> {
    let batch = client.fetch(100).await.unwrap();
    if let Some(last) = batch.normal.last() {
        client.ack(last.seq, vec![]).await.unwrap();
    }
    batch.normal.into_iter().map(|m| m.text).collect()
}

/// Every `Delivered` pushed to `watched` so far. Pushes keep their order on
/// the stream, so a message `postman` sends now, once it arrives, says that
/// everything pushed before it has arrived too: no sleep, no guess.
async fn delivered_so_far(
    pushes: &mut Pushes,
    postman: &RelayClient,
    watched: &str,
    n: u8,
) -> Vec<Delivered> {
    let marker = format!("marker {n}");
    send(postman, Recipient::User(watched), &marker, n).await;
    let mut seen = Vec::new();
    loop {
        let push = tokio::time::timeout(Duration::from_secs(10), pushes.next())
            .await
            .expect("the marker arrives")
            .unwrap()
            .expect("the push stream is open");
        match push.kind {
            Some(push::Kind::Delivered(d)) => seen.push(d),
            Some(push::Kind::Normal(m)) if m.text == marker => return seen,
            _ => {}
        }
    }
}

async fn register(relay: &TestRelay, names: &[&str]) -> Vec<TestUser> {
    let mut users = Vec::new();
    for name in names {
        users.push(relay.register(name).await);
    }
    users
}

#[tokio::test]
async fn a_message_sent_while_the_recipient_was_away_shows_delivered_once_the_sender_is_back() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    init_profile(&relay, &alice_dir, "alice").await;
    init_profile(&relay, &bob_dir, "bob").await;
    let bob_chat = ConvKey::Direct("bob".into());

    // Bob is away; alice sends, sees ✓ (stored), and quits.
    let (keys, mut seen, task) =
        chat::start(Profile::open(&alice_dir, PASS).unwrap(), bob_chat.clone());
    wait_for(&mut seen, "online", |s| s.online).await;
    typed(&keys, "are you there?");
    wait_for(&mut seen, "the relay to store it", |s| {
        s.shows(&bob_chat, "are you there?", Delivery::Sent)
    })
    .await;
    quit(&keys);
    task.await.unwrap().unwrap();

    // Bob comes, fetches and acknowledges it, while alice is away.
    let mut bob = Profile::open(&bob_dir, PASS).unwrap();
    let mut out = Vec::new();
    sotto_client::commands::sync::run(&mut bob, true, &mut out)
        .await
        .unwrap();
    assert!(String::from_utf8(out).unwrap().contains("are you there?"));

    // Alice is back: ✓✓, and kept in her vault.
    let (keys, mut seen, task) =
        chat::start(Profile::open(&alice_dir, PASS).unwrap(), bob_chat.clone());
    wait_for(&mut seen, "the delivered mark", |s| {
        s.shows(&bob_chat, "are you there?", Delivery::Delivered)
    })
    .await;
    quit(&keys);
    task.await.unwrap().unwrap();
    let alice = Profile::open(&alice_dir, PASS).unwrap();
    let sent: Vec<_> = alice
        .history()
        .iter()
        .filter(|e| e.text == "are you there?")
        .collect();
    assert!(sent.len() == 1 && sent[0].delivered, "{sent:?}");
}

#[tokio::test]
async fn a_connected_sender_sees_delivered_as_soon_as_the_recipient_acknowledges() {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    init_profile(&relay, &alice_dir, "alice").await;
    init_profile(&relay, &bob_dir, "bob").await;
    let bob_chat = ConvKey::Direct("bob".into());
    let (keys, mut seen, task) =
        chat::start(Profile::open(&alice_dir, PASS).unwrap(), bob_chat.clone());
    wait_for(&mut seen, "online", |s| s.online).await;
    typed(&keys, "first");
    typed(&keys, "second");
    wait_for(&mut seen, "the relay to store both", |s| {
        s.shows(&bob_chat, "first", Delivery::Sent) && s.shows(&bob_chat, "second", Delivery::Sent)
    })
    .await;

    // Bob's client takes the first only: only it turns ✓✓.
    let bob = Profile::open(&bob_dir, PASS).unwrap();
    let client = relay.login_as("bob", bob.identity()).await;
    let batch = client.fetch(1).await.unwrap();
    assert_eq!(batch.normal[0].text, "first");
    client.ack(batch.normal[0].seq, vec![]).await.unwrap();
    wait_for(&mut seen, "the push for the first", |s| {
        s.shows(&bob_chat, "first", Delivery::Delivered)
    })
    .await;
    assert!(seen.borrow().shows(&bob_chat, "second", Delivery::Sent));

    assert_eq!(fetch_and_ack(&client).await, ["second"]);
    wait_for(&mut seen, "the push for the second", |s| {
        s.shows(&bob_chat, "second", Delivery::Delivered)
    })
    .await;
    quit(&keys);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn curious_user_learns_nothing_of_a_recipients_other_conversations() {
    let relay = TestRelay::start().await;
    let [alice, bob, carol, postman] =
        &register(&relay, &["alice", "bob", "carol", "postman"]).await[..]
    else {
        unreachable!()
    };
    let mut alice_pushes = alice.client.subscribe().await.unwrap();
    let mut carol_pushes = carol.client.subscribe().await.unwrap();

    // Bob acknowledges alice's first message; then carol writes to him, then alice.
    let a1 = send(&alice.client, Recipient::User("bob"), "a1", 1).await;
    assert_eq!(fetch_and_ack(&bob.client).await, ["a1"]);
    let c1 = send(&carol.client, Recipient::User("bob"), "c1", 2).await;
    let a2 = send(&alice.client, Recipient::User("bob"), "a2", 3).await;
    assert_eq!(
        delivered_so_far(&mut alice_pushes, &postman.client, "alice", 10).await,
        [direct("bob", a1)]
    );

    // Bob's client takes carol's message only: his cursor is at c1, past a1
    // and short of a2. Carol is told; alice is told nothing.
    let batch = bob.client.fetch(1).await.unwrap();
    assert_eq!(batch.normal[0].text, "c1");
    bob.client.ack(batch.normal[0].seq, vec![]).await.unwrap();
    assert_eq!(
        delivered_so_far(&mut carol_pushes, &postman.client, "carol", 11).await,
        [direct("bob", c1)]
    );
    assert_eq!(
        delivered_so_far(&mut alice_pushes, &postman.client, "alice", 12).await,
        []
    );

    // Asked, alice hears of her own a1, never of carol's c1 or of ids near
    // bob's cursor; carol, not in alice's chat, hears nothing of it.
    let probes = vec![a1, a2, c1, c1 - 1, c1 + 1, 0, u64::MAX];
    assert_eq!(
        alice.client.delivery_status(probes.clone()).await.unwrap(),
        [direct("bob", a1)]
    );
    assert_eq!(
        carol.client.delivery_status(vec![a1, a2]).await.unwrap(),
        []
    );
    assert_eq!(
        carol.client.delivery_status(probes).await.unwrap(),
        [direct("bob", c1)]
    );
    // Bob, the recipient, is no sender of these: nothing either.
    assert_eq!(bob.client.delivery_status(vec![a1, c1]).await.unwrap(), []);

    // Bob takes the rest: alice is told of a2, carol of nothing more.
    assert_eq!(fetch_and_ack(&bob.client).await, ["a2"]);
    assert_eq!(
        delivered_so_far(&mut alice_pushes, &postman.client, "alice", 13).await,
        [direct("bob", a2)]
    );
    assert_eq!(
        delivered_so_far(&mut carol_pushes, &postman.client, "carol", 14).await,
        []
    );

    // One question is bounded.
    let too_many = vec![a1; sotto_proto::MAX_DELIVERY_QUERY + 1];
    match alice.client.delivery_status(too_many).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::TooLarge),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_group_message_is_delivered_once_every_other_member_acknowledged_it() {
    let relay = TestRelay::start().await;
    let [alice, bob, carol, dave, postman] =
        &register(&relay, &["alice", "bob", "carol", "dave", "postman"]).await[..]
    else {
        unreachable!()
    };
    alice
        .client
        .create_group("crew", &["bob".into(), "carol".into()])
        .await
        .unwrap();
    let mut alice_pushes = alice.client.subscribe().await.unwrap();
    let m = send(&alice.client, Recipient::Group("crew"), "all aboard", 1).await;

    // Bob has it, carol not yet: not delivered.
    assert_eq!(fetch_and_ack(&bob.client).await, ["all aboard"]);
    assert_eq!(
        delivered_so_far(&mut alice_pushes, &postman.client, "alice", 10).await,
        []
    );
    assert_eq!(alice.client.delivery_status(vec![m]).await.unwrap(), []);

    // Carol too: delivered, pushed and when asked.
    assert_eq!(fetch_and_ack(&carol.client).await, ["all aboard"]);
    assert_eq!(
        delivered_so_far(&mut alice_pushes, &postman.client, "alice", 11).await,
        [group("crew", m)]
    );
    assert_eq!(
        alice.client.delivery_status(vec![m]).await.unwrap(),
        [group("crew", m)]
    );
    // A member who did not send it, and someone outside the group: nothing.
    assert_eq!(bob.client.delivery_status(vec![m]).await.unwrap(), []);
    assert_eq!(dave.client.delivery_status(vec![m]).await.unwrap(), []);
}
