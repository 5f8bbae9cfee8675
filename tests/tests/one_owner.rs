//! One owner per profile (issue #11). While `sotto chat` holds a profile, the
//! `sotto send` binary hands its messages to it (no passphrase, no vault), so
//! one process advances the Double Ratchet; two `sotto send`s started together
//! take turns on the profile's lock. Each test checks what the relay
//! delivered: every message readable, in order, and no (ratchet key, message
//! number) pair used twice, the sign of a forked ratchet reusing message keys.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use prost::Message;
use sotto_client::commands;
use sotto_client::profile::{HistoryEntry, Mode, Profile};
use sotto_client::tui::app::{ConvKey, Delivery};
use sotto_proto::v1::{SecretEnvelope, SecretPayload, secret_payload};
use sotto_tests::chat::{self, quit, typed, wait_for};
use sotto_tests::{PASSPHRASE, TestRelay, bin, init_profile, sotto};

/// Not alice's passphrase: a `sotto send` that opened the vault with it would fail.
const NOT_THE_PASSPHRASE: &str = "not alice's passphrase";

/// Starts the `sotto send ARGS...` binary on `profile` with `passphrase` in
/// its environment and `stdin` on its standard input.
fn spawn_send(profile: &Path, passphrase: &str, args: &[&str], stdin: &str) -> std::process::Child {
    let mut child = Command::new(bin("sotto"))
        .arg("--profile")
        .arg(profile)
        .arg("send")
        .args(args)
        .env("SOTTO_PASSPHRASE", passphrase)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sotto send");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write the message to sotto send");
    child
}

fn sotto_send(profile: &Path, passphrase: &str, args: &[&str], stdin: &str) -> Output {
    spawn_send(profile, passphrase, args, stdin)
        .wait_with_output()
        .expect("wait for sotto send")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The Double Ratchet header's sending-chain key and message number N
/// (`header` = key(32) ‖ PN(4) ‖ N(4)), as the relay delivered the envelope.
fn ratchet_key_and_counter(envelope: &SecretEnvelope) -> ([u8; 32], u32) {
    let payload = SecretPayload::decode(envelope.ciphertext.as_ref()).expect("a secret payload");
    let message = match payload.kind.expect("a payload kind") {
        secret_payload::Kind::Prekey(first) => first.message.expect("a first ratchet message"),
        secret_payload::Kind::Message(m) => m,
    };
    assert_eq!(message.header.len(), 40, "a ratchet header");
    let key = message.header[..32].try_into().unwrap();
    let n = u32::from_be_bytes(message.header[36..40].try_into().unwrap());
    (key, n)
}

/// What the relay holds for bob: the (ratchet key, N) of every secret
/// envelope, in its order, and the normal texts. Nothing is acknowledged.
async fn waiting_for_bob(relay: &TestRelay, bob: &Profile) -> (Vec<([u8; 32], u32)>, Vec<String>) {
    let client = relay.login_as("bob", bob.identity()).await;
    let batch = client.fetch(sotto_proto::MAX_FETCH).await.unwrap();
    assert!(!batch.more, "everything fits one batch");
    client.close().await;
    (
        batch.secret.iter().map(ratchet_key_and_counter).collect(),
        batch.normal.into_iter().map(|m| m.text).collect(),
    )
}

/// Bob's profile fetches, decrypts and acknowledges everything; returns what
/// arrived, oldest first. Every message must be readable: no warnings.
async fn bob_syncs(bob: &mut Profile) -> Vec<HistoryEntry> {
    let client = bob.connect().await.unwrap();
    let fetched = commands::sync::fetch_new(bob, &client, false)
        .await
        .unwrap();
    client.close().await;
    assert!(fetched.warnings.is_empty(), "{:?}", fetched.warnings);
    fetched.entries
}

fn assert_no_pair_twice(pairs: &[([u8; 32], u32)]) {
    let distinct: HashSet<_> = pairs.iter().collect();
    assert_eq!(
        distinct.len(),
        pairs.len(),
        "a (ratchet key, N) pair was used twice: a message key was reused"
    );
}

/// `sub` appears in `all` in this order (other items may come between).
fn in_order(all: &[String], sub: &[&str]) -> bool {
    let mut rest = all.iter();
    sub.iter().all(|want| rest.any(|t| t == want))
}

async fn alice_and_bob() -> (TestRelay, tempfile::TempDir) {
    let relay = TestRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    init_profile(&relay, &dir.path().join("alice"), "alice").await;
    init_profile(&relay, &dir.path().join("bob"), "bob").await;
    // Built before anything is timed against it.
    tokio::task::spawn_blocking(|| bin("sotto")).await.unwrap();
    (relay, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_sends_through_the_running_chat_client() {
    let (relay, dir) = alice_and_bob().await;
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    let secret_bob = ConvKey::Secret("bob".into());

    let alice = Profile::open(&alice_dir, PASSPHRASE).unwrap();
    let (keys, mut seen, chat) = chat::start(alice, secret_bob.clone());
    wait_for(&mut seen, "online", |s| s.online).await;
    assert!(
        alice_dir.join("control.sock").exists(),
        "the chat client serves its profile"
    );

    // Four `sotto send`s, one after another, while alice types in the chat.
    let cli = tokio::task::spawn_blocking({
        let alice_dir = alice_dir.clone();
        move || {
            [
                (&["--secret", "bob", "cli secret 1"][..], ""),
                (
                    &["--secret", "--expire", "1h", "bob", "-"][..],
                    "cli secret 2\n",
                ),
                (&["bob", "cli normal"][..], ""),
                (&["--secret", "bob", "cli secret 3"][..], ""),
            ]
            .map(|(args, stdin)| sotto_send(&alice_dir, NOT_THE_PASSPHRASE, args, stdin))
        }
    });
    for i in 1..=3 {
        let text = format!("chat secret {i}");
        typed(&keys, &text);
        wait_for(&mut seen, "the typed message to be stored", |s| {
            s.shows(&secret_bob, &text, Delivery::Sent)
        })
        .await;
    }
    let outs = cli.await.unwrap();
    let printed: Vec<String> = outs.iter().map(stdout).collect();
    for out in &outs {
        assert!(out.status.success(), "sotto send failed: {}", stderr(out));
    }
    assert_eq!(
        printed,
        [
            "sent to bob (secret)\n",
            "sent to bob (secret)\n",
            "sent to bob\n",
            "sent to bob (secret)\n"
        ]
    );
    // The chat shows them as its own, stored by the relay.
    wait_for(&mut seen, "the forwarded messages in the chat", |s| {
        ["cli secret 1", "cli secret 2", "cli secret 3"]
            .iter()
            .all(|t| s.shows(&secret_bob, t, Delivery::Sent))
            && s.shows(&ConvKey::Direct("bob".into()), "cli normal", Delivery::Sent)
    })
    .await;
    quit(&keys);
    chat.await.unwrap().unwrap();
    assert!(
        !alice_dir.join("control.sock").exists(),
        "the socket goes with the chat client"
    );

    // What the relay delivers: six secret messages, no key used twice.
    let mut bob = Profile::open(&bob_dir, PASSPHRASE).unwrap();
    let (pairs, normal) = waiting_for_bob(&relay, &bob).await;
    assert_eq!(pairs.len(), 6);
    assert_no_pair_twice(&pairs);
    assert_eq!(normal, ["cli normal"]);

    // All readable, each sender's messages in the order they were sent.
    let arrived = bob_syncs(&mut bob).await;
    let secret: Vec<String> = arrived
        .iter()
        .filter(|e| e.mode == Mode::Secret && e.from == "alice")
        .map(|e| e.text.clone())
        .collect();
    assert_eq!(secret.len(), 6, "{secret:?}");
    assert!(
        in_order(
            &secret,
            &["chat secret 1", "chat secret 2", "chat secret 3"]
        ),
        "{secret:?}"
    );
    assert!(
        in_order(&secret, &["cli secret 1", "cli secret 2", "cli secret 3"]),
        "{secret:?}"
    );
    let timed = arrived.iter().find(|e| e.text == "cli secret 2").unwrap();
    assert_eq!(timed.expire_secs, Some(3600), "--expire went along");
    assert!(
        arrived
            .iter()
            .any(|e| e.mode == Mode::Normal && e.text == "cli normal")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cli_sends_started_together_do_not_fork_the_ratchet() {
    let (relay, dir) = alice_and_bob().await;
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    // A session with bob first: two processes holding copies of it would
    // both encrypt with its next message key.
    let first = sotto_send(&alice_dir, PASSPHRASE, &["--secret", "bob", "first"], "");
    assert!(first.status.success(), "{}", stderr(&first));

    let outs = tokio::task::spawn_blocking({
        let alice_dir = alice_dir.clone();
        move || {
            let one = spawn_send(
                &alice_dir,
                PASSPHRASE,
                &["--secret", "bob", "together 1"],
                "",
            );
            let two = spawn_send(
                &alice_dir,
                PASSPHRASE,
                &["--secret", "bob", "-"],
                "together 2\n",
            );
            [one, two].map(|c| c.wait_with_output().expect("wait for sotto send"))
        }
    })
    .await
    .unwrap();
    let mut sent = vec!["first"];
    for (out, text) in outs.iter().zip(["together 1", "together 2"]) {
        if out.status.success() {
            assert_eq!(stdout(out), "sent to bob (secret)\n");
            sent.push(text);
        } else {
            // The other one held the profile longer than this one waited.
            let why = stderr(out);
            assert!(
                why.contains("is in use by pid") && why.contains("Wait for it to finish"),
                "{why}"
            );
            assert_eq!(why.lines().count(), 1, "one line: {why}");
        }
    }
    assert!(sent.len() >= 2, "at least one of them got the profile");

    let mut bob = Profile::open(&bob_dir, PASSPHRASE).unwrap();
    let (pairs, _) = waiting_for_bob(&relay, &bob).await;
    assert_eq!(pairs.len(), sent.len());
    assert_no_pair_twice(&pairs);
    let arrived: Vec<String> = bob_syncs(&mut bob)
        .await
        .into_iter()
        .map(|e| e.text)
        .collect();
    let mut arrived_sorted = arrived.clone();
    arrived_sorted.sort();
    let mut sent_sorted: Vec<String> = sent.iter().map(|s| s.to_string()).collect();
    sent_sorted.sort();
    assert_eq!(
        arrived_sorted, sent_sorted,
        "every send that said so arrived"
    );
    assert_eq!(arrived[0], "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_commands_while_chat_runs_name_the_holder_and_say_what_to_do() {
    let (_relay, dir) = alice_and_bob().await;
    let alice_dir = dir.path().join("alice");
    let alice = Profile::open(&alice_dir, PASSPHRASE).unwrap();
    let (keys, mut seen, chat) = chat::start(alice, ConvKey::Direct("bob".into()));
    wait_for(&mut seen, "online", |s| s.online).await;

    let alice_path = alice_dir.clone();
    let out = tokio::task::spawn_blocking(move || sotto(&alice_path, &["sync"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    let why = stderr(&out);
    assert_eq!(why.lines().count(), 1, "one line: {why}");
    assert!(
        why.contains(&format!("is in use by pid {}", std::process::id())),
        "names the chat client: {why}"
    );
    assert!(
        why.contains("quit it") && why.contains("`sotto send` goes through it"),
        "says what to do: {why}"
    );
    quit(&keys);
    chat.await.unwrap().unwrap();
}
