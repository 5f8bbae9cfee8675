//! `sotto-relay migrate --to fjall|sled`, run as an operator runs it: on a
//! stopped relay's data directory, with the relay started again afterwards.

use std::path::Path;
use std::process::{Command, Output};

use sotto_client::relay::Recipient;
use sotto_tests::{TestRelay, TestUser, bin};

fn migrate(data: &Path, to: &str) -> Output {
    Command::new(bin("sotto-relay"))
        .arg("--data")
        .arg(data)
        .args(["migrate", "--to", to])
        .output()
        .expect("run sotto-relay migrate")
}

fn migrate_ok(data: &Path, to: &str) -> String {
    let out = migrate(data, to);
    assert!(
        out.status.success(),
        "migrate --to {to} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kept_stores(data: &Path) -> Vec<String> {
    let mut kept: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("db."))
        .collect();
    kept.sort();
    kept
}

#[tokio::test]
async fn a_store_moves_to_sled_and_back_and_the_relay_serves_it_all() {
    let mut relay = TestRelay::start().await;
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        alice
            .client
            .send_normal(Recipient::User("bob"), text, [n as u8; 16])
            .await
            .unwrap();
    }
    let first_secret = alice
        .client
        .send_secret("bob", b"sealed on alice's device".to_vec(), [9; 16])
        .await
        .unwrap();
    // Both log out; their names and keys are kept for later.
    let TestUser {
        name: a,
        identity: a_key,
        client,
    } = alice;
    client.close().await;
    let TestUser {
        name: b,
        identity: b_key,
        client,
    } = bob;
    client.close().await;
    relay.stop().await;
    let data = relay.data_dir();

    let out = migrate_ok(&data, "sled");
    assert!(out.contains("migrated the fjall store to sled"), "{out}");
    assert!(out.contains("counts match"), "{out}");
    assert!(data.join("db/conf").exists(), "db/ is a sled store now");
    assert_eq!(kept_stores(&data).len(), 1, "the fjall store is kept");
    assert!(kept_stores(&data)[0].starts_with("db.fjall-"));
    let config = std::fs::read_to_string(data.join("relay.toml")).unwrap();
    assert!(config.contains("store = \"sled\""), "{config}");

    relay.restart().await;
    let bob_again = relay.login_as(&b, &b_key).await;
    let batch = bob_again.fetch(100).await.unwrap();
    let texts: Vec<_> = batch.normal.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(batch.secret.len(), 1);
    assert_eq!(batch.secret[0].id, first_secret.id);
    assert_eq!(
        batch.secret[0].ciphertext.as_ref(),
        b"sealed on alice's device"
    );
    // Bob's envelope ids go on after the move: none is handed out twice.
    let alice_again = relay.login_as(&a, &a_key).await;
    let next = alice_again
        .send_secret("bob", b"after the move".to_vec(), [10; 16])
        .await
        .unwrap();
    assert!(next.id > first_secret.id);
    drop((bob_again, alice_again));
    relay.stop().await;

    let out = migrate_ok(&data, "fjall");
    assert!(out.contains("migrated the sled store to fjall"), "{out}");
    assert!(!data.join("db/conf").exists(), "db/ is a fjall store again");
    assert_eq!(kept_stores(&data).len(), 2, "both sources are kept");
    relay.restart().await;
    let bob_again = relay.login_as(&b, &b_key).await;
    let batch = bob_again.fetch(100).await.unwrap();
    assert_eq!(batch.normal.len(), 3);
    let ids: Vec<u64> = batch.secret.iter().map(|e| e.id).collect();
    assert_eq!(ids, [first_secret.id, next.id]);
}

#[tokio::test]
async fn a_running_relay_s_store_is_not_migrated() {
    let relay = TestRelay::start().await;
    relay.register("alice").await;
    let data = relay.data_dir();
    let out = migrate(&data, "sled");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    assert!(kept_stores(&data).is_empty(), "nothing was moved");
    assert!(!data.join("db/conf").exists(), "db/ is still fjall");
}

#[tokio::test]
async fn a_store_already_of_that_kind_is_left_alone() {
    let mut relay = TestRelay::start().await;
    relay.register("alice").await;
    relay.stop().await;
    let data = relay.data_dir();
    let out = migrate_ok(&data, "fjall");
    assert!(out.contains("nothing to do"), "{out}");
    assert!(kept_stores(&data).is_empty());
}
