//! `sotto chat`'s event loop against a real relay, with scripted key events on
//! ratatui's TestBackend: a typed message is delivered, an incoming one is
//! shown, and one typed while the relay is down is delivered once it is back.

use std::time::Duration;

use sotto_client::profile::Profile;
use sotto_client::relay::Recipient;
use sotto_client::tui::app::{ConvKey, Delivery};
use sotto_tests::chat::{self, quit, typed, wait_for};
use sotto_tests::{PASSPHRASE, TestRelay, init_profile};

const PASS: &str = PASSPHRASE;

/// Bob's messages from alice, fetched until `want` of them have arrived.
async fn bob_receives(relay: &TestRelay, bob: &Profile, want: usize) -> Vec<String> {
    let client = relay.login_as(&bob.config.username, bob.identity()).await;
    let mut texts = Vec::new();
    for _ in 0..300 {
        let batch = client.fetch(100).await.unwrap();
        if let Some(last) = batch.normal.last() {
            client.ack(last.seq, vec![]).await.unwrap();
        }
        texts.extend(batch.normal.into_iter().map(|m| m.text));
        if texts.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    texts
}

/// A relay with alice and bob registered; bob's profile opened.
async fn alice_and_bob() -> (TestRelay, tempfile::TempDir, Profile) {
    let relay = TestRelay::start_on_own_port().await;
    let dir = tempfile::tempdir().unwrap();
    init_profile(&relay, &dir.path().join("alice"), "alice").await;
    init_profile(&relay, &dir.path().join("bob"), "bob").await;
    let bob = Profile::open(&dir.path().join("bob"), PASS).unwrap();
    (relay, dir, bob)
}

#[tokio::test]
async fn the_chat_loop_sends_shows_and_queues_while_the_relay_is_away() {
    let (mut relay, dir, bob) = alice_and_bob().await;
    let alice_dir = dir.path().join("alice");

    let alice = Profile::open(&alice_dir, PASS).unwrap();
    let (keys, mut seen, chat) = chat::start(alice, ConvKey::Direct("bob".into()));
    wait_for(&mut seen, "online", |s| s.online).await;

    // Typed and delivered.
    typed(&keys, "hello bob");
    wait_for(&mut seen, "the relay to store it", |s| {
        s.has("hello bob", Delivery::Sent)
    })
    .await;
    assert_eq!(bob_receives(&relay, &bob, 1).await, ["hello bob"]);

    // Incoming, shown without a key press.
    let to_alice = relay.login_as("bob", bob.identity()).await;
    to_alice
        .send_normal(Recipient::User("alice"), "hi alice", [7; 16])
        .await
        .unwrap();
    wait_for(&mut seen, "bob's message", |s| {
        s.has("hi alice", Delivery::Received)
    })
    .await;
    drop(to_alice);

    // The relay goes away; a message typed meanwhile waits, then goes once.
    relay.stop().await;
    wait_for(&mut seen, "the relay to be gone", |s| !s.online).await;
    typed(&keys, "while you were away");
    wait_for(&mut seen, "the pending line", |s| {
        s.has("while you were away", Delivery::Pending)
    })
    .await;
    relay.restart_on_same_port().await;
    let back = std::time::Instant::now();
    wait_for(&mut seen, "the queued message to be stored", |s| {
        s.online && s.has("while you were away", Delivery::Sent)
    })
    .await;
    // Attempts give up after 3 s and the first retry is at once: back well
    // before the old 10 s attempts and their backoff would have allowed.
    assert!(
        back.elapsed() < Duration::from_secs(8),
        "reconnected after {:?}",
        back.elapsed()
    );
    assert_eq!(bob_receives(&relay, &bob, 1).await, ["while you were away"]);

    quit(&keys);
    let app = chat.await.unwrap().unwrap();
    assert!(app.quit);
    // Exactly once: nothing more is waiting for bob.
    assert!(bob_receives(&relay, &bob, 1).await.is_empty());
}

#[tokio::test]
async fn a_message_typed_offline_survives_quitting_and_is_sent_once_on_the_next_start() {
    let (mut relay, dir, bob) = alice_and_bob().await;
    let alice_dir = dir.path().join("alice");
    let group = ConvKey::Group("crew".into());
    {
        let alice = Profile::open(&alice_dir, PASS).unwrap();
        let client = alice.connect().await.unwrap();
        client.create_group("crew", &["bob".into()]).await.unwrap();
    }

    let (keys, mut seen, task) =
        chat::start(Profile::open(&alice_dir, PASS).unwrap(), group.clone());
    wait_for(&mut seen, "online", |s| s.online).await;
    relay.stop().await;
    wait_for(&mut seen, "the relay to be gone", |s| !s.online).await;
    typed(&keys, "typed on the train");
    wait_for(&mut seen, "the pending line", |s| {
        s.has("typed on the train", Delivery::Pending)
    })
    .await;
    quit(&keys);
    task.await.unwrap().unwrap();

    relay.restart_on_same_port().await;
    let (keys, mut seen, task) = chat::start(Profile::open(&alice_dir, PASS).unwrap(), group);
    wait_for(&mut seen, "the kept message to be stored", |s| {
        s.has("typed on the train", Delivery::Sent)
    })
    .await;
    quit(&keys);
    task.await.unwrap().unwrap();
    assert_eq!(bob_receives(&relay, &bob, 1).await, ["typed on the train"]);
    assert!(
        bob_receives(&relay, &bob, 1).await.is_empty(),
        "exactly once"
    );
    assert!(Profile::open(&alice_dir, PASS).unwrap().pending.is_empty());
}

#[tokio::test]
async fn a_secret_message_typed_offline_survives_quitting_and_is_sent_once() {
    let (mut relay, dir, mut bob) = alice_and_bob().await;
    let alice_dir = dir.path().join("alice");
    let secret = ConvKey::Secret("bob".into());
    let (keys, mut seen, task) =
        chat::start(Profile::open(&alice_dir, PASS).unwrap(), secret.clone());
    wait_for(&mut seen, "online", |s| s.online).await;
    relay.stop().await;
    wait_for(&mut seen, "the relay to be gone", |s| !s.online).await;
    typed(&keys, "secret on the train");
    wait_for(&mut seen, "the pending line", |s| {
        s.has("secret on the train", Delivery::Pending)
    })
    .await;
    quit(&keys);
    task.await.unwrap().unwrap();
    // Kept in the vault, unencrypted yet (no session could be set up offline).
    {
        let alice = Profile::open(&alice_dir, PASS).unwrap();
        assert_eq!(alice.pending.len(), 1);
        assert!(alice.pending[0].secret);
    }

    relay.restart_on_same_port().await;
    let (keys, mut seen, task) = chat::start(Profile::open(&alice_dir, PASS).unwrap(), secret);
    wait_for(&mut seen, "the kept secret message to be stored", |s| {
        s.has("secret on the train", Delivery::Sent)
    })
    .await;
    quit(&keys);
    task.await.unwrap().unwrap();
    let mut out = Vec::new();
    sotto_client::commands::sync::run(&mut bob, true, &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.matches("secret on the train").count(), 1, "{out}");
    let alice = Profile::open(&alice_dir, PASS).unwrap();
    assert!(alice.pending.is_empty() && alice.outbox.is_empty());
}

#[tokio::test]
async fn a_secret_message_shows_delivered_once_the_recipients_client_decrypted_it() {
    let (_relay, dir, mut bob) = alice_and_bob().await;
    let alice_dir = dir.path().join("alice");
    let secret = ConvKey::Secret("bob".into());
    let (keys, mut seen, task) =
        chat::start(Profile::open(&alice_dir, PASS).unwrap(), secret.clone());
    wait_for(&mut seen, "online", |s| s.online).await;
    typed(&keys, "did it arrive?");
    wait_for(&mut seen, "the relay to store it", |s| {
        s.has("did it arrive?", Delivery::Sent)
    })
    .await;
    // Stored is not delivered: only bob's client can say that.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen.borrow().has("did it arrive?", Delivery::Sent));

    let mut out = Vec::new();
    sotto_client::commands::sync::run(&mut bob, true, &mut out)
        .await
        .unwrap();
    assert!(String::from_utf8(out).unwrap().contains("did it arrive?"));
    wait_for(&mut seen, "bob's receipt", |s| {
        s.shows(&secret, "did it arrive?", Delivery::Delivered)
    })
    .await;
    quit(&keys);
    task.await.unwrap().unwrap();

    // Kept across a restart; the receipt itself is no message.
    let alice = Profile::open(&alice_dir, PASS).unwrap();
    let sent: Vec<_> = alice
        .history()
        .iter()
        .filter(|e| e.text == "did it arrive?")
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].delivered);
    assert!(
        alice.history().iter().all(|e| e.from != "bob"),
        "{:?}",
        alice.history()
    );
    // Bob's client answers a message with one receipt, and a receipt with none.
    let mut again = Vec::new();
    sotto_client::commands::sync::run(&mut bob, true, &mut again)
        .await
        .unwrap();
    assert!(again.is_empty());
    assert!(bob.outbox.is_empty(), "{:?}", bob.outbox);
}

#[tokio::test]
async fn a_message_the_relay_refuses_comes_back_to_the_input_and_leaves_the_outbox() {
    let (_relay, dir, _bob) = alice_and_bob().await;
    let alice_dir = dir.path().join("alice");
    let nobody = ConvKey::Direct("nosuchuser".into());
    let (keys, mut seen, task) =
        chat::start(Profile::open(&alice_dir, PASS).unwrap(), nobody.clone());
    wait_for(&mut seen, "online", |s| s.online).await;
    typed(&keys, "hello, anyone?");
    wait_for(&mut seen, "the refusal", |s| {
        s.shows(&nobody, "hello, anyone?", Delivery::Failed)
    })
    .await;
    // The network task takes the withdrawal before it sees the UI quit.
    quit(&keys);
    let app = task.await.unwrap().unwrap();
    assert_eq!(app.input_text(), "hello, anyone?");
    assert!(
        app.status.contains("no account named nosuchuser"),
        "{}",
        app.status
    );
    let alice = Profile::open(&alice_dir, PASS).unwrap();
    assert!(alice.pending.is_empty(), "{:?}", alice.pending);
}
