//! The relay's side of secret groups: one ciphertext for every recipient,
//! kept once and deleted with the last acknowledgement or at its expiry;
//! the relay sees an opaque group id and the recipients, nothing else; a
//! hostile member's malformed sends change nothing; and a warrant for a
//! member finds nothing of it.

use sotto_client::relay::RelayClient;
use sotto_investigator::{Answered, InvestigatorKeys, collect_warrant, submit_warrant};
use sotto_proto::v1::{self, ErrorCode};
use sotto_server::RelayConfig;
use sotto_server::store::Tree;
use sotto_tests::{TestRelay, TestUser, files_containing};

const GROUP: &[u8] = b"\x07opaque-group-id";
const CIPHERTEXT: &[u8] = b"sender-key ciphertext, opaque to the relay: the team meets at noon";

fn names(users: &[&TestUser]) -> Vec<String> {
    users.iter().map(|u| u.name.clone()).collect()
}

async fn secret_batch(client: &RelayClient) -> Vec<v1::SecretEnvelope> {
    client.fetch(100).await.unwrap().secret
}

fn refused<T: std::fmt::Debug>(
    answer: Result<T, sotto_client::relay::ClientError>,
    code: ErrorCode,
) {
    match answer {
        Err(sotto_client::relay::ClientError::Refused { code: got, .. }) => {
            assert_eq!(got, code)
        }
        other => panic!("expected a refusal {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_group_message_is_kept_once_and_gone_with_the_last_acknowledgement() {
    let relay = TestRelay::start().await;
    let ann = relay.register("ann").await;
    let members = [
        relay.register("bob").await,
        relay.register("cyd").await,
        relay.register("dee").await,
        relay.register("eve").await,
    ];
    let to = names(&members.iter().collect::<Vec<_>>());
    let queued = ann
        .client
        .send_secret_group(GROUP, &to, CIPHERTEXT.to_vec(), [1; 16])
        .await
        .unwrap();
    assert_eq!((queued.recipients, queued.duplicate), (4, false));
    let state = relay.running().state();
    // Four envelopes, and the ciphertext once: four references and one body.
    assert_eq!(state.secret_envelopes_waiting().unwrap(), 4);
    assert_eq!(state.stored_entries(Tree::SecretQueue).unwrap(), 5);
    // A retry is queued once.
    let again = ann
        .client
        .send_secret_group(GROUP, &to, CIPHERTEXT.to_vec(), [1; 16])
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(state.stored_entries(Tree::SecretQueue).unwrap(), 5);

    // Every member gets the same ciphertext, from ann, for the group.
    let mut ids = Vec::new();
    for member in &members {
        let got = secret_batch(&member.client).await;
        assert_eq!(got.len(), 1, "{}", member.name);
        assert_eq!(
            (
                got[0].from.as_str(),
                got[0].ciphertext.as_ref(),
                got[0].group.as_ref()
            ),
            ("ann", CIPHERTEXT, GROUP)
        );
        ids.push(got[0].id);
    }
    // The body stays while anyone still waits for it; goes with the last.
    for (n, (member, id)) in members.iter().zip(&ids).enumerate() {
        member.client.ack(0, vec![*id]).await.unwrap();
        let left = 3 - n;
        let body = usize::from(left > 0);
        assert_eq!(
            state.stored_entries(Tree::SecretQueue).unwrap(),
            left + body
        );
    }
    // Nothing of it became history.
    assert_eq!(state.stored_entries(Tree::Messages).unwrap(), 0);
}

#[tokio::test]
async fn a_group_message_expires_for_everyone_and_outlives_a_restart_until_then() {
    let mut relay = TestRelay::start().await;
    let ann = relay.register("ann").await;
    let bob = relay.register("bob").await;
    let cyd = relay.register("cyd").await;
    ann.client
        .send_secret_group(GROUP, &names(&[&bob, &cyd]), CIPHERTEXT.to_vec(), [2; 16])
        .await
        .unwrap();
    relay.restart().await;
    let bob_again = relay.login(&bob).await;
    let got = secret_batch(&bob_again).await;
    assert_eq!(got[0].ciphertext.as_ref(), CIPHERTEXT);
    let state = relay.running().state();
    assert_eq!(state.stored_entries(Tree::SecretQueue).unwrap(), 3);
    let ttl_ms = i64::try_from(RelayConfig::default().secret_ttl_secs).unwrap() * 1000;
    let later = sotto_server::now_ms() + ttl_ms + 1000;
    assert_eq!(state.expire_secret_envelopes(later).unwrap(), 2);
    assert_eq!(state.stored_entries(Tree::SecretQueue).unwrap(), 0);
}

#[tokio::test]
async fn hostile_member_cannot_make_the_relay_fan_out_what_it_should_not() {
    let relay = TestRelay::start().await;
    let ann = relay.register("ann").await;
    let bob = relay.register("bob").await;
    let c = &ann.client;
    let bob_only = names(&[&bob]);
    // Itself among the recipients, a recipient twice, nobody, or too many.
    refused(
        c.send_secret_group(
            GROUP,
            &["ann".into(), "bob".into()],
            CIPHERTEXT.to_vec(),
            [3; 16],
        )
        .await,
        ErrorCode::BadRequest,
    );
    refused(
        c.send_secret_group(
            GROUP,
            &["bob".into(), "bob".into()],
            CIPHERTEXT.to_vec(),
            [3; 16],
        )
        .await,
        ErrorCode::BadRequest,
    );
    refused(
        c.send_secret_group(GROUP, &[], CIPHERTEXT.to_vec(), [3; 16])
            .await,
        ErrorCode::TooLarge,
    );
    let crowd: Vec<String> = (0..256).map(|n| format!("user{n}")).collect();
    refused(
        c.send_secret_group(GROUP, &crowd, CIPHERTEXT.to_vec(), [3; 16])
            .await,
        ErrorCode::TooLarge,
    );
    // No group id, or one too long; an empty or oversized ciphertext.
    refused(
        c.send_secret_group(b"", &bob_only, CIPHERTEXT.to_vec(), [3; 16])
            .await,
        ErrorCode::BadRequest,
    );
    refused(
        c.send_secret_group(&[9; 65], &bob_only, CIPHERTEXT.to_vec(), [3; 16])
            .await,
        ErrorCode::BadRequest,
    );
    refused(
        c.send_secret_group(GROUP, &bob_only, Vec::new(), [3; 16])
            .await,
        ErrorCode::BadRequest,
    );
    refused(
        c.send_secret_group(
            GROUP,
            &bob_only,
            vec![0; sotto_proto::MAX_SECRET_CIPHERTEXT + 1],
            [3; 16],
        )
        .await,
        ErrorCode::TooLarge,
    );
    // An unknown account among real ones: nothing queued for anyone.
    refused(
        c.send_secret_group(
            GROUP,
            &["bob".into(), "nobody".into()],
            CIPHERTEXT.to_vec(),
            [3; 16],
        )
        .await,
        ErrorCode::UnknownUser,
    );
    let state = relay.running().state();
    assert_eq!(state.stored_entries(Tree::SecretQueue).unwrap(), 0);
    assert!(secret_batch(&bob.client).await.is_empty());
}

#[tokio::test]
async fn a_full_queue_of_one_recipient_queues_the_group_message_for_nobody() {
    let mut config = RelayConfig::default();
    config.limits.secret_queue_envelopes = 2;
    let relay = TestRelay::start_with(config).await;
    let ann = relay.register("ann").await;
    let bob = relay.register("bob").await;
    let cyd = relay.register("cyd").await;
    // cyd's queue is full already.
    for n in 0..2 {
        ann.client
            .send_secret(&cyd.name, CIPHERTEXT.to_vec(), [40 + n; 16])
            .await
            .unwrap();
    }
    let state = relay.running().state();
    let before = state.stored_entries(Tree::SecretQueue).unwrap();
    refused(
        ann.client
            .send_secret_group(GROUP, &names(&[&bob, &cyd]), CIPHERTEXT.to_vec(), [5; 16])
            .await,
        ErrorCode::RecipientQueueFull,
    );
    assert_eq!(state.stored_entries(Tree::SecretQueue).unwrap(), before);
    assert!(secret_batch(&bob.client).await.is_empty());
}

#[tokio::test]
async fn a_warrant_for_a_member_finds_nothing_of_a_secret_group_and_db_holds_no_plaintext() {
    let relay = TestRelay::start_with(RelayConfig {
        warrant: sotto_server::config::WarrantConfig {
            review: false,
            ..Default::default()
        },
        ..RelayConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let chief = InvestigatorKeys::generate(&dir.path().join("chief"), "chief").unwrap();
    relay.register_authority(&chief);
    let ann = relay.register("ann").await;
    let bob = relay.register("bob").await;
    ann.client
        .send_secret_group(GROUP, &names(&[&bob]), CIPHERTEXT.to_vec(), [6; 16])
        .await
        .unwrap();
    let now = sotto_server::now_ms() / 1000;
    let signed = chief.sign_warrant(&v1::Warrant {
        id: "W-G".into(),
        case_reference: "CASE-G".into(),
        authority: "chief".into(),
        legal_basis: "court order".into(),
        approver: "judge".into(),
        targets: vec!["ann".into(), "bob".into()],
        window_from: now - 3600,
        window_until: now + 1,
        not_before: now - 60,
        expires: now + 3600,
        delivery_key: chief.delivery_public().to_vec().into(),
        relay_key: hex::decode(&relay.running().disclosure_key).unwrap().into(),
        notify_after: 0,
    });
    let conn = relay.investigator().await;
    let disclosure = match submit_warrant(&conn, signed.clone()).await {
        Ok(Answered::Disclosure(bundle)) => {
            chief.open_disclosure(&bundle, None).unwrap().disclosure
        }
        other => panic!("expected a disclosure, got {other:?}"),
    };
    // Nothing, and no count of it: no record, no conversation, no pseudonym.
    assert!(disclosure.records.is_empty(), "{disclosure:?}");
    assert!(disclosure.pseudonyms.is_empty());
    let again = collect_warrant(&conn, signed).await;
    assert!(matches!(again, Ok(Answered::Disclosure(_))));
    conn.close().await;
    // The relay's files hold neither the ciphertext's bytes nor the group id
    // (sealed), whatever they are.
    for needle in [CIPHERTEXT, GROUP] {
        assert!(files_containing(&relay.data_dir(), needle).is_empty());
    }
}

mod end_to_end {
    //! Secret groups between real profiles through the real relay: made,
    //! changed and read with the terminal client's commands.

    use std::path::{Path, PathBuf};

    use serde_json::Value;
    use sotto_client::commands::{self, group::Change};
    use sotto_client::profile::Profile;
    use sotto_tests::{PASSPHRASE, TestRelay, files_containing, init_profile};

    const NAME: &str = "pangolin-council";

    use sotto_tests::sync_json as sync;

    /// What the group's messages said, as `sync --json` printed them.
    fn said(lines: &[Value]) -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["group"] == NAME && l["mode"] == "secret")
            .map(|l| {
                format!(
                    "{}: {}",
                    l["from"].as_str().unwrap(),
                    l["text"].as_str().unwrap()
                )
            })
            .collect()
    }

    async fn send(dir: &Path, text: &str) {
        let mut profile = Profile::open(dir, PASSPHRASE).unwrap();
        commands::group::send_secret(&mut profile, NAME, text, None, &mut Vec::new())
            .await
            .unwrap();
    }

    async fn change(dir: &Path, change: Change<'_>) {
        let mut profile = Profile::open(dir, PASSPHRASE).unwrap();
        commands::group::change_secret(&mut profile, NAME, change, &mut Vec::new())
            .await
            .unwrap();
    }

    /// The invitation to the group waits in `dir` until its user accepts.
    async fn accept(dir: &Path) {
        let mut profile = Profile::open(dir, PASSPHRASE).unwrap();
        let mut out = Vec::new();
        commands::group::accept(&mut profile, NAME, None, None, &mut out)
            .await
            .unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with("joined"));
    }

    /// Everyone syncs, twice: changes, then the sender keys they answer with.
    async fn settle(dirs: &[&PathBuf]) {
        for _ in 0..2 {
            for dir in dirs {
                sync(dir).await;
            }
        }
    }

    #[tokio::test]
    async fn five_members_read_each_other_a_removed_one_reads_nothing_after_a_new_one_nothing_before()
     {
        let relay = TestRelay::start().await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = |n: &str| tmp.path().join(n);
        let (ann, bob, cyd, dee, eve) =
            (dir("ann"), dir("bob"), dir("cyd"), dir("dee"), dir("eve"));
        for (d, n) in [
            (&ann, "ann"),
            (&bob, "bob"),
            (&cyd, "cyd"),
            (&dee, "dee"),
            (&eve, "eve"),
        ] {
            init_profile(&relay, d, n).await;
        }
        {
            let mut profile = Profile::open(&ann, PASSPHRASE).unwrap();
            let members = ["bob", "cyd", "dee"].map(String::from);
            commands::group::create_secret(&mut profile, NAME, &members, &mut Vec::new())
                .await
                .unwrap();
        }
        let everyone = [&ann, &bob, &cyd, &dee];
        settle(&everyone).await;
        // Nobody is in the group before they accept.
        assert!(
            Profile::open(&bob, PASSPHRASE)
                .unwrap()
                .secret_groups
                .ids()
                .next()
                .is_none()
        );
        for invited in [&bob, &cyd, &dee] {
            accept(invited).await;
        }
        settle(&everyone).await;
        // Every member sends; every other member reads every message.
        for (d, n) in [(&ann, "ann"), (&bob, "bob"), (&cyd, "cyd"), (&dee, "dee")] {
            send(d, &format!("hello from {n}")).await;
        }
        for (d, me) in [(&ann, "ann"), (&bob, "bob"), (&cyd, "cyd"), (&dee, "dee")] {
            let mut got = said(&sync(d).await);
            got.sort();
            let mut expected: Vec<String> = ["ann", "bob", "cyd", "dee"]
                .iter()
                .filter(|n| **n != me)
                .map(|n| format!("{n}: hello from {n}"))
                .collect();
            expected.sort();
            assert_eq!(got, expected, "{me}");
        }

        // dee is removed: it reads nothing sent after, the others do.
        change(&ann, Change::Remove(&["dee".into()])).await;
        settle(&everyone).await;
        send(&bob, "after dee left").await;
        assert!(said(&sync(&dee).await).is_empty());
        assert_eq!(said(&sync(&cyd).await), ["bob: after dee left"]);
        assert_eq!(said(&sync(&ann).await), ["bob: after dee left"]);

        // eve is added: nothing from before, everything after.
        change(&ann, Change::Add(&["eve".into()])).await;
        settle(&[&ann, &bob, &cyd, &eve]).await;
        accept(&eve).await;
        settle(&[&ann, &bob, &cyd, &eve]).await;
        send(&cyd, "welcome eve").await;
        assert_eq!(said(&sync(&eve).await), ["cyd: welcome eve"]);
        assert!(said(&sync(&dee).await).is_empty());

        // ann sets the group's timer: every member's next messages carry it.
        {
            let mut profile = Profile::open(&ann, PASSPHRASE).unwrap();
            let client = profile.connect().await.unwrap();
            sotto_client::secret::send_group_timer(&mut profile, &client, NAME, Some(30))
                .await
                .unwrap();
            client.close().await;
        }
        settle(&[&bob, &cyd]).await;
        send(&bob, "gone in thirty").await;
        assert_eq!(said(&sync(&cyd).await), ["bob: gone in thirty"]);
        let kept = Profile::open(&cyd, PASSPHRASE).unwrap();
        let entry = kept
            .history()
            .iter()
            .find(|e| e.text == "gone in thirty")
            .unwrap();
        assert_eq!(entry.expire_secs, Some(30));

        // The relay's files hold neither the group's name nor a message.
        for needle in [NAME.as_bytes(), b"hello from ann", b"welcome eve"] {
            assert!(files_containing(&relay.data_dir(), needle).is_empty());
        }
    }

    // bob's device lost the group (its vault's groups replaced by empty
    // ones, as a restored old backup would): cyd's next message makes it
    // ask cyd about the group; cyd is no admin, so accepting her answer
    // asks ann, whose answer is the invitation bob accepts. Nothing is
    // joined on a member's word alone.
    #[tokio::test]
    async fn a_members_answer_is_joined_only_once_an_admin_confirms_it() {
        let relay = TestRelay::start().await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = |n: &str| tmp.path().join(n);
        let (ann, bob, cyd) = (dir("ann"), dir("bob"), dir("cyd"));
        for (d, n) in [(&ann, "ann"), (&bob, "bob"), (&cyd, "cyd")] {
            init_profile(&relay, d, n).await;
        }
        {
            let mut profile = Profile::open(&ann, PASSPHRASE).unwrap();
            let members = ["bob", "cyd"].map(String::from);
            commands::group::create_secret(&mut profile, NAME, &members, &mut Vec::new())
                .await
                .unwrap();
        }
        settle(&[&ann, &bob, &cyd]).await;
        accept(&bob).await;
        accept(&cyd).await;
        settle(&[&ann, &bob, &cyd]).await;
        {
            let mut profile = Profile::open(&bob, PASSPHRASE).unwrap();
            profile.secret_groups = sotto_client::secret_group::SecretGroups::new("bob");
            profile.save().unwrap();
        }
        send(&cyd, "anyone there").await;
        sync(&bob).await; // asks cyd
        sync(&cyd).await; // answers
        sync(&bob).await;
        let mut profile = Profile::open(&bob, PASSPHRASE).unwrap();
        let waiting = profile.secret_groups.invitations();
        assert_eq!(waiting.len(), 1);
        assert!(waiting[0].from == "cyd" && waiting[0].recovered && !waiting[0].acceptable);
        let mut out = Vec::new();
        commands::group::accept(&mut profile, NAME, None, None, &mut out)
            .await
            .unwrap();
        let answer = String::from_utf8(out).unwrap();
        assert!(answer.contains("asked its admins (ann)"), "{answer}");
        assert!(
            profile.secret_groups.ids().next().is_none(),
            "joined on cyd's word"
        );
        drop(profile);
        sync(&ann).await; // answers bob
        sync(&bob).await;
        let waiting = Profile::open(&bob, PASSPHRASE)
            .unwrap()
            .secret_groups
            .invitations();
        assert_eq!(waiting.len(), 1);
        assert!(waiting[0].from == "ann" && waiting[0].acceptable);
        accept(&bob).await;
        settle(&[&ann, &bob, &cyd]).await;
        send(&ann, "welcome back").await;
        assert_eq!(said(&sync(&bob).await), ["ann: welcome back"]);
    }
}

#[test]
fn the_relay_process_logs_and_stores_nothing_of_a_secret_group() {
    use sotto_tests::{RelayProcess, sotto, sotto_ok};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    // Everything the relay logs, at its most talkative.
    let mut relay = RelayProcess::start(&data, &[("SOTTO_LOG", "debug")]);
    let profile = |n: &str| tmp.path().join(n);
    for user in ["ann", "bob", "cyd"] {
        relay.init_user(&profile(user), user);
    }
    let (name, text) = ("velvet-ibex-circle", "the ferry leaves at dawn");
    sotto_ok(
        &profile("ann"),
        &["group", "create", "--secret", name, "bob", "cyd"],
    );
    for user in ["bob", "cyd"] {
        let synced = sotto(&profile(user), &["sync"]);
        let said = String::from_utf8_lossy(&synced.stderr);
        assert!(
            synced.status.success() && said.contains("ann invites you"),
            "{said}"
        );
        let waiting = sotto_ok(&profile(user), &["group", "invitations"]);
        assert!(
            waiting.contains(name) && waiting.contains("ann, bob, cyd"),
            "{waiting}"
        );
        sotto_ok(&profile(user), &["group", "accept", "--secret", name]);
    }
    let set = sotto_ok(&profile("ann"), &["group", "timer", "--secret", name, "1h"]);
    assert!(set.contains("disappear 3600 s"), "{set}");
    for _ in 0..2 {
        for user in ["bob", "cyd", "ann"] {
            sotto_ok(&profile(user), &["sync"]);
        }
    }
    sotto_ok(
        &profile("bob"),
        &["send", "--secret", "--group", name, text],
    );
    let got = sotto_ok(&profile("cyd"), &["sync"]);
    assert!(got.contains(text) && got.contains(name), "{got}");
    let logged = relay.terminate();
    for needle in [name, text] {
        assert!(!logged.contains(needle), "the relay logged {needle:?}");
        assert!(files_containing(&data, needle.as_bytes()).is_empty());
    }
}
