//! Past one machine (#18), first piece: sotto's layout on a real 3-node NATS
//! JetStream cluster (`nats-server` from the distribution, started by
//! [`sotto_tests::nats::NatsCluster`]), and the warrant boundary drawn a
//! second time by the engine's permissions: the warrant desk's NATS user
//! reads the normal history and nothing of the secret queue, whatever it
//! asks for.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event};
use futures_util::StreamExt;
use sotto_proto::v1::{self, Push, push};
use sotto_server::cluster::{
    HIST, NOTICES, RELAY_USER, SECRET, STREAMS, WARRANT_USER, inbox_prefix,
};
use sotto_server::hub::Hub;
use sotto_server::seal::{MasterKey, Sealer};
use sotto_tests::nats::{NatsCluster, RELAY_PASSWORD, WARRANT_PASSWORD};

/// A client as `user`, on every node of the cluster; the server's errors
/// (permission violations among them) are collected in the returned list.
async fn connect(
    cluster: &NatsCluster,
    user: &str,
    password: &str,
) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let client = ConnectOptions::with_user_and_password(user.into(), password.into())
        .request_timeout(Some(Duration::from_secs(2)))
        .custom_inbox_prefix(inbox_prefix(user))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let Event::ServerError(e) = event {
                    seen.lock().unwrap().push(e.to_string());
                }
            }
        })
        .connect(cluster.urls())
        .await
        .expect("connects to the cluster");
    (client, errors)
}

/// Waits (boundedly) until the server has told the client of an error that
/// contains `what`.
async fn told(errors: &Arc<Mutex<Vec<String>>>, what: &str) -> bool {
    for _ in 0..100 {
        if errors.lock().unwrap().iter().any(|e| e.contains(what)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn the_warrant_desks_nats_user_reads_the_history_and_is_refused_the_secret_queue() {
    let cluster = NatsCluster::start();
    // The relay makes every stream, replicated on all three nodes, and
    // stores a normal record and a secret envelope (sealed bytes here: the
    // engine's permissions are what is tested).
    let (relay, _) = connect(&cluster, RELAY_USER, RELAY_PASSWORD).await;
    let js = jetstream::new(relay);
    for (name, subjects) in STREAMS {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            num_replicas: 3,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("stream {name} is made: {e}"));
    }
    js.publish("hist.owner1.conv1", "sealed normal record".into())
        .await
        .unwrap()
        .await
        .expect("the normal record is acknowledged by a majority");
    js.publish("secret.recipient1", "sealed secret envelope".into())
        .await
        .unwrap()
        .await
        .expect("the secret envelope is acknowledged by a majority");

    // Someone who guesses the desk's user but not its password gets nowhere,
    // nor does one who names the relay's user with the desk's password.
    for (user, password) in [(WARRANT_USER, "guessed"), (RELAY_USER, WARRANT_PASSWORD)] {
        let refused = ConnectOptions::with_user_and_password(user.into(), password.into())
            .connect(cluster.urls())
            .await
            .is_err();
        assert!(refused, "{user} with a wrong password was let in");
    }

    let (desk, errors) = connect(&cluster, WARRANT_USER, WARRANT_PASSWORD).await;
    let desk_js = jetstream::new(desk.clone());
    // The history: readable.
    let mut hist = desk_js.get_stream(HIST).await.expect("HIST's info");
    assert_eq!(hist.info().await.unwrap().state.messages, 1);
    let record = hist
        .direct_get_last_for_subject("hist.owner1.conv1")
        .await
        .expect("the desk reads a normal record");
    assert_eq!(record.payload.as_ref(), b"sealed normal record");

    // The secret queue: refused by the server, by every way in.
    assert!(desk_js.get_stream(SECRET).await.is_err());
    assert!(
        told(&errors, "Permissions Violation").await,
        "the server did not refuse: {:?}",
        errors.lock().unwrap()
    );
    errors.lock().unwrap().clear();
    let direct = desk
        .request(
            format!("$JS.API.DIRECT.GET.{SECRET}.secret.recipient1"),
            "".into(),
        )
        .await;
    assert!(direct.is_err(), "a direct get of the secret queue answered");
    assert!(told(&errors, "Permissions Violation").await);
    errors.lock().unwrap().clear();
    // Nor by listening to the subjects, nor by making a consumer of it.
    let mut listening = desk.subscribe("secret.>").await.unwrap();
    assert!(told(&errors, "Permissions Violation").await);
    let relay_again = connect(&cluster, RELAY_USER, RELAY_PASSWORD).await.0;
    jetstream::new(relay_again)
        .publish("secret.recipient1", "another envelope".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(
            Duration::from_millis(500),
            futures_util::StreamExt::next(&mut listening)
        )
        .await
        .is_err(),
        "the desk heard a secret envelope"
    );
    errors.lock().unwrap().clear();
    let consumer = desk
        .request(format!("$JS.API.CONSUMER.CREATE.{SECRET}"), "{}".into())
        .await;
    assert!(
        consumer.is_err(),
        "the desk made a consumer of the secret queue"
    );
    assert!(told(&errors, "Permissions Violation").await);
    // Nor by listening for the answers the relay's own reads get: every
    // user shares the server's one account, and the relay's reads of the
    // secret queue come back on its inbox subjects.
    errors.lock().unwrap().clear();
    let mut overhearing = desk.subscribe("_INBOX.>").await.unwrap();
    assert!(told(&errors, "Permissions Violation").await);
    let mut relays_inbox = desk
        .subscribe(format!("{}.>", inbox_prefix(RELAY_USER)))
        .await
        .unwrap();
    let (relay_reads, _) = connect(&cluster, RELAY_USER, RELAY_PASSWORD).await;
    let secret = jetstream::new(relay_reads)
        .get_stream(SECRET)
        .await
        .unwrap();
    let read = secret
        .direct_get_last_for_subject("secret.recipient1")
        .await
        .expect("the relay reads the secret queue");
    assert_eq!(read.payload.as_ref(), b"another envelope");
    for heard in [&mut overhearing, &mut relays_inbox] {
        let answer = tokio::time::timeout(
            Duration::from_millis(500),
            futures_util::StreamExt::next(heard),
        )
        .await;
        assert!(
            answer.is_err(),
            "the desk overheard the relay's read of the secret queue"
        );
    }
    // And it cannot write the history either: read only.
    errors.lock().unwrap().clear();
    let _ = desk_js.publish("hist.owner1.conv1", "forged".into()).await;
    assert!(told(&errors, "Permissions Violation").await);
    assert_eq!(hist.info().await.unwrap().state.messages, 1);
    // What it writes is notices, and it cannot read them back, list or delete one.
    errors.lock().unwrap().clear();
    assert!(desk_js.get_stream(NOTICES).await.is_err());
    assert!(told(&errors, "Permissions Violation").await);
    desk_js
        .publish("notice.person1.1", "sealed notice".into())
        .await
        .unwrap()
        .await
        .expect("the desk's notice is acknowledged by a majority");
    errors.lock().unwrap().clear();
    let read_back = desk
        .request(
            format!("$JS.API.DIRECT.GET.{NOTICES}.notice.person1.1"),
            "".into(),
        )
        .await;
    assert!(read_back.is_err(), "the desk read a notice back");
    assert!(told(&errors, "Permissions Violation").await);
    errors.lock().unwrap().clear();
    let deleted = desk
        .request(
            format!("$JS.API.STREAM.MSG.DELETE.{NOTICES}"),
            "{\"seq\":1}".into(),
        )
        .await;
    assert!(deleted.is_err(), "the desk deleted a notice");
    assert!(told(&errors, "Permissions Violation").await);
}

/// A relay node's hub, linked to the others through server `n`.
async fn hub_on(cluster: &NatsCluster, n: usize, sealer: &Arc<Sealer>) -> Hub {
    let client = ConnectOptions::with_user_and_password(RELAY_USER.into(), RELAY_PASSWORD.into())
        .connect(cluster.urls()[n].clone())
        .await
        .expect("connects");
    Hub::on_cluster(4, client, sealer.clone())
}

fn text_push(text: &str) -> Push {
    Push {
        kind: Some(push::Kind::Normal(v1::NormalMessage {
            id: 1,
            from: "alice".into(),
            text: text.into(),
            ..Default::default()
        })),
    }
}

async fn next_push(rx: &mut tokio::sync::mpsc::Receiver<Push>) -> Option<Push> {
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reaches_a_user_connected_to_another_relay_node_once_and_sealed() {
    let cluster = NatsCluster::start();
    let master = MasterKey::generate();
    let sealer = Arc::new(master.unwrap_data_key(&master.wrap_new_data_key()).unwrap());
    let (a, b) = (
        hub_on(&cluster, 0, &sealer).await,
        hub_on(&cluster, 1, &sealer).await,
    );
    // The cluster's operator listens to every live subject.
    let (operator, _) = connect(&cluster, RELAY_USER, RELAY_PASSWORD).await;
    let mut sniffed = operator.subscribe("live.>").await.unwrap();
    operator.flush().await.unwrap();

    // Bob is connected to node B, alice to node A.
    let mut bob = b.subscribe("bob", 1).expect("bob subscribes at B");
    let mut alice = a.subscribe("alice", 2).expect("alice subscribes at A");
    b.settled().await;
    a.settled().await;
    // A node's listen is in place at its own server once settled; the other
    // servers hear of it over their routes a moment later (a push sent
    // meanwhile is missed, and the client's fetch after subscribing has it).
    for server in [0, 1] {
        interest_known(&cluster, server, 2).await;
    }
    a.push("bob", &text_push("hello bob, from node A"));
    assert_eq!(
        next_push(&mut bob).await,
        Some(text_push("hello bob, from node A"))
    );
    // A push made at bob's own node reaches him once, not again by the
    // cluster; nobody else gets either.
    b.push("bob", &text_push("second"));
    assert_eq!(next_push(&mut bob).await, Some(text_push("second")));
    assert_eq!(next_push(&mut bob).await, None, "a push came twice");
    assert_eq!(next_push(&mut alice).await, None, "alice got bob's push");

    // What crossed the cluster's network: neither text nor names.
    let mut crossed = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sniffed.next()).await {
        crossed.push(m);
    }
    assert_eq!(crossed.len(), 2, "both pushes crossed the cluster");
    for m in &crossed {
        let raw = [m.subject.as_bytes(), m.payload.as_ref()].concat();
        for secret in [&b"hello bob"[..], b"second", b"bob", b"alice"] {
            assert!(
                !raw.windows(secret.len()).any(|w| w == secret),
                "{:?} crossed the cluster in the clear",
                String::from_utf8_lossy(secret)
            );
        }
    }

    // Moved to alice's subject by the operator, bob's push is not hers.
    let alices_subject = {
        let (watch, _) = connect(&cluster, RELAY_USER, RELAY_PASSWORD).await;
        let mut s = watch.subscribe("live.>").await.unwrap();
        watch.flush().await.unwrap();
        b.push("alice", &text_push("to alice"));
        let m = tokio::time::timeout(Duration::from_secs(2), s.next())
            .await
            .unwrap()
            .unwrap();
        m.subject.to_string()
    };
    assert_eq!(next_push(&mut alice).await, Some(text_push("to alice")));
    operator
        .publish(alices_subject, crossed[0].payload.clone())
        .await
        .unwrap();
    operator.flush().await.unwrap();
    assert_eq!(
        next_push(&mut alice).await,
        None,
        "a moved push was delivered"
    );

    // Bob leaves node B: B stops listening for him (asked of B's server:
    // his receiver is closed either way).
    assert_eq!(live_subscriptions(&cluster, 1), 1, "B listens for bob");
    b.unsubscribe("bob", 1);
    b.settled().await;
    assert_eq!(
        live_subscriptions(&cluster, 1),
        0,
        "B still listens for bob"
    );
    assert_eq!(live_subscriptions(&cluster, 0), 1, "A listens for alice");
}

/// Waits until NATS server `n` knows of `count` users' live subjects
/// listened on, its own clients' and those its routes told it of.
async fn interest_known(cluster: &NatsCluster, n: usize, count: usize) {
    let subjects = |path: &str, list: &str| -> Vec<String> {
        let answer = cluster.monitor(n, path).unwrap_or_default();
        answer[list]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c["subscriptions_list"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|sub| sub.as_str().map(str::to_owned))
            .collect()
    };
    let known = || {
        let mut all = subjects("/connz?subs=1", "connections");
        all.extend(subjects("/routez?subs=1", "routes"));
        all.into_iter()
            .filter(|subject| subject.starts_with("live.") && subject != "live.>")
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    for _ in 0..400 {
        if known() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "server {n} never heard of {count} live subjects: {}",
        known()
    );
}

/// How many users' live subjects the clients of server `n` listen on
/// (the operator's `live.>` aside).
fn live_subscriptions(cluster: &NatsCluster, n: usize) -> usize {
    let connz = cluster
        .monitor(n, "/connz?subs=1")
        .expect("the monitoring endpoint");
    connz["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c["subscriptions_list"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|s| {
            s.as_str()
                .is_some_and(|s| s.starts_with("live.") && s != "live.>")
        })
        .count()
}
