//! Two relay nodes on one real 3-node NATS JetStream cluster (`nats-server`
//! from the distribution): the second joined the first with `init --join`'s
//! `datadir::join`, and both serve the same users. Alice is connected to
//! node A, bob to node B; they chat, normal and secret (a real PQXDH
//! session), live and offline, and what one node stored the other hands
//! out.

use std::path::Path;
use std::time::Duration;

use prost::Message;
use sotto_client::e2e::{LocalPrekeys, Session, verify_bundle};
use sotto_client::identity::Identity;
use sotto_client::pinning::Fingerprint;
use sotto_client::relay::{Recipient, RelayClient};
use sotto_proto::v1::{push, secret_payload};
use sotto_server::config::StoreKind;
use sotto_server::{RelayConfig, RunningRelay};
use sotto_tests::nats::{NatsCluster, RELAY_PASSWORD, WARRANT_PASSWORD};

fn node_config(nats: &NatsCluster, warrant_desk: bool) -> RelayConfig {
    RelayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreKind::Nats,
        nats_urls: nats.urls(),
        nats_replicas: 3,
        nats_warrant_desk: warrant_desk,
        ..RelayConfig::default()
    }
}

/// A relay node serving from `data`, not the cluster's warrant desk.
async fn node(nats: &NatsCluster, data: &Path) -> RunningRelay {
    node_with(nats, data, false).await
}

/// A relay node serving from `data`; the warrant desk if `warrant_desk`.
async fn node_with(nats: &NatsCluster, data: &Path, warrant_desk: bool) -> RunningRelay {
    sotto_server::start(data, node_config(nats, warrant_desk))
        .await
        .expect("the relay node starts on the cluster")
}

/// Node A's data directory with the NATS passwords it is given.
fn first_node_dir(root: &Path) -> std::path::PathBuf {
    let data = root.join("a");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("nats.password"), RELAY_PASSWORD).unwrap();
    std::fs::write(data.join("nats-warrant.password"), WARRANT_PASSWORD).unwrap();
    data
}

/// Node A, and node B joined to it, in `root`; neither is the warrant desk.
async fn two_nodes(nats: &NatsCluster, root: &Path) -> (RunningRelay, RunningRelay) {
    let a_dir = first_node_dir(root);
    let a = node(nats, &a_dir).await;
    let b_dir = root.join("b");
    sotto_server::datadir::join(&b_dir, &a_dir).unwrap();
    (a, node(nats, &b_dir).await)
}

async fn connect(node: &RunningRelay) -> RelayClient {
    let pin = Fingerprint::parse(&node.fingerprint).unwrap();
    RelayClient::connect(&node.addr.to_string(), Some(pin))
        .await
        .expect("connects to the node")
}

async fn next_push(pushes: &mut sotto_client::relay::Pushes) -> sotto_proto::v1::Push {
    tokio::time::timeout(Duration::from_secs(10), pushes.next())
        .await
        .expect("a push arrives")
        .unwrap()
        .expect("the push stream is open")
}

fn id(n: u8) -> [u8; 16] {
    [n; 16]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_on_node_a_and_bob_on_node_b_chat_normal_and_secret_live_and_offline() {
    let _heavy = sotto_tests::one_at_a_time().await;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let a_dir = first_node_dir(root.path());
    let a = node(&nats, &a_dir).await;
    // Node B joins while A serves.
    let b_dir = root.path().join("b");
    let notes = sotto_server::datadir::join(&b_dir, &a_dir).expect("B joins A's cluster");
    assert!(notes.is_empty(), "{notes:?}");
    let b = node(&nats, &b_dir).await;
    assert_eq!(
        a.fingerprint, b.fingerprint,
        "one certificate for the cluster"
    );
    assert_eq!(a.disclosure_key, b.disclosure_key, "one disclosure key");

    let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
    let alice = connect(&a).await;
    alice.register("alice", &alice_id).await.unwrap();
    let bob = connect(&b).await;
    bob.register("bob", &bob_id).await.unwrap();
    // One set of accounts: bob's name is taken at A too.
    let mallory = connect(&a).await;
    assert!(
        mallory
            .register("bob", &Identity::generate())
            .await
            .is_err()
    );

    // Live: bob listens at B, alice sends at A.
    let mut pushes = bob.subscribe().await.unwrap();
    let stored = alice
        .send_normal(Recipient::User("bob"), "hello bob, from A", id(1))
        .await
        .unwrap();
    let push::Kind::Normal(live) = next_push(&mut pushes).await.kind.unwrap() else {
        panic!("expected a normal message");
    };
    assert_eq!(
        (live.from.as_str(), live.text.as_str(), live.id),
        ("alice", "hello bob, from A", stored.id)
    );

    // Offline: bob gone, alice writes again; bob fetches at A this time.
    drop(pushes);
    drop(bob);
    alice
        .send_normal(Recipient::User("bob"), "while you were away", id(2))
        .await
        .unwrap();
    let bob_at_a = connect(&a).await;
    bob_at_a.login("bob", &bob_id).await.unwrap();
    let batch = bob_at_a.fetch(100).await.unwrap();
    let texts: Vec<&str> = batch.normal.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello bob, from A", "while you were away"]);
    bob_at_a
        .ack(batch.normal.last().unwrap().seq, vec![])
        .await
        .unwrap();
    let bob = connect(&b).await;
    bob.login("bob", &bob_id).await.unwrap();
    assert!(
        bob.fetch(100).await.unwrap().normal.is_empty(),
        "acknowledged at A, gone at B"
    );
    // A retry of alice's first send, at B: stored once.
    let alice_at_b = connect(&b).await;
    alice_at_b.login("alice", &alice_id).await.unwrap();
    let again = alice_at_b
        .send_normal(Recipient::User("bob"), "hello bob, from A", id(1))
        .await
        .unwrap();
    assert!(again.duplicate && again.id == stored.id);
    // Acknowledged at A, answered at B: delivered.
    let report = alice_at_b.delivery_status(vec![stored.id]).await.unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(
        (report[0].peer.as_str(), report[0].upto),
        ("bob", stored.id)
    );

    // Secret: bob publishes prekeys at B; alice takes his bundle at A and
    // starts a PQXDH session; bob, listening at B, gets it live.
    let mut prekeys = LocalPrekeys::default();
    prekeys.rotate_signed(&bob_id, sotto_server::now_ms());
    let otk = prekeys.generate_one_time(3);
    let pq_otk = prekeys.generate_pq_one_time(&bob_id, 3);
    bob.upload_prekeys(prekeys.upload(&bob_id, otk, pq_otk).unwrap())
        .await
        .unwrap();
    let mut pushes = bob.subscribe().await.unwrap();
    let fetched = alice.fetch_bundle("bob").await.unwrap();
    assert!(fetched.one_time.is_some());
    // One of bob's one-time prekeys a day for alice, at all nodes together
    // (not one per node she asks).
    let again = alice_at_b.fetch_bundle("bob").await.unwrap();
    assert!(
        again.one_time.is_none(),
        "a second one-time prekey at node B"
    );
    let bundle = verify_bundle(&fetched).unwrap();
    let mut session = Session::initiate(&alice_id, &bundle).unwrap();
    let first = session.encrypt(b"a secret, from A").unwrap();
    alice
        .send_secret("bob", first.encode_to_vec(), id(3))
        .await
        .unwrap();
    // (Bob also hears, from A, that few of his one-time prekeys are left.)
    let envelope = loop {
        match next_push(&mut pushes).await.kind.unwrap() {
            push::Kind::Secret(envelope) => break envelope,
            push::Kind::PrekeysLow(low) => assert_eq!(low.remaining, 2),
            other => panic!("expected a secret envelope, got {other:?}"),
        }
    };
    let payload = sotto_proto::v1::SecretPayload::decode(envelope.ciphertext.as_ref()).unwrap();
    let Some(secret_payload::Kind::Prekey(first)) = payload.kind else {
        panic!("the first message carries the PQXDH header");
    };
    let (mut bobs, plain) = Session::respond(&bob_id, &mut prekeys, &first).unwrap();
    assert_eq!(plain.as_slice(), b"a secret, from A");
    bob.ack(0, vec![envelope.id]).await.unwrap();
    // Offline, the other way: bob replies at B while alice is away; she
    // fetches at B, and once she acknowledged it, nothing of it is left.
    drop(alice);
    let reply = bobs.encrypt(b"a secret reply, from B").unwrap();
    bob.send_secret("alice", reply.encode_to_vec(), id(4))
        .await
        .unwrap();
    let batch = alice_at_b.fetch(100).await.unwrap();
    assert_eq!(batch.secret.len(), 1);
    let payload =
        sotto_proto::v1::SecretPayload::decode(batch.secret[0].ciphertext.as_ref()).unwrap();
    let Some(secret_payload::Kind::Message(m)) = payload.kind else {
        panic!("a reply is a ratchet message");
    };
    assert_eq!(
        session.decrypt(&m).unwrap().as_slice(),
        b"a secret reply, from B"
    );
    alice_at_b.ack(0, vec![batch.secret[0].id]).await.unwrap();
    let alice = connect(&a).await;
    alice.login("alice", &alice_id).await.unwrap();
    assert!(alice.fetch(100).await.unwrap().secret.is_empty());
    assert_eq!(
        b.state().secret_envelopes_waiting().unwrap(),
        0,
        "the secret queue keeps nothing delivered"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The name of the server that leads stream `name` (asked of every node).
fn stream_leader(nats: &NatsCluster, name: &str) -> Option<String> {
    (0..nats.nodes.len()).find_map(|n| {
        let jsz = nats.monitor(n, "/jsz?accounts=true&streams=true")?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == name)
            .and_then(|s| s["cluster"]["leader"].as_str().map(str::to_owned))
            .filter(|l| !l.is_empty())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_streams_leader_dies_mid_stream_and_no_acknowledged_message_is_lost_or_doubled()
{
    let _heavy = sotto_tests::one_at_a_time().await;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let a = node(&nats, &first_node_dir(root.path())).await;
    let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
    let alice = connect(&a).await;
    alice.register("alice", &alice_id).await.unwrap();
    connect(&a).await.register("bob", &bob_id).await.unwrap();

    let mut nats = nats;
    let mut stored = Vec::new();
    let mut refused = 0;
    for n in 0..40u8 {
        if n == 15 {
            let leader = stream_leader(&nats, "HIST").expect("HIST has a leader");
            let node = nats.nodes.iter_mut().find(|x| x.name == leader).unwrap();
            node.kill();
        }
        // A client retries a send that got no answer, with the same id.
        let text = format!("message {n}");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match alice
                .send_normal(Recipient::User("bob"), &text, id(n + 1))
                .await
            {
                Ok(answer) => {
                    stored.push((text.clone(), answer.id));
                    break;
                }
                Err(e) => {
                    refused += 1;
                    assert!(std::time::Instant::now() < deadline, "never stored: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    // Streams other than HIST the dead server led (the accounts) may still
    // be electing: a client retries a login refused meanwhile.
    let bob = connect(&a).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Err(e) = bob.login("bob", &bob_id).await {
        assert!(std::time::Instant::now() < deadline, "never logged in: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        refused > 0,
        "no send met the election: the test proved nothing"
    );
    // Reads too may meet a stream electing its leader: the client asks again.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    loop {
        let batch = match bob.fetch(100).await {
            Ok(batch) => batch,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no fetch: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(last) = batch.normal.last().map(|m| m.seq) else {
            break;
        };
        while let Err(e) = bob.ack(last, vec![]).await {
            assert!(
                std::time::Instant::now() < deadline,
                "no acknowledgement: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        got.extend(batch.normal.into_iter().map(|m| (m.text, m.id)));
    }
    assert_eq!(
        got, stored,
        "bob's inbox holds each acknowledged message once, in order ({refused} sends were retried)"
    );
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_its_users_go_on_at_another_with_their_history() {
    let _heavy = sotto_tests::one_at_a_time().await;
    use sotto_tests::RelayProcess;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let a_dir = first_node_dir(root.path());
    let urls: Vec<String> = nats.urls().iter().map(|u| format!("{u:?}")).collect();
    std::fs::write(
        a_dir.join("relay.toml"),
        format!("store = \"nats\"\nnats_urls = [{}]\n", urls.join(", ")),
    )
    .unwrap();
    let mut a = RelayProcess::start(&a_dir, &[]);
    // Node B joins the serving A, with the operator's command.
    let b_dir = root.path().join("b");
    let joined = std::process::Command::new(sotto_tests::bin("sotto-relay"))
        .arg("--data")
        .arg(&b_dir)
        .arg("init")
        .arg("--join")
        .arg(&a_dir)
        .output()
        .unwrap();
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    #[cfg(unix)]
    for file in [
        "master.key",
        "nats.password",
        "nats-warrant.password",
        "cluster.keys",
        "tls/key.der",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(b_dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
    }
    let b = RelayProcess::start(&b_dir, &[]);
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.disclosure_key, b.disclosure_key);
    assert_eq!(a.audit_key, b.audit_key);
    let pin = Fingerprint::parse(&a.fingerprint).unwrap();
    let at = |relay: &RelayProcess| {
        let addr = relay.addr.clone();
        async move { RelayClient::connect(&addr, Some(pin)).await.unwrap() }
    };
    let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
    at(&a).await.register("alice", &alice_id).await.unwrap();
    let bob = at(&a).await;
    bob.register("bob", &bob_id).await.unwrap();
    for n in 0..3u8 {
        bob.send_normal(Recipient::User("alice"), &format!("note {n}"), id(n + 1))
            .await
            .unwrap();
    }
    a.kill_9();
    // Alice, who was away, comes back at B: everything sent at A is there.
    let alice = at(&b).await;
    alice.login("alice", &alice_id).await.unwrap();
    let mut pushes = alice.subscribe().await.unwrap();
    let texts: Vec<String> = alice
        .fetch(100)
        .await
        .unwrap()
        .normal
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["note 0", "note 1", "note 2"]);
    let bob = at(&b).await;
    bob.login("bob", &bob_id).await.unwrap();
    bob.send_normal(Recipient::User("alice"), "still here", id(9))
        .await
        .unwrap();
    let push::Kind::Normal(live) = next_push(&mut pushes).await.kind.unwrap() else {
        panic!("expected a normal message");
    };
    assert_eq!(live.text, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_group_message_sent_at_one_node_reaches_members_at_both() {
    let _heavy = sotto_tests::one_at_a_time().await;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(&nats, root.path()).await;
    let (alice, bob, carol) = (connect(&a).await, connect(&b).await, connect(&a).await);
    let alice_id = Identity::generate();
    alice.register("alice", &alice_id).await.unwrap();
    bob.register("bob", &Identity::generate()).await.unwrap();
    carol
        .register("carol", &Identity::generate())
        .await
        .unwrap();
    let mut pushes = bob.subscribe().await.unwrap();
    let members = ["bob".to_owned(), "carol".to_owned()];
    const CIPHERTEXT: &[u8] = b"one group ciphertext";
    let queued = alice
        .send_secret_group(b"group-1", &members, CIPHERTEXT.to_vec(), id(1))
        .await
        .unwrap();
    assert_eq!((queued.recipients, queued.duplicate), (2, false));
    // Bob, listening at B, hears it live; carol fetches it at A.
    let push::Kind::Secret(live) = next_push(&mut pushes).await.kind.unwrap() else {
        panic!("expected a secret envelope");
    };
    assert_eq!(
        (
            live.ciphertext.as_ref(),
            live.group.as_ref(),
            live.from.as_str()
        ),
        (CIPHERTEXT, &b"group-1"[..], "alice")
    );
    let carols = carol.fetch(10).await.unwrap().secret;
    assert_eq!(carols.len(), 1);
    assert_eq!(carols[0].ciphertext.as_ref(), CIPHERTEXT);
    // A retry at the other node is one: nobody gets it twice.
    let alice_at_b = connect(&b).await;
    alice_at_b.login("alice", &alice_id).await.unwrap();
    let again = alice_at_b
        .send_secret_group(b"group-1", &members, CIPHERTEXT.to_vec(), id(1))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(carol.fetch(10).await.unwrap().secret.len(), 1);
    // Each acknowledgement takes that member's copy; then nothing is left.
    carol.ack(0, vec![carols[0].id]).await.unwrap();
    assert_eq!(b.state().secret_envelopes_waiting().unwrap(), 1);
    bob.ack(0, vec![live.id]).await.unwrap();
    assert_eq!(b.state().secret_envelopes_waiting().unwrap(), 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Approves the held warrant `id` of "chief" as the desk's operator does
/// (its admin socket in `desk`); panics if the desk refuses.
async fn approve_at(desk: &Path, id: &str) {
    use sotto_server::admin::{AdminAnswer, AdminRequest};
    let (desk, id) = (desk.to_path_buf(), id.to_owned());
    let approved = tokio::task::spawn_blocking(move || {
        sotto_server::admin::ask(
            &desk,
            &AdminRequest::Approve {
                id,
                authority: Some("chief".into()),
                by: "operator".into(),
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!matches!(approved, AdminAnswer::Refused(_)), "{approved:?}");
}

/// The authority "chief", with keys in `root`, registered at the desk whose data is `desk`.
/// How a warrant desk test starts: a cluster, node A's data directory as
/// the desk, running, and the chief registered at it.
async fn desk_setup() -> (
    NatsCluster,
    tempfile::TempDir,
    std::path::PathBuf,
    RunningRelay,
    sotto_investigator::InvestigatorKeys,
) {
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let dir = first_node_dir(root.path());
    // Boxed: a relay's start is a large future, too large for a debug
    // build's test stack once nested in the test's own.
    let desk = Box::pin(node_with(&nats, &dir, true)).await;
    let chief = chief_registered_at(root.path(), &dir);
    (nats, root, dir, desk, chief)
}

fn chief_registered_at(root: &Path, desk: &Path) -> sotto_investigator::InvestigatorKeys {
    let chief =
        sotto_investigator::InvestigatorKeys::generate(&root.join("chief"), "chief").unwrap();
    let authorities = desk.join("authorities.toml");
    let mut registry = sotto_server::warrant::authorities::load(&authorities).unwrap();
    registry.add("chief", &chief.public_key_hex()).unwrap();
    sotto_server::warrant::authorities::save(&authorities, &registry).unwrap();
    chief
}

/// A warrant for `alice`, from now an hour back to a minute ahead, told a
/// day after its window; bound to the cluster's disclosure key.
fn warrant_for_alice(
    chief: &sotto_investigator::InvestigatorKeys,
    disclosure_key: &str,
    now: i64,
) -> sotto_proto::v1::SignedWarrant {
    chief.sign_warrant(&sotto_proto::v1::Warrant {
        id: "W-CLUSTER".into(),
        case_reference: "CASE-C".into(),
        authority: chief.name.clone(),
        legal_basis: "court order C/2026".into(),
        approver: "judge".into(),
        targets: vec!["alice".into()],
        window_from: now - 3_600,
        window_until: now + 60,
        not_before: now - 60,
        expires: now + 3_600,
        delivery_key: chief.delivery_public().to_vec().into(),
        relay_key: hex::decode(disclosure_key).unwrap().into(),
        notify_after: now + 60 + 86_400,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warrant_served_at_the_desk_discloses_what_went_through_another_node_and_nothing_secret()
{
    let _heavy = sotto_tests::one_at_a_time().await;
    use sotto_investigator::relay::RelayConnection;
    use sotto_investigator::{Answered, requests};
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let a_dir = first_node_dir(root.path());
    let a = node(&nats, &a_dir).await;
    // Serving no warrant is how a node is meant to be: no warning.
    assert!(
        !a.warnings
            .iter()
            .any(|w| w.contains("warrant") || w.contains("transparency")),
        "{:?}",
        a.warnings
    );
    let b_dir = root.path().join("b");
    sotto_server::datadir::join(&b_dir, &a_dir).unwrap();
    let b = node_with(&nats, &b_dir, true).await;
    assert!(
        !b.warnings
            .iter()
            .any(|w| w.contains("warrant") || w.contains("transparency")),
        "{:?}",
        b.warnings
    );
    let chief = chief_registered_at(root.path(), &b_dir);

    // Alice and bob chat at node A, a minute ago (a cluster's desk
    // discloses what every node has surely stored: records some seconds
    // old): normal, and secret.
    a.clock().set(sotto_server::now_ms() - 60_000);
    let (alice_id, bob_id) = (Identity::generate(), Identity::generate());
    let alice = connect(&a).await;
    alice.register("alice", &alice_id).await.unwrap();
    let bob = connect(&a).await;
    bob.register("bob", &bob_id).await.unwrap();
    alice
        .send_normal(Recipient::User("bob"), "for the record, from A", id(1))
        .await
        .unwrap();
    const SECRET_MARKER: &[u8] = b"SECRET-CIPHERTEXT-FROM-A";
    alice
        .send_secret("bob", SECRET_MARKER.to_vec(), id(2))
        .await
        .unwrap();

    let now = sotto_server::now_ms() / 1000;
    let signed = warrant_for_alice(&chief, &a.disclosure_key, now);
    let pin = Fingerprint::parse(&a.fingerprint).unwrap();
    // Node A is not the desk: it says where warrants are served, and logs nothing.
    let at_a = RelayConnection::connect(&a.addr.to_string(), pin)
        .await
        .unwrap();
    const NOT_HERE: &str = "is not its cluster's warrant desk";
    let refused = requests::submit_warrant(&at_a, signed.clone())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains(NOT_HERE), "{refused}");
    let proof = requests::audit_proof(&at_a, 0, 1).await.unwrap_err();
    assert!(proof.to_string().contains(NOT_HERE), "{proof}");
    let unmask = requests::unmask(&at_a, Default::default())
        .await
        .unwrap_err();
    assert!(unmask.to_string().contains(NOT_HERE), "{unmask}");
    assert!(!a_dir.join("audit.log").exists());

    // Node B is: held for review, approved by B's operator, collected.
    let at_b = RelayConnection::connect(&b.addr.to_string(), pin)
        .await
        .unwrap();
    let submitted = requests::submit_warrant(&at_b, signed.clone()).await;
    assert!(
        matches!(submitted, Ok(Answered::PendingReview(_))),
        "{submitted:?}"
    );
    approve_at(&b_dir, "W-CLUSTER").await;
    let Ok(Answered::Disclosure(bundle)) = requests::collect_warrant(&at_b, signed.clone()).await
    else {
        panic!("the desk discloses");
    };
    let disclosure = chief.open_disclosure(&bundle, None).unwrap().disclosure;
    let texts: Vec<&str> = disclosure.records.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(texts, ["for the record, from A"], "what went through A");
    assert_eq!(disclosure.records[0].from, "alice");
    assert!(
        !disclosure.records[0]
            .participants
            .iter()
            .any(|p| p == "bob"),
        "bob is a pseudonym: {:?}",
        disclosure.records[0].participants
    );
    // Nothing secret: the envelope is in no byte of what was sent.
    let sent = bundle.encode_to_vec();
    assert!(
        !sent
            .windows(SECRET_MARKER.len())
            .any(|w| w == SECRET_MARKER)
    );
    let opened = disclosure.encode_to_vec();
    assert!(
        !opened
            .windows(SECRET_MARKER.len())
            .any(|w| w == SECRET_MARKER)
    );
    // A replay at the same desk is one.
    assert!(
        requests::submit_warrant(&at_b, signed.clone())
            .await
            .is_err()
    );
    let logged = sotto_server::warrant::audit::entries(&b_dir.join("audit.log")).unwrap();
    assert!(
        logged
            .iter()
            .any(|e| e.kind == "collect" && e.decision == "granted" && e.records == 1),
        "{logged:?}"
    );
    assert!(
        logged
            .iter()
            .any(|e| e.reason == "replayed" && e.decision == "refused"),
        "{logged:?}"
    );

    // The desk restarts on its own data directory (its log and records are
    // its own): the warrant served is still known.
    at_b.close().await;
    b.shutdown().await.unwrap();
    let b = node_with(&nats, &b_dir, true).await;
    let at_b = RelayConnection::connect(&b.addr.to_string(), pin)
        .await
        .unwrap();
    let replayed = requests::submit_warrant(&at_b, signed.clone())
        .await
        .unwrap_err();
    assert!(replayed.to_string().contains("replayed"), "{replayed}");
    at_b.close().await;
    assert!(
        !b.warnings
            .iter()
            .any(|w| w.contains("warrant") || w.contains("transparency")),
        "{:?}",
        b.warnings
    );
    // A second desk is refused: one log, one head, one place a replay is known.
    let c_dir = root.path().join("c");
    sotto_server::datadir::join(&c_dir, &a_dir).unwrap();
    let second = sotto_server::start(&c_dir, node_config(&nats, true))
        .await
        .err()
        .expect("a second desk is refused");
    assert!(
        format!("{second:#}").contains("is this cluster's warrant desk"),
        "{second:#}"
    );

    // The notice falls due at the desk, which issues it by itself (nobody
    // fetches there); alice is told at node A, where she fetches, and once
    // she acknowledged it, at no node again.
    b.clock().set((now + 60 + 86_400 + 1) * 1000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let told = loop {
        let notices = alice.fetch(100).await.unwrap().notices;
        if !notices.is_empty() || tokio::time::Instant::now() > deadline {
            break notices;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (told[0].warrant_id.as_str(), told[0].records, told[0].target),
        ("W-CLUSTER", 1, true)
    );
    // Bob was never named to the investigator: not told.
    assert!(bob.fetch(100).await.unwrap().notices.is_empty());
    alice.ack_notices(vec![told[0].id]).await.unwrap();
    let alice_at_b = connect(&b).await;
    alice_at_b.login("alice", &alice_id).await.unwrap();
    assert!(alice_at_b.fetch(100).await.unwrap().notices.is_empty());
    assert!(alice.fetch(100).await.unwrap().notices.is_empty());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A copy of the data directory `from` (a stopped relay's), as an operator's `cp -a` makes it.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Submits warrant `W-<n>` for alice to `node`.
async fn submit_to(
    node: &RunningRelay,
    chief: &sotto_investigator::InvestigatorKeys,
    now: i64,
    n: u32,
) -> Result<sotto_investigator::Answered, sotto_investigator::InvestigatorError> {
    let mut warrant = sotto_proto::v1::Warrant::decode(
        warrant_for_alice(chief, &node.disclosure_key, now)
            .warrant
            .as_ref(),
    )
    .unwrap();
    warrant.id = format!("W-{n}");
    let pin = Fingerprint::parse(&node.fingerprint).unwrap();
    let conn = sotto_investigator::relay::RelayConnection::connect(&node.addr.to_string(), pin)
        .await
        .unwrap();
    let answer =
        sotto_investigator::requests::submit_warrant(&conn, chief.sign_warrant(&warrant)).await;
    conn.close().await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_desk_with_a_cut_log_started_beside_it_does_not_silence_it() {
    let _heavy = sotto_tests::one_at_a_time().await;
    use sotto_investigator::Answered;
    let (nats, root, dir, desk, chief) = desk_setup().await;
    connect(&desk)
        .await
        .register("alice", &Identity::generate())
        .await
        .unwrap();
    let now = sotto_server::now_ms() / 1000;
    for n in 1..=2 {
        let held = submit_to(&desk, &chief, now, n).await;
        assert!(matches!(held, Ok(Answered::PendingReview(_))), "{held:?}");
    }
    // As new as the desk, and its anchors agree; its log does not.
    desk.shutdown().await.unwrap();
    let cut = root.path().join("cut");
    copy_dir(&dir, &cut);
    let log = std::fs::read_to_string(cut.join("audit.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let kept = format!("{}\n", lines[..lines.len() - 1].join("\n"));
    std::fs::write(cut.join("audit.log"), kept).unwrap();
    let desk = node_with(&nats, &dir, true).await;
    let edited = node_with(&nats, &cut, true).await;
    assert!(
        edited.warnings.iter().any(|w| w.contains("audit.log")),
        "the cut log was taken: {:?}",
        edited.warnings
    );
    assert!(submit_to(&edited, &chief, now, 3).await.is_err());
    let still = submit_to(&desk, &chief, now, 4).await;
    assert!(matches!(still, Ok(Answered::PendingReview(_))), "{still:?}");
    edited.shutdown().await.unwrap();
    desk.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_the_desks_data_directory_neither_fork_its_log_nor_serve_behind_it() {
    let _heavy = sotto_tests::one_at_a_time().await;
    use sotto_investigator::relay::RelayConnection;
    use sotto_investigator::{Answered, requests};
    let (nats, root, dir, desk, chief) = desk_setup().await;
    let now = sotto_server::now_ms() / 1000;
    let submit = |node: &RunningRelay, n: u32| {
        let mut warrant = sotto_proto::v1::Warrant::decode(
            warrant_for_alice(&chief, &node.disclosure_key, now)
                .warrant
                .as_ref(),
        )
        .unwrap();
        warrant.id = format!("W-{n}");
        let signed = chief.sign_warrant(&warrant);
        let (addr, pin) = (node.addr, Fingerprint::parse(&node.fingerprint).unwrap());
        async move {
            let conn = RelayConnection::connect(&addr.to_string(), pin)
                .await
                .unwrap();
            let answer = requests::submit_warrant(&conn, signed).await;
            conn.close().await;
            answer
        }
    };
    let logged = |dir: &Path| {
        sotto_server::warrant::audit::entries(&dir.join("audit.log"))
            .map(|e| e.len())
            .unwrap_or(0)
    };
    connect(&desk)
        .await
        .register("alice", &Identity::generate())
        .await
        .unwrap();
    let first = submit(&desk, 1).await;
    assert!(matches!(first, Ok(Answered::PendingReview(_))), "{first:?}");

    // A copy taken now falls behind once the desk logs on.
    desk.shutdown().await.unwrap();
    let old = root.path().join("old");
    copy_dir(&dir, &old);
    let desk = node_with(&nats, &dir, true).await;
    assert!(matches!(
        submit(&desk, 2).await,
        Ok(Answered::PendingReview(_))
    ));
    // Started beside the desk, it serves users and no warrant, and does not
    // silence the desk.
    let behind = node_with(&nats, &old, true).await;
    assert!(
        behind.warnings.iter().any(|w| w.contains("older copy")),
        "{:?}",
        behind.warnings
    );
    assert!(submit(&behind, 9).await.is_err());
    let still = submit(&desk, 10).await;
    assert!(matches!(still, Ok(Answered::PendingReview(_))), "{still:?}");
    behind.shutdown().await.unwrap();
    // A twin taken now and started while the desk runs takes the desk: the
    // first logs, and so serves, nothing more. One log goes on.
    desk.shutdown().await.unwrap();
    let twin_dir = root.path().join("twin");
    copy_dir(&dir, &twin_dir);
    let desk = node_with(&nats, &dir, true).await;
    let twin = node_with(&nats, &twin_dir, true).await;
    let before = logged(&dir);
    let fenced = submit(&desk, 3).await;
    assert!(fenced.is_err(), "{fenced:?}");
    assert_eq!(logged(&dir), before, "the fenced desk logged");
    assert!(matches!(
        submit(&twin, 3).await,
        Ok(Answered::PendingReview(_))
    ));
    assert_eq!(logged(&twin_dir), before + 1);
    desk.shutdown().await.unwrap();
    twin.shutdown().await.unwrap();

    // A desk's directory stays the desk's: not a plain node (its owed
    // notices would never be issued), nor a single relay.
    let dropped = sotto_server::start(&twin_dir, node_config(&nats, false))
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{dropped:#}").contains("keep nats_warrant_desk = true"),
        "{dropped:#}"
    );
    let single = RelayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..RelayConfig::default()
    };
    let alone = sotto_server::start(&twin_dir, single)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{alone:#}").contains("is a cluster node's data directory"),
        "{alone:#}"
    );
}

/// Polls `client`'s notices until there are `n`, for up to 30 s.
async fn notices_until(client: &RelayClient, n: usize) -> Vec<sotto_proto::v1::WarrantNotice> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let notices = client.fetch(100).await.unwrap().notices;
        if notices.len() >= n || tokio::time::Instant::now() > deadline {
            return notices;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_operator_who_makes_a_notice_fail_halfway_gets_nobody_told_twice() {
    let _heavy = sotto_tests::one_at_a_time().await;
    use async_nats::jetstream;
    use sotto_investigator::relay::RelayConnection;
    use sotto_investigator::{Answered, requests};
    let (nats, _root, dir, desk, chief) = desk_setup().await;
    let (alice, bob) = (connect(&desk).await, connect(&desk).await);
    alice
        .register("alice", &Identity::generate())
        .await
        .unwrap();
    bob.register("bob", &Identity::generate()).await.unwrap();
    let now = sotto_server::now_ms() / 1000;
    let mut warrant = sotto_proto::v1::Warrant::decode(
        warrant_for_alice(&chief, &desk.disclosure_key, now)
            .warrant
            .as_ref(),
    )
    .unwrap();
    warrant.targets = vec!["alice".into(), "bob".into()];
    let signed = chief.sign_warrant(&warrant);
    let pin = Fingerprint::parse(&desk.fingerprint).unwrap();
    let conn = RelayConnection::connect(&desk.addr.to_string(), pin)
        .await
        .unwrap();
    assert!(matches!(
        requests::submit_warrant(&conn, signed.clone()).await,
        Ok(Answered::PendingReview(_))
    ));
    approve_at(&dir, &warrant.id).await;
    assert!(matches!(
        requests::collect_warrant(&conn, signed).await,
        Ok(Answered::Disclosure(_))
    ));
    conn.close().await;

    // The cluster's operator lets the notices' stream take one message only.
    let (operator, _) = async_nats::ConnectOptions::with_user_and_password(
        sotto_server::cluster::RELAY_USER.into(),
        RELAY_PASSWORD.into(),
    )
    .connect(nats.urls())
    .await
    .map(|c| (c, ()))
    .unwrap();
    let js = jetstream::new(operator);
    let limit = |max: i64| {
        let js = js.clone();
        async move {
            let mut config = js
                .get_stream("NOTICES")
                .await
                .unwrap()
                .cached_info()
                .config
                .clone();
            config.max_messages = max;
            js.update_stream(config).await.unwrap();
        }
    };
    limit(1).await;
    // Due: one of the two is written, the other refused.
    desk.clock().set((now + 60 + 86_400 + 1) * 1000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let (a, b) = (
            alice.fetch(100).await.unwrap().notices,
            bob.fetch(100).await.unwrap().notices,
        );
        if a.len() + b.len() > 0 || tokio::time::Instant::now() > deadline {
            break [a, b].concat();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(first.len(), 1, "{first:?}");
    // Limits restored, the desk tries again a minute later: the other is
    // told under the same notice, and nobody twice.
    limit(-1).await;
    desk.clock().set((now + 60 + 86_400 + 62) * 1000);
    let (a, b) = (notices_until(&alice, 1).await, notices_until(&bob, 1).await);
    assert_eq!((a.len(), b.len()), (1, 1), "{a:?} {b:?}");
    assert_eq!(a[0].id, b[0].id);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(alice.fetch(100).await.unwrap().notices.len(), 1);
    let logged = sotto_server::warrant::audit::entries(&dir.join("audit.log")).unwrap();
    assert_eq!(
        logged.iter().filter(|e| e.kind == "notice").count(),
        1,
        "{logged:?}"
    );
    desk.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requester_refused_at_one_node_spends_nothing_of_the_targets_rate_there() {
    let _heavy = sotto_tests::one_at_a_time().await;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let a_dir = first_node_dir(root.path());
    let two_a_minute = |nats: &NatsCluster| RelayConfig {
        prekey_bundles_per_minute: 2,
        ..node_config(nats, false)
    };
    let a = sotto_server::start(&a_dir, two_a_minute(&nats))
        .await
        .unwrap();
    let b_dir = root.path().join("b");
    sotto_server::datadir::join(&b_dir, &a_dir).unwrap();
    let b = sotto_server::start(&b_dir, two_a_minute(&nats))
        .await
        .unwrap();
    let bob_id = Identity::generate();
    let bob = connect(&a).await;
    bob.register("bob", &bob_id).await.unwrap();
    let mut prekeys = LocalPrekeys::default();
    prekeys.rotate_signed(&bob_id, sotto_server::now_ms());
    let otk = prekeys.generate_one_time(5);
    let pq_otk = prekeys.generate_pq_one_time(&bob_id, 5);
    bob.upload_prekeys(prekeys.upload(&bob_id, otk, pq_otk).unwrap())
        .await
        .unwrap();
    let user_at = |node: &RunningRelay, name: &'static str| {
        let (addr, pin) = (node.addr, Fingerprint::parse(&node.fingerprint).unwrap());
        async move {
            let client = RelayClient::connect(&addr.to_string(), Some(pin))
                .await
                .unwrap();
            client.register(name, &Identity::generate()).await.unwrap();
            client
        }
    };
    let mallory_id = Identity::generate();
    let mallory = connect(&a).await;
    mallory.register("mallory", &mallory_id).await.unwrap();
    assert!(
        mallory
            .fetch_bundle("bob")
            .await
            .unwrap()
            .one_time
            .is_some()
    );
    // Mallory asks again and again at B: refused there by A's claim, and
    // bob's two a minute at B are still whole.
    let mallory_at_b = connect(&b).await;
    mallory_at_b.login("mallory", &mallory_id).await.unwrap();
    for _ in 0..3 {
        let again = mallory_at_b.fetch_bundle("bob").await.unwrap();
        assert!(again.one_time.is_none());
    }
    for name in ["carol", "dave"] {
        let newcomer = user_at(&b, name).await;
        assert!(
            newcomer
                .fetch_bundle("bob")
                .await
                .unwrap()
                .one_time
                .is_some(),
            "{name} got no one-time prekey at B"
        );
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_relays_data_directory_does_not_become_a_node_by_a_change_of_store() {
    let _heavy = sotto_tests::one_at_a_time().await;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let data = first_node_dir(root.path());
    let single = sotto_server::start(
        &data,
        RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..RelayConfig::default()
        },
    )
    .await
    .unwrap();
    let pin = Fingerprint::parse(&single.fingerprint).unwrap();
    RelayClient::connect(&single.addr.to_string(), Some(pin))
        .await
        .unwrap()
        .register("alice", &Identity::generate())
        .await
        .unwrap();
    single.shutdown().await.unwrap();
    let config = RelayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreKind::Nats,
        nats_urls: nats.urls(),
        ..RelayConfig::default()
    };
    let refused = sotto_server::start(&data, config)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{refused:#}").contains("has served as a single relay"),
        "{refused:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_operator_who_deletes_the_accounts_cannot_hand_a_history_to_a_newcomer() {
    let _heavy = sotto_tests::one_at_a_time().await;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let a = node(&nats, &first_node_dir(root.path())).await;
    let bob_id = Identity::generate();
    let alice = connect(&a).await;
    alice
        .register("alice", &Identity::generate())
        .await
        .unwrap();
    connect(&a).await.register("bob", &bob_id).await.unwrap();
    alice
        .send_normal(Recipient::User("bob"), "for bob only", id(1))
        .await
        .unwrap();
    let operator = async_nats::jetstream::new(
        async_nats::ConnectOptions::with_user_and_password("relay".into(), RELAY_PASSWORD.into())
            .connect(nats.urls())
            .await
            .unwrap(),
    );
    // One way: the stream made to take a second record for a name.
    let mut accounts = operator.get_stream("ACCOUNTS").await.unwrap();
    let mut config = accounts.info().await.unwrap().config.clone();
    config.max_messages_per_subject = 2;
    config.discard_new_per_subject = false;
    operator.update_stream(config).await.unwrap();
    let mallory = connect(&a).await;
    assert!(
        mallory
            .register("bob", &Identity::generate())
            .await
            .is_err(),
        "a second account was made for bob"
    );
    // The other: the stream deleted, and made again by a restarted node.
    operator.delete_stream("ACCOUNTS").await.unwrap();
    a.shutdown().await.unwrap();
    let a = node(&nats, &root.path().join("a")).await;
    let mallory = connect(&a).await;
    assert!(
        mallory
            .register("bob", &Identity::generate())
            .await
            .is_err(),
        "bob's name, and his history, went to the first to ask"
    );
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_at_one_node_hears_of_the_delivery_at_another() {
    let _heavy = sotto_tests::one_at_a_time().await;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(&nats, root.path()).await;
    let alice = connect(&a).await;
    alice
        .register("alice", &Identity::generate())
        .await
        .unwrap();
    let bob = connect(&b).await;
    bob.register("bob", &Identity::generate()).await.unwrap();
    let mut told = alice.subscribe().await.unwrap();
    let first = alice
        .send_normal(Recipient::User("bob"), "one", id(1))
        .await
        .unwrap();
    let second = alice
        .send_normal(Recipient::User("bob"), "two", id(2))
        .await
        .unwrap();
    let batch = bob.fetch(100).await.unwrap();
    assert_eq!(batch.normal.len(), 2);
    // Bob has the first only: alice hears of that one, at node A.
    bob.ack(batch.normal[0].seq, vec![]).await.unwrap();
    let delivered = loop {
        if let push::Kind::Delivered(d) = next_push(&mut told).await.kind.unwrap() {
            break d;
        }
    };
    assert_eq!((delivered.peer.as_str(), delivered.upto), ("bob", first.id));
    bob.ack(batch.normal[1].seq, vec![]).await.unwrap();
    let delivered = loop {
        if let push::Kind::Delivered(d) = next_push(&mut told).await.kind.unwrap() {
            break d;
        }
    };
    assert_eq!(
        (delivered.peer.as_str(), delivered.upto),
        ("bob", second.id)
    );

    // A group: alice hears once every other member has her messages, at
    // whichever nodes they read.
    let carol = connect(&a).await;
    carol
        .register("carol", &Identity::generate())
        .await
        .unwrap();
    alice
        .create_group("crew", &["bob".into(), "carol".into()])
        .await
        .unwrap();
    let g1 = alice
        .send_normal(Recipient::Group("crew"), "g1", id(3))
        .await
        .unwrap();
    let g2 = alice
        .send_normal(Recipient::Group("crew"), "g2", id(4))
        .await
        .unwrap();
    let at_bob = bob.fetch(100).await.unwrap().normal;
    bob.ack(at_bob.last().unwrap().seq, vec![]).await.unwrap();
    nothing_delivered(&mut told).await;
    let at_carol = carol.fetch(100).await.unwrap().normal;
    assert_eq!(at_carol.len(), 2);
    carol.ack(at_carol[0].seq, vec![]).await.unwrap();
    let delivered = loop {
        if let push::Kind::Delivered(d) = next_push(&mut told).await.kind.unwrap() {
            break d;
        }
    };
    assert_eq!((delivered.group.as_str(), delivered.upto), ("crew", g1.id));

    // Alice, away meanwhile, asks at node B: what is delivered, of hers only.
    let bobs = bob
        .send_normal(Recipient::User("alice"), "not yours to ask about", id(5))
        .await
        .unwrap();
    let report = alice
        .delivery_status(vec![
            0,
            first.id,
            second.id,
            g1.id,
            g2.id,
            bobs.id,
            u64::MAX,
        ])
        .await
        .unwrap();
    let mut report: Vec<(String, String, u64)> = report
        .into_iter()
        .map(|d| (d.peer, d.group, d.upto))
        .collect();
    report.sort();
    assert_eq!(
        report,
        [
            (String::new(), "crew".to_owned(), g1.id),
            ("bob".to_owned(), String::new(), second.id)
        ]
    );
    carol.ack(at_carol[1].seq, vec![]).await.unwrap();
    let delivered = loop {
        if let push::Kind::Delivered(d) = next_push(&mut told).await.kind.unwrap() {
            break d;
        }
    };
    assert_eq!((delivered.group.as_str(), delivered.upto), ("crew", g2.id));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// No delivery is told within half a second (other pushes pass).
async fn nothing_delivered(pushes: &mut sotto_client::relay::Pushes) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(Some(push))) = tokio::time::timeout_at(deadline, pushes.next()).await {
        assert!(
            !matches!(push.kind, Some(push::Kind::Delivered(_))),
            "told of a delivery: {push:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_client_acknowledging_u64_max_skips_no_later_message() {
    let _heavy = sotto_tests::one_at_a_time().await;
    let nats = NatsCluster::start();
    let root = tempfile::tempdir().unwrap();
    let a = node(&nats, &first_node_dir(root.path())).await;
    let alice = connect(&a).await;
    alice
        .register("alice", &Identity::generate())
        .await
        .unwrap();
    let bob = connect(&a).await;
    bob.register("bob", &Identity::generate()).await.unwrap();
    alice
        .send_normal(Recipient::User("bob"), "before", id(1))
        .await
        .unwrap();
    // The cursor stops at the newest copy stored, not at the integer asked for.
    bob.ack(u64::MAX, vec![u64::MAX, 0]).await.unwrap();
    assert!(bob.fetch(100).await.unwrap().normal.is_empty());
    alice
        .send_normal(Recipient::User("bob"), "after", id(2))
        .await
        .unwrap();
    let later = bob.fetch(100).await.unwrap().normal;
    assert_eq!(
        later.len(),
        1,
        "a message after an acknowledgement of u64::MAX was skipped"
    );
    assert_eq!(later[0].text, "after");
    a.shutdown().await.unwrap();
}
