//! The relay under abuse, through a real relay on 127.0.0.1: floods meet their
//! limits while honest clients, from another loopback address (127.0.0.2),
//! go on being served; what the relay holds stays bounded, read from its own
//! metrics; refusals say why; and the relay answers the same whether or not
//! an account exists.

use std::time::Duration;

use sotto_client::identity::Identity;
use sotto_client::relay::{ClientError, Recipient, RelayClient};
use sotto_proto::v1::ErrorCode;
use sotto_server::RelayConfig;
use sotto_tests::{RelayProcess, TestRelay, bin};

/// A client endpoint on `ip`: connections from another loopback address.
fn endpoint_on(ip: &str) -> quinn::Endpoint {
    quinn::Endpoint::client(format!("{ip}:0").parse().unwrap()).unwrap()
}

async fn connect_from(endpoint: &quinn::Endpoint, relay: &TestRelay) -> RelayClient {
    RelayClient::connect_on(endpoint, &relay.addr.to_string(), Some(relay.fingerprint))
        .await
        .expect("an honest client connects")
}

fn refusal(result: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The value of the metric line that starts with `series ` in `text`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// alice and bob, from 127.0.0.2: alice sends, bob fetches it.
async fn honest_exchange(relay: &TestRelay, endpoint: &quinn::Endpoint, text: &str) {
    let alice = connect_from(endpoint, relay).await;
    let bob = connect_from(endpoint, relay).await;
    let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
    let suffix = &hex::encode(rand_bytes())[..8];
    let (a, b) = (format!("alice{suffix}"), format!("bob{suffix}"));
    alice.register(&a, &alice_id).await.unwrap();
    bob.register(&b, &bob_id).await.unwrap();
    alice
        .send_normal(Recipient::User(&b), text, rand_bytes())
        .await
        .unwrap();
    let got = bob.fetch(10).await.unwrap();
    assert_eq!(got.normal[0].text, text);
}

fn rand_bytes() -> [u8; 16] {
    rand::random()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_address_meets_its_cap_while_others_are_served() {
    let relay = TestRelay::start().await;
    let cap = RelayConfig::default().limits.connections_per_address as usize;
    let flood = endpoint_on("127.0.0.1");
    let (addr, pin) = (relay.addr.to_string(), relay.fingerprint);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (flood, addr) = (flood.clone(), addr.clone());
            attempts.spawn(async move { RelayClient::connect_on(&flood, &addr, Some(pin)).await });
        }
        while let Some(attempt) = attempts.join_next().await {
            match attempt.unwrap() {
                Ok(conn) => held.push(conn),
                Err(_) => refused += 1,
            }
        }
    }
    assert_eq!(held.len(), cap, "one address holds its share and no more");
    assert_eq!(refused, 2_000 - cap);
    // Meanwhile another address is served as if nothing happened.
    honest_exchange(&relay, &endpoint_on("127.0.0.2"), "still here").await;
    let text = relay.running().state().metrics_text();
    // A refused peer may resend its first packet: the relay counts each.
    let counted = metric(
        &text,
        "sotto_connections_refused_total{reason=\"address_full\"}",
    );
    assert!(counted >= (2_000 - cap) as f64, "{counted}");
    assert!(metric(&text, "sotto_connections") >= cap as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_frames_before_login_are_closed_by_the_deadline_and_memory_stays_bounded() {
    let mut config = RelayConfig::default();
    config.limits.frame_read_secs = 1;
    let limits = config.limits.clone();
    let relay = TestRelay::start_with(config).await;
    let attacker = relay.connect().await;
    let conn = attacker.connection().clone();
    let state = relay.running().state().clone();

    // 64 streams, each declaring a frame just under the pre-login limit and
    // sending a few bytes of it, then nothing. Only `streams_before_login`
    // may be open at once: the next opens once the relay has closed one
    // (it stops the stream when the deadline passes; the attacker's side
    // then lets it go, as any QUIC stack does).
    let stalling = tokio::spawn(async move {
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let conn = conn.clone();
            let declared = limits.bytes_before_login - 1024;
            streams.spawn(async move {
                let (mut send, _recv) = conn.open_bi().await.unwrap();
                send.write_all(&declared.to_be_bytes()).await.unwrap();
                send.write_all(&[0u8; 100]).await.unwrap();
                // Nothing more is sent: only the relay's deadline ends this.
                send.stopped().await.is_ok()
            });
        }
        let mut closed_by_relay = 0;
        while let Some(closed) = streams.join_next().await {
            closed_by_relay += usize::from(closed.unwrap());
        }
        closed_by_relay
    });
    let bound_streams = i64::from(RelayConfig::default().limits.streams_before_login);
    let bound_bytes = bound_streams * i64::from(RelayConfig::default().limits.bytes_before_login);
    while !stalling.is_finished() {
        let text = state.metrics_text();
        assert!(metric(&text, "sotto_frames_reading") as i64 <= bound_streams);
        assert!(metric(&text, "sotto_frame_bytes_reading") as i64 <= bound_bytes);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stalling.await.unwrap(),
        64,
        "every stalled stream was closed in turn"
    );
    // The relay serves others meanwhile, and the last stalled frames are closed too.
    honest_exchange(&relay, &endpoint_on("127.0.0.2"), "served").await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while metric(&state.metrics_text(), "sotto_frames_reading") > 0.0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the last stalled frames are closed by their deadline");
    let text = state.metrics_text();
    assert!(metric(&text, "sotto_streams_closed_unfinished_total") >= 64.0);
    assert_eq!(metric(&text, "sotto_frame_bytes_reading"), 0.0);
}

#[tokio::test]
async fn a_frame_over_the_pre_login_limit_is_refused_before_login_only() {
    let relay = TestRelay::start().await;
    let stranger = relay.connect().await;
    // A frame declaring more than `bytes_before_login`, before any login:
    // refused from its length alone.
    let declared = RelayConfig::default().limits.bytes_before_login * 2;
    let (mut send, mut recv) = stranger.connection().open_bi().await.unwrap();
    send.write_all(&declared.to_be_bytes()).await.unwrap();
    send.finish().unwrap();
    let answer: sotto_proto::v1::Response = sotto_proto::frame::read_message(&mut recv, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    match answer.kind {
        Some(sotto_proto::v1::response::Kind::Error(e)) => {
            assert_eq!(e.code, ErrorCode::FrameTooLarge as i32, "{}", e.message)
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // After login a frame of that size is an ordinary message.
    let alice = relay.register("alice").await;
    relay.register("bob").await;
    let text = "y".repeat(sotto_proto::MAX_TEXT);
    assert!(text.len() >= RelayConfig::default().limits.bytes_before_login as usize);
    alice
        .client
        .send_normal(Recipient::User("bob"), &text, [2; 16])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_connection_nobody_logs_in_on_is_closed_and_one_logged_in_is_kept() {
    let mut config = RelayConfig::default();
    config.limits.login_deadline_secs = 1;
    let relay = TestRelay::start_with(config).await;
    let idle = relay.connect().await;
    let user = relay.register("alice").await;
    let closed = tokio::time::timeout(Duration::from_secs(20), idle.connection().closed())
        .await
        .expect("the relay closes a connection nobody logged in on");
    assert!(format!("{closed}").contains("log in sooner"), "{closed}");
    // alice logged in on hers: still served after the deadline.
    user.client.fetch(10).await.unwrap();
}

#[tokio::test]
async fn a_send_flood_meets_the_per_account_limit_and_says_so() {
    let mut config = RelayConfig::default();
    config.limits.sends_per_minute = 20;
    let relay = TestRelay::start_with(config).await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    let mut stored = 0;
    let mut limited = Vec::new();
    for n in 0..25u8 {
        match alice
            .client
            .send_normal(Recipient::User("bob"), "flood", [n; 16])
            .await
        {
            Ok(_) => stored += 1,
            Err(e) => limited.push(refusal(Err::<(), _>(e))),
        }
    }
    assert_eq!(stored, 20);
    assert_eq!(limited.len(), 5);
    for (code, message) in &limited {
        assert_eq!(*code, ErrorCode::RateLimited);
        assert!(
            message.contains("at most 20 messages a minute"),
            "{message}"
        );
    }
    // The limit is alice's: bob sends as before.
    bob.client
        .send_normal(Recipient::User("alice"), "fine", [99; 16])
        .await
        .unwrap();
    let text = relay.running().state().metrics_text();
    assert_eq!(
        metric(&text, "sotto_refusals_total{kind=\"send_rate\"}"),
        5.0
    );
    assert_eq!(
        metric(&text, "sotto_messages_stored_total{mode=\"normal\"}"),
        21.0
    );
}

#[tokio::test]
async fn one_account_cannot_hold_more_subscribed_connections_than_its_devices_need() {
    let mut config = RelayConfig::default();
    config.limits.subscriptions_per_account = 3;
    let relay = TestRelay::start_with(config).await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    let mut connections = Vec::new();
    let mut pushes = Vec::new();
    for _ in 0..3 {
        let client = relay.login(&alice).await;
        pushes.push(client.subscribe().await.expect("within the limit"));
        connections.push(client);
    }
    let fourth = relay.login(&alice).await;
    let (code, message) = refusal(fourth.subscribe().await.map(|_| ()));
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(
        message.contains("3 connections receiving messages"),
        "{message}"
    );
    // The fourth connection still sends and fetches; bob is not limited by alice.
    fourth
        .send_normal(Recipient::User("bob"), "still here", [1; 16])
        .await
        .unwrap();
    let _bob_pushes = relay.login(&bob).await.subscribe().await.unwrap();
    // One device goes away: its place is free again.
    drop(pushes.pop());
    connections.pop().unwrap().close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = relay.login(&alice).await;
        match again.subscribe().await {
            Ok(_) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("the freed place was not given back: {e}"),
        }
    }
    let text = relay.running().state().metrics_text();
    assert!(metric(&text, "sotto_refusals_total{kind=\"subscriptions\"}") >= 1.0);
}

#[tokio::test]
async fn a_full_secret_queue_is_refused_to_the_sender_with_a_clear_error() {
    let mut config = RelayConfig::default();
    config.limits.secret_queue_envelopes = 3;
    let relay = TestRelay::start_with(config).await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    for n in 0..3u8 {
        alice
            .client
            .send_secret("bob", vec![n; 64], [n; 16])
            .await
            .unwrap();
    }
    let (code, message) = refusal(alice.client.send_secret("bob", vec![3; 64], [3; 16]).await);
    assert_eq!(code, ErrorCode::RecipientQueueFull);
    assert!(
        message.contains("bob has too many secret messages waiting"),
        "{message}"
    );
    let state = relay.running().state();
    assert_eq!(
        state.secret_envelopes_waiting().unwrap(),
        3,
        "nothing was queued"
    );
    // Once bob fetched them, there is room again.
    let batch = bob.client.fetch(10).await.unwrap();
    let ids = batch.secret.iter().map(|e| e.id).collect();
    bob.client.ack(0, ids).await.unwrap();
    alice
        .client
        .send_secret("bob", vec![3; 64], [3; 16])
        .await
        .unwrap();
    let text = state.metrics_text();
    assert_eq!(
        metric(&text, "sotto_refusals_total{kind=\"secret_queue_quota\"}"),
        1.0
    );
    assert_eq!(metric(&text, "sotto_secret_queue_envelopes"), 1.0);
    assert_eq!(metric(&text, "sotto_secret_queue_bytes"), 64.0);
}

#[tokio::test]
async fn new_accounts_are_limited_per_address_and_other_addresses_register() {
    let mut config = RelayConfig::default();
    config.limits.registrations_per_address_per_hour = 3;
    let relay = TestRelay::start_with(config).await;
    for n in 0..3 {
        relay.register(&format!("user{n}")).await;
    }
    let late = relay.connect().await;
    let (code, message) = refusal(late.register("user3", &Identity::generate()).await);
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(message.contains("from this address"), "{message}");
    let elsewhere = connect_from(&endpoint_on("127.0.0.2"), &relay).await;
    elsewhere
        .register("user3", &Identity::generate())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_relay_answers_alike_whether_or_not_an_account_exists() {
    let mut config = RelayConfig::default();
    config.limits.lookups_per_account_per_day = 4;
    let relay = TestRelay::start_with(config).await;
    relay.register("bob").await;
    let wrong_key = Identity::generate();
    let known = refusal(relay.connect().await.login("bob", &wrong_key).await);
    let unknown = refusal(relay.connect().await.login("nobody", &wrong_key).await);
    assert_eq!(known, unknown, "a login attempt does not tell who exists");
    assert_eq!(known.0, ErrorCode::BadSignature);

    // Lookups, of names that exist or not, come out of one daily budget.
    let alice = relay.register("alice").await;
    alice.client.fetch_identity("bob").await.unwrap();
    let (code, _) = refusal(alice.client.fetch_identity("nobody").await);
    assert_eq!(code, ErrorCode::UnknownUser);
    alice.client.fetch_identity("bob").await.unwrap();
    refusal(alice.client.fetch_bundle("nobody").await);
    for name in ["bob", "nobody"] {
        let (code, message) = refusal(alice.client.fetch_identity(name).await);
        assert_eq!(code, ErrorCode::RateLimited, "{name}");
        assert!(message.contains("too many users today"), "{message}");
    }
}

#[test]
fn a_relay_restarts_on_its_address_right_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut first = RelayProcess::start(&data, &[]);
    let addr = first.addr.clone();
    // SIGTERM, and at once a new relay on the same address and directory: it
    // says it waits for the first, and serves as soon as the first let go.
    let _ = std::process::Command::new("kill")
        .arg(first.child.id().to_string())
        .status();
    let mut second = RelayProcess::start_on(&data, &addr, &[]);
    assert_eq!(second.addr, addr);
    let status = first.child.wait().unwrap();
    assert!(
        status.success(),
        "the first relay stopped cleanly: {status}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pin = sotto_client::pinning::Fingerprint::parse(&second.fingerprint).unwrap();
        let client = RelayClient::connect(&addr, Some(pin)).await.unwrap();
        client
            .register("alice", &Identity::generate())
            .await
            .unwrap();
    });
    second.terminate();
}

#[test]
fn logs_are_json_lines_for_a_log_shipper_and_never_coloured_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProcess::start(&dir.path().join("relay"), &[("SOTTO_LOG_FORMAT", "json")]);
    let log = relay.terminate();
    assert!(!log.contains('\u{1b}'), "no escape sequence in {log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "relay listening"),
        "{log}"
    );
    assert!(lines.iter().all(|l| l["level"].is_string()));
}

#[tokio::test]
async fn metrics_are_served_on_loopback_and_name_nobody() {
    let config = RelayConfig {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..RelayConfig::default()
    };
    let relay = TestRelay::start_with(config).await;
    let alice = relay.register("alice").await;
    relay.register("bob").await;
    alice
        .client
        .send_normal(Recipient::User("bob"), "counted", [1; 16])
        .await
        .unwrap();
    let addr = relay.running().metrics_addr.expect("metrics are served");
    let text = scrape(addr, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/plain; version=0.0.4"));
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        metric(body, "sotto_messages_stored_total{mode=\"normal\"}"),
        1.0
    );
    assert_eq!(
        metric(body, "sotto_logins_total{result=\"registered\"}"),
        2.0
    );
    assert!(metric(body, "sotto_flush_seconds_count") >= 1.0);
    for name in ["alice", "bob", "counted", "127.0.0.1"] {
        assert!(!body.contains(name), "{name} in the metrics");
    }
    assert!(scrape(addr, "/").await.starts_with("HTTP/1.1 404"));
}

async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn unregistered_party_flooding_audit_proofs_meets_a_limit_and_investigators_are_served() {
    use sotto_investigator::{InvestigatorError, RelayConnection, requests::audit_proof};
    let relay = TestRelay::start().await;
    let flooder = RelayConnection::connect(&relay.addr.to_string(), relay.fingerprint)
        .await
        .unwrap();
    let mut served = 0;
    let refused = loop {
        match audit_proof(&flooder, 0, 0).await {
            Ok(_) => served += 1,
            Err(e) => break e,
        }
        assert!(served <= 1_000, "a flood of proofs is never limited");
    };
    assert!(
        matches!(
            &refused,
            InvestigatorError::Failed {
                code: ErrorCode::RateLimited,
                ..
            }
        ),
        "{refused:?}"
    );
    // (The bucket refills as the flood runs: a few more than a minute's.)
    assert!(
        (120..130).contains(&served),
        "{served}: one connection's proofs a minute"
    );
    let text = relay.running().state().metrics_text();
    assert_eq!(
        metric(&text, "sotto_refusals_total{kind=\"audit_proofs\"}"),
        1.0
    );
    // Another connection (an investigator checking receipts) is served.
    let honest = RelayConnection::connect(&relay.addr.to_string(), relay.fingerprint)
        .await
        .unwrap();
    assert!(audit_proof(&honest, 0, 0).await.is_ok());
    // And many connections from one address share its own limit.
    let mut served = 0;
    for _ in 0..5 {
        let conn = RelayConnection::connect(&relay.addr.to_string(), relay.fingerprint)
            .await
            .unwrap();
        while audit_proof(&conn, 0, 0).await.is_ok() {
            served += 1;
        }
    }
    assert!(
        served < 5 * 120,
        "{served}: the address's limit never cut a connection short"
    );
}

#[test]
fn a_second_relay_on_a_data_directory_in_use_says_so_before_it_waits() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut first = RelayProcess::start(&data, &[]);
    let mut second = std::process::Command::new(bin("sotto-relay"))
        .arg("--data")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(second.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // Said while it still waits for the first relay, not after.
    let waiting = second.try_wait().unwrap().is_none();
    let _ = second.kill();
    let _ = second.wait();
    first.terminate();
    assert!(
        line.contains("in use by another process") && line.contains("waiting up to"),
        "{line}"
    );
    assert!(
        waiting,
        "the second relay said it only once it had given up"
    );
}

#[test]
fn an_authority_is_removed_by_the_name_it_was_added_with() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let relay = |args: &[&str]| {
        let out = std::process::Command::new(bin("sotto-relay"))
            .arg("--data")
            .arg(&data)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    relay(&["init"]);
    for (n, name) in [(7u8, "Chief Inspector"), (8, "Court of Appeal")] {
        let key = ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key();
        relay(&[
            "authority",
            "add",
            "--name",
            name,
            "--public-key",
            &hex::encode(key.as_bytes()),
        ]);
    }
    relay(&["authority", "remove", "--name", "Chief Inspector"]);
    let listed = relay(&["authority", "list"]);
    assert!(
        !listed.contains("Chief Inspector") && listed.contains("Court of Appeal"),
        "{listed}"
    );
    // As a plain argument too.
    relay(&["authority", "remove", "Court of Appeal"]);
    assert!(relay(&["authority", "list"]).contains("no authorities registered"));
}
