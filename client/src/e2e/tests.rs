//! The Double Ratchet and X3DH, pinned down without a socket.

use proptest::prelude::*;
use sotto_proto::v1::{self, secret_payload};

use super::kem_key;
use super::*;
use crate::identity::Identity;

struct Party {
    identity: Identity,
    prekeys: LocalPrekeys,
}

/// A party with `one_time` one-time prekeys of each kind (curve and ML-KEM).
fn party(one_time: usize) -> Party {
    party_with(one_time, one_time)
}

fn party_with(one_time: usize, pq_one_time: usize) -> Party {
    let identity = Identity::generate();
    let mut prekeys = LocalPrekeys::default();
    prekeys.rotate_signed(&identity, 0);
    prekeys.generate_one_time(one_time);
    prekeys.generate_pq_one_time(&identity, pq_one_time);
    Party { identity, prekeys }
}

/// The bundle the relay would hand out for `p` (taking its first one-time
/// key of each kind; the last-resort PQ prekey when no one-time one is left).
fn bundle_of(p: &Party, name: &str) -> v1::PrekeyBundle {
    let otks = p.prekeys.one_time_public();
    let pq_otks = p.prekeys.pq_one_time_public();
    let upload = p.prekeys.upload(&p.identity, otks, pq_otks).unwrap();
    v1::PrekeyBundle {
        user: name.into(),
        identity_key: p.identity.public_key().to_bytes().to_vec().into(),
        identity_dh_key: upload.identity_dh_key,
        identity_dh_signature: upload.identity_dh_signature,
        signed_prekey: upload.signed_prekey,
        one_time: upload.one_time.into_iter().next(),
        pq_prekey: upload
            .pq_one_time
            .into_iter()
            .next()
            .or(upload.pq_last_resort),
    }
}

fn ratchet_message(payload: &v1::SecretPayload) -> &v1::RatchetMessage {
    match payload.kind.as_ref().unwrap() {
        secret_payload::Kind::Message(m) => m,
        secret_payload::Kind::Prekey(p) => p.message.as_ref().unwrap(),
    }
}

/// Alice starts a session with Bob, and Bob answers her first message.
fn established(one_time: usize) -> (Party, Party, Session, Session) {
    let alice = party(0);
    let mut bob = party(one_time);
    let bundle = verify_bundle(&bundle_of(&bob, "bob")).unwrap();
    let mut a = Session::initiate(&alice.identity, &bundle).unwrap();
    let first = a.encrypt(b"hello").unwrap();
    let Some(secret_payload::Kind::Prekey(prekey)) = first.kind else {
        panic!("a first message carries the PQXDH header");
    };
    let (b, plaintext) = Session::respond(&bob.identity, &mut bob.prekeys, &prekey).unwrap();
    assert_eq!(plaintext.as_slice(), b"hello");
    (alice, bob, a, b)
}

/// A copy of a session, as an attacker who read the vault would have it.
fn snapshot(s: &Session) -> Session {
    serde_json::from_slice(&serde_json::to_vec(s).unwrap()).unwrap()
}

#[test]
fn messages_in_order_both_ways_across_several_turns() {
    let (_, _, mut a, mut b) = established(1);
    for turn in 0..5 {
        for i in 0..3 {
            let text = format!("a{turn}.{i}");
            let m = a.encrypt(text.as_bytes()).unwrap();
            assert_eq!(
                b.decrypt(ratchet_message(&m)).unwrap().as_slice(),
                text.as_bytes()
            );
        }
        let text = format!("b{turn}");
        let m = b.encrypt(text.as_bytes()).unwrap();
        assert_eq!(
            a.decrypt(ratchet_message(&m)).unwrap().as_slice(),
            text.as_bytes()
        );
    }
}

#[test]
fn the_x3dh_header_is_sent_until_the_peer_answers() {
    let (_, _, mut a, mut b) = established(1);
    let m = a.encrypt(b"again").unwrap();
    assert!(matches!(m.kind, Some(secret_payload::Kind::Prekey(_))));
    b.decrypt(ratchet_message(&m)).unwrap();
    let reply = b.encrypt(b"hi").unwrap();
    assert!(matches!(reply.kind, Some(secret_payload::Kind::Message(_))));
    a.decrypt(ratchet_message(&reply)).unwrap();
    assert!(matches!(
        a.encrypt(b"x").unwrap().kind,
        Some(secret_payload::Kind::Message(_))
    ));
}

#[test]
fn out_of_order_messages_decrypt_and_their_skipped_keys_are_deleted() {
    let (_, _, mut a, mut b) = established(1);
    let msgs: Vec<_> = (0..5)
        .map(|i| a.encrypt(format!("m{i}").as_bytes()).unwrap())
        .collect();
    for i in [3, 0, 4, 1, 2] {
        let got = b.decrypt(ratchet_message(&msgs[i])).unwrap();
        assert_eq!(got.as_slice(), format!("m{i}").as_bytes());
    }
    assert_eq!(b.ratchet().skipped_len(), 0);
}

#[test]
fn skipped_keys_of_a_previous_chain_survive_a_dh_step() {
    let (_, _, mut a, mut b) = established(1);
    let late = a.encrypt(b"late").unwrap();
    let on_time = a.encrypt(b"on time").unwrap();
    b.decrypt(ratchet_message(&on_time)).unwrap();
    let reply = b.encrypt(b"reply").unwrap();
    a.decrypt(ratchet_message(&reply)).unwrap();
    let next = a.encrypt(b"next chain").unwrap();
    b.decrypt(ratchet_message(&next)).unwrap();
    assert_eq!(
        b.decrypt(ratchet_message(&late)).unwrap().as_slice(),
        b"late"
    );
}

#[test]
fn a_message_beyond_the_skip_bound_is_refused_and_changes_nothing() {
    let (_, _, mut a, mut b) = established(1);
    let first = a.encrypt(b"first").unwrap();
    for _ in 0..MAX_SKIP {
        a.encrypt(b"lost").unwrap();
    }
    let far = a.encrypt(b"too far").unwrap();
    assert_eq!(b.decrypt(ratchet_message(&far)), Err(E2eError::TooFarAhead));
    assert_eq!(b.ratchet().skipped_len(), 0);
    assert_eq!(
        b.decrypt(ratchet_message(&first)).unwrap().as_slice(),
        b"first"
    );
}

#[test]
fn a_replayed_message_is_refused() {
    let (_, _, mut a, mut b) = established(1);
    let m0 = a.encrypt(b"zero").unwrap();
    let m1 = a.encrypt(b"one").unwrap();
    b.decrypt(ratchet_message(&m1)).unwrap();
    b.decrypt(ratchet_message(&m0)).unwrap(); // from the skipped keys
    assert_eq!(b.decrypt(ratchet_message(&m1)), Err(E2eError::Replayed));
    assert_eq!(b.decrypt(ratchet_message(&m0)), Err(E2eError::Replayed));
}

#[test]
fn tampered_headers_and_ciphertexts_are_refused_without_disturbing_the_session() {
    let (_, _, mut a, mut b) = established(1);
    let m = a.encrypt(b"intact").unwrap();
    let good = ratchet_message(&m).clone();

    let mut bad_ct = good.clone();
    let mut ct = bad_ct.ciphertext.to_vec();
    ct[0] ^= 1;
    bad_ct.ciphertext = ct.into();
    assert_eq!(b.decrypt(&bad_ct), Err(E2eError::Decrypt));

    for flip in [0usize, 35, 39] {
        let mut bad_header = good.clone();
        let mut h = bad_header.header.to_vec();
        h[flip] ^= 1;
        bad_header.header = h.into();
        assert!(
            b.decrypt(&bad_header).is_err(),
            "flipping header byte {flip}"
        );
    }
    let mut short = good.clone();
    short.header = short.header.slice(..20);
    assert_eq!(b.decrypt(&short), Err(E2eError::Malformed));

    assert_eq!(b.ratchet().skipped_len(), 0);
    assert_eq!(b.decrypt(&good).unwrap().as_slice(), b"intact");
}

#[test]
fn a_consumed_message_key_is_gone() {
    let (_, _, mut a, mut b) = established(1);
    let m = a.encrypt(b"read once").unwrap();
    b.decrypt(ratchet_message(&m)).unwrap();
    // Whoever copies the state afterwards cannot read the message again.
    let mut stolen = snapshot(&b);
    assert!(stolen.decrypt(ratchet_message(&m)).is_err());
}

#[test]
fn a_copied_state_stops_decrypting_after_the_next_dh_step() {
    let (_, _, mut a, mut b) = established(1);
    let mut stolen = snapshot(&b);
    // Within the current chain the copy still works: the compromise was real.
    let m = a.encrypt(b"same chain").unwrap();
    assert_eq!(
        stolen.decrypt(ratchet_message(&m)).unwrap().as_slice(),
        b"same chain"
    );
    b.decrypt(ratchet_message(&m)).unwrap();
    // Bob answers (with the ratchet key the copy knows), Alice answers back
    // (Bob's next DH step: a key the copy does not have), Bob answers, Alice writes.
    let reply = b.encrypt(b"reply").unwrap();
    a.decrypt(ratchet_message(&reply)).unwrap();
    let x = a.encrypt(b"makes bob step").unwrap();
    b.decrypt(ratchet_message(&x)).unwrap();
    let reply = b.encrypt(b"with a fresh key").unwrap();
    a.decrypt(ratchet_message(&reply)).unwrap();
    let healed = a.encrypt(b"after healing").unwrap();
    assert_eq!(
        b.decrypt(ratchet_message(&healed)).unwrap().as_slice(),
        b"after healing"
    );
    // Even following along with every message does not help the copy.
    let _ = stolen.decrypt(ratchet_message(&x));
    assert!(stolen.decrypt(ratchet_message(&healed)).is_err());
}

#[test]
fn x3dh_works_without_a_one_time_prekey() {
    let (_, bob, mut a, mut b) = established(0);
    assert_eq!(bob.prekeys.one_time_count(), 0);
    let m = b.encrypt(b"no otk").unwrap();
    assert_eq!(
        a.decrypt(ratchet_message(&m)).unwrap().as_slice(),
        b"no otk"
    );
}

#[test]
fn a_one_time_prekey_is_used_once() {
    let alice = party(0);
    let mut bob = party(2);
    let bundle = verify_bundle(&bundle_of(&bob, "bob")).unwrap();
    let mut a = Session::initiate(&alice.identity, &bundle).unwrap();
    let Some(secret_payload::Kind::Prekey(first)) = a.encrypt(b"hi").unwrap().kind else {
        panic!("prekey message expected");
    };
    Session::respond(&bob.identity, &mut bob.prekeys, &first).unwrap();
    assert_eq!(bob.prekeys.one_time_count(), 1);
    // Replaying the first message cannot set up a second session.
    assert_eq!(
        Session::respond(&bob.identity, &mut bob.prekeys, &first).err(),
        Some(E2eError::UnknownPrekey)
    );
}

#[test]
fn malicious_relay_cannot_replay_a_first_message_under_another_encoding_of_its_key() {
    // X25519 ignores the top bit of a public key: the same first message with
    // that bit of its (unsigned) ephemeral key set would give the same session
    // under another base key, past the seen-base-key check. It is refused.
    let alice = party(0);
    let mut bob = party(0);
    let bundle = verify_bundle(&bundle_of(&bob, "bob")).unwrap();
    let mut a = Session::initiate(&alice.identity, &bundle).unwrap();
    let Some(secret_payload::Kind::Prekey(first)) = a.encrypt(b"hi").unwrap().kind else {
        panic!("prekey message expected");
    };
    let mut replayed = first.clone();
    let mut key = replayed.ephemeral_key.to_vec();
    key[31] ^= 0x80;
    replayed.ephemeral_key = key.into();
    assert_eq!(
        Session::respond(&bob.identity, &mut bob.prekeys, &replayed).err(),
        Some(E2eError::BadKey)
    );
    // A value at or above the field's prime is refused too.
    let mut above_p = first.clone();
    let mut key = [0xff; 32];
    key[31] = 0x7f;
    above_p.ephemeral_key = key.to_vec().into();
    assert_eq!(
        Session::respond(&bob.identity, &mut bob.prekeys, &above_p).err(),
        Some(E2eError::BadKey)
    );
    // The message as sent is answered.
    Session::respond(&bob.identity, &mut bob.prekeys, &first).unwrap();
}

#[test]
fn a_failed_first_message_keeps_the_one_time_prekey() {
    let alice = party(0);
    let mut bob = party(1);
    let bundle = verify_bundle(&bundle_of(&bob, "bob")).unwrap();
    let mut a = Session::initiate(&alice.identity, &bundle).unwrap();
    let Some(secret_payload::Kind::Prekey(mut first)) = a.encrypt(b"hi").unwrap().kind else {
        panic!("prekey message expected");
    };
    let inner = first.message.as_mut().unwrap();
    let mut ct = inner.ciphertext.to_vec();
    ct[0] ^= 1;
    inner.ciphertext = ct.into();
    assert!(Session::respond(&bob.identity, &mut bob.prekeys, &first).is_err());
    assert_eq!(bob.prekeys.one_time_count(), 1);
}

#[test]
fn a_bundle_with_a_bad_signature_is_refused() {
    let bob = party(1);
    let mut bundle = bundle_of(&bob, "bob");
    let mut spk = bundle.signed_prekey.clone().unwrap();
    let mut sig = spk.signature.to_vec();
    sig[10] ^= 1;
    spk.signature = sig.into();
    bundle.signed_prekey = Some(spk);
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::BadBundle));

    let mut bundle = bundle_of(&bob, "bob");
    bundle.identity_dh_key = vec![9u8; 32].into();
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::BadBundle));

    // A signed prekey from someone else's identity.
    let mallory = party(1);
    let mut bundle = bundle_of(&bob, "bob");
    bundle.signed_prekey = bundle_of(&mallory, "mallory").signed_prekey;
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::BadBundle));
}

#[test]
fn a_session_survives_being_stored_and_loaded() {
    let (_, _, mut a, b) = established(1);
    let mut b = snapshot(&b);
    let m = a.encrypt(b"after reload").unwrap();
    assert_eq!(
        b.decrypt(ratchet_message(&m)).unwrap().as_slice(),
        b"after reload"
    );
}

#[derive(Debug, Clone)]
enum Step {
    Send { from_alice: bool },
    Deliver { to_alice: bool, pick: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<bool>().prop_map(|from_alice| Step::Send { from_alice }),
        (any::<bool>(), any::<usize>())
            .prop_map(|(to_alice, pick)| Step::Deliver { to_alice, pick }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any interleaving of sends and (reordered) deliveries between two parties
    /// decrypts every message exactly once, to what was sent.
    #[test]
    fn random_interleavings_decrypt_everything_exactly_once(steps in proptest::collection::vec(step(), 1..120)) {
        let (_, _, mut a, mut b) = established(1);
        let mut inbox_bob: Vec<(v1::SecretPayload, Vec<u8>)> = Vec::new();
        let mut inbox_alice: Vec<(v1::SecretPayload, Vec<u8>)> = Vec::new();
        let mut sent = 0usize;
        let mut received = 0usize;
        for (i, s) in steps.into_iter().enumerate() {
            match s {
                Step::Send { from_alice } => {
                    let text = format!("message {i}").into_bytes();
                    let (session, queue) = if from_alice { (&mut a, &mut inbox_bob) } else { (&mut b, &mut inbox_alice) };
                    queue.push((session.encrypt(&text).unwrap(), text));
                    sent += 1;
                }
                Step::Deliver { to_alice, pick } => {
                    let (session, queue) = if to_alice { (&mut a, &mut inbox_alice) } else { (&mut b, &mut inbox_bob) };
                    if queue.is_empty() { continue; }
                    let (payload, text) = queue.remove(pick % queue.len());
                    let got = session.decrypt(ratchet_message(&payload)).unwrap();
                    prop_assert_eq!(got.as_slice(), &text[..]);
                    // A second delivery of the same message is refused.
                    prop_assert!(session.decrypt(ratchet_message(&payload)).is_err());
                    received += 1;
                }
            }
        }
        for (session, queue) in [(&mut a, inbox_alice), (&mut b, inbox_bob)] {
            for (payload, text) in queue {
                let got = session.decrypt(ratchet_message(&payload)).unwrap();
                    prop_assert_eq!(got.as_slice(), &text[..]);
                received += 1;
            }
        }
        prop_assert_eq!(sent, received);
    }
}

#[test]
fn a_signed_prekey_is_replaced_weekly_and_the_previous_one_still_answers() {
    let alice = party(0);
    let mut bob = party(0);
    assert!(!bob.prekeys.signed_prekey_due(0));
    let week = prekeys::SIGNED_PREKEY_LIFETIME_MS;
    assert!(bob.prekeys.signed_prekey_due(week));
    // Alice fetched the bundle before the rotation; her first message arrives after it.
    let bundle_of_before = bundle_of(&bob, "bob");
    let bundle = verify_bundle(&bundle_of_before).unwrap();
    bob.prekeys.rotate_signed(&bob.identity, week);
    assert!(!bob.prekeys.signed_prekey_due(week));
    // The last-resort ML-KEM prekey rotates with it.
    let rotated = bundle_of(&bob, "bob");
    let pq_id = |b: &v1::PrekeyBundle| b.pq_prekey.as_ref().map(|p| p.id);
    assert_ne!(pq_id(&rotated), pq_id(&bundle_of_before));
    assert_ne!(
        rotated.signed_prekey.as_ref().map(|p| p.id),
        bundle_of_before.signed_prekey.as_ref().map(|p| p.id)
    );
    let mut a = Session::initiate(&alice.identity, &bundle).unwrap();
    let Some(secret_payload::Kind::Prekey(first)) = a.encrypt(b"late").unwrap().kind else {
        panic!("prekey message expected");
    };
    let (_, plaintext) = Session::respond(&bob.identity, &mut bob.prekeys, &first).unwrap();
    assert_eq!(plaintext.as_slice(), b"late");
}

fn first_message(payload: &v1::SecretPayload) -> &v1::PrekeyMessage {
    match payload.kind.as_ref().unwrap() {
        secret_payload::Kind::Prekey(p) => p,
        _ => panic!("a first message carries the PQXDH header"),
    }
}

#[test]
fn simultaneous_initiation_converges_on_one_session() {
    let mut alice = party(5);
    let mut bob = party(5);
    let to_bob = verify_bundle(&bundle_of(&bob, "bob")).unwrap();
    let to_alice = verify_bundle(&bundle_of(&alice, "alice")).unwrap();
    // Both start a session before hearing from the other.
    let mut a = PeerSessions::new(Session::initiate(&alice.identity, &to_bob).unwrap());
    let mut b = PeerSessions::new(Session::initiate(&bob.identity, &to_alice).unwrap());
    let a1 = a.encrypt(b"a1").unwrap();
    let b1 = b.encrypt(b"b1").unwrap();
    // Each receives the other's first message and answers it.
    let (from_b, p) =
        Session::respond(&alice.identity, &mut alice.prekeys, first_message(&b1)).unwrap();
    assert_eq!(p.as_slice(), b"b1");
    a.add_inbound(from_b);
    let (from_a, p) =
        Session::respond(&bob.identity, &mut bob.prekeys, first_message(&a1)).unwrap();
    assert_eq!(p.as_slice(), b"a1");
    b.add_inbound(from_a);
    assert_eq!(
        a.current().base_key(),
        b.current().base_key(),
        "both send on the same session"
    );
    // And every later message, both ways, decrypts.
    for round in 0..4u8 {
        let m = a.encrypt(&[round]).unwrap();
        assert_eq!(b.decrypt(ratchet_message(&m)).unwrap().as_slice(), [round]);
        let m = b.encrypt(&[round + 100]).unwrap();
        assert_eq!(
            a.decrypt(ratchet_message(&m)).unwrap().as_slice(),
            [round + 100]
        );
    }
}

#[test]
fn a_message_on_a_replaced_session_still_decrypts() {
    let (alice, mut bob, a, b) = established(3);
    let mut a = PeerSessions::new(a);
    let mut b = PeerSessions::new(b);
    let late = a.encrypt(b"sent before the reset").unwrap();
    // Bob resets: a fresh X3DH with Alice.
    let mut alice = alice;
    alice.prekeys.generate_one_time(2);
    let to_alice = verify_bundle(&bundle_of(&alice, "alice")).unwrap();
    b.restart(Session::initiate(&bob.identity, &to_alice).unwrap());
    let reset = b.encrypt(b"fresh").unwrap();
    let (fresh, p) =
        Session::respond(&alice.identity, &mut alice.prekeys, first_message(&reset)).unwrap();
    assert_eq!(p.as_slice(), b"fresh");
    a.add_inbound(fresh);
    // The message Alice sent on the old session reaches Bob all the same.
    assert_eq!(
        b.decrypt(ratchet_message(&late)).unwrap().as_slice(),
        b"sent before the reset"
    );
    let _ = &mut bob;
    let m = a.encrypt(b"on the new one").unwrap();
    assert_eq!(
        b.decrypt(ratchet_message(&m)).unwrap().as_slice(),
        b"on the new one"
    );
}

#[test]
fn seen_base_keys_are_bounded_and_remembered() {
    let mut seen = SeenBaseKeys::default();
    seen.insert([1; 32]);
    assert!(seen.contains(&[1; 32]));
    for n in 0..peer::MAX_SEEN_BASE_KEYS as u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&n.to_be_bytes());
        key[31] = 9;
        seen.insert(key);
    }
    assert!(!seen.contains(&[1; 32]), "the oldest is forgotten first");
}

// ------------------------------------------------------------------ PQXDH

/// Alice's first message to the owner of `bundle`, and her session.
fn first_to(alice: &Party, bundle: &v1::PrekeyBundle) -> (Session, v1::PrekeyMessage) {
    let bundle = verify_bundle(bundle).unwrap();
    let mut a = Session::initiate(&alice.identity, &bundle).unwrap();
    let Some(secret_payload::Kind::Prekey(first)) = a.encrypt(b"hello").unwrap().kind else {
        panic!("a first message carries the PQXDH header");
    };
    (a, first)
}

#[test]
fn pqxdh_round_trips_with_and_without_each_kind_of_one_time_prekey() {
    for (curve, pq) in [(true, true), (true, false), (false, true), (false, false)] {
        let case = format!("curve one-time {curve}, pq one-time {pq}");
        let alice = party(0);
        let mut bob = party_with(usize::from(curve) * 2, usize::from(pq) * 2);
        let bundle = bundle_of(&bob, "bob");
        assert_eq!(bundle.one_time.is_some(), curve, "{case}");
        let (mut a, first) = first_to(&alice, &bundle);
        assert_eq!(first.pq_ciphertext.len(), kem_key::CIPHERTEXT_LEN, "{case}");
        let pq_id = first.pq_prekey_id.unwrap();
        let (mut b, plaintext) = Session::respond(&bob.identity, &mut bob.prekeys, &first).unwrap();
        assert_eq!(plaintext.as_slice(), b"hello", "{case}");
        assert!(a.is_post_quantum() && b.is_post_quantum(), "{case}");
        // The one-time prekeys used are gone; the last-resort one stays.
        assert_eq!(bob.prekeys.one_time_count(), usize::from(curve), "{case}");
        assert_eq!(bob.prekeys.pq_one_time_count(), usize::from(pq), "{case}");
        assert!(bob.prekeys.pq(pq_id).is_some() != pq, "{case}");
        let reply = b.encrypt(b"reply").unwrap();
        assert_eq!(
            a.decrypt(ratchet_message(&reply)).unwrap().as_slice(),
            b"reply",
            "{case}"
        );
    }
}

#[test]
fn the_last_resort_pq_prekey_serves_more_than_one_session() {
    let mut bob = party_with(0, 0);
    let bundle = bundle_of(&bob, "bob");
    for _ in 0..2 {
        let (_, first) = first_to(&party(0), &bundle);
        Session::respond(&bob.identity, &mut bob.prekeys, &first).unwrap();
    }
}

#[test]
fn malicious_relay_that_strips_the_pq_prekey_is_refused() {
    let bob = party(1);
    let mut bundle = bundle_of(&bob, "bob");
    bundle.pq_prekey = None;
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::NoPqPrekey));
}

#[test]
fn malicious_relay_that_swaps_the_pq_prekey_is_refused() {
    let bob = party(2);
    let mallory = party(1);
    let good = bundle_of(&bob, "bob");
    type Swap<'a> = (&'static str, Box<dyn Fn(&mut v1::PqPrekey) + 'a>);
    let swaps: [Swap; 5] = [
        (
            "mallory's own signed key",
            Box::new(|pq| *pq = bundle_of(&mallory, "mallory").pq_prekey.unwrap()),
        ),
        (
            "mallory's key under bob's signature",
            Box::new(|pq| {
                pq.public_key = bundle_of(&mallory, "mallory").pq_prekey.unwrap().public_key
            }),
        ),
        ("another id", Box::new(|pq| pq.id ^= 1)),
        (
            "one bit of the key",
            Box::new(|pq| {
                let mut k = pq.public_key.to_vec();
                k[100] ^= 1;
                pq.public_key = k.into();
            }),
        ),
        (
            "a truncated key",
            Box::new(|pq| pq.public_key = pq.public_key.slice(..1567)),
        ),
    ];
    for (what, swap) in swaps {
        let mut bundle = good.clone();
        swap(bundle.pq_prekey.as_mut().unwrap());
        assert_eq!(
            verify_bundle(&bundle).err(),
            Some(E2eError::BadBundle),
            "{what}"
        );
    }
    verify_bundle(&good).unwrap();
}

#[test]
fn malicious_relay_cannot_pass_a_kem_key_as_a_curve_key_or_the_reverse() {
    let bob = party(1);
    let good = bundle_of(&bob, "bob");
    let spk = good.signed_prekey.clone().unwrap();
    let pq = good.pq_prekey.clone().unwrap();

    // The signed curve prekey, with its signature, in the PQ prekey's place.
    let mut bundle = good.clone();
    bundle.pq_prekey = Some(v1::PqPrekey {
        id: spk.id,
        public_key: spk.public_key.clone(),
        signature: spk.signature.clone(),
        created_at: spk.created_at,
    });
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::BadBundle));

    // The PQ prekey's signature on the curve prekey's place, with the
    // first 32 bytes of the KEM key as the curve key.
    let mut bundle = good.clone();
    bundle.signed_prekey = Some(v1::SignedPrekey {
        id: pq.id,
        public_key: pq.public_key.slice(..32),
        signature: pq.signature.clone(),
        created_at: pq.created_at,
    });
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::BadBundle));

    // Even a signature bob's own identity made over a KEM key as if it were
    // a curve prekey (or over a curve key as a PQ prekey) verifies only as
    // what it was made for.
    let as_curve = bob
        .identity
        .sign(&sotto_proto::transcript::signed_prekey(&pq.public_key));
    let mut bundle = good.clone();
    bundle.pq_prekey.as_mut().unwrap().signature = as_curve.to_bytes().to_vec().into();
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::BadBundle));
    let as_kem = bob
        .identity
        .sign(&sotto_proto::transcript::pq_prekey(spk.id, &spk.public_key));
    let mut bundle = good.clone();
    bundle.signed_prekey.as_mut().unwrap().signature = as_kem.to_bytes().to_vec().into();
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::BadBundle));
}

#[test]
fn a_pq_prekey_that_is_not_a_valid_ml_kem_key_is_refused_even_when_signed() {
    // Coefficients at or above q = 3329 fail FIPS 203's encapsulation key
    // check; bob's own (buggy or hostile) client signed it.
    let bob = party(0);
    let mut bundle = bundle_of(&bob, "bob");
    let pq = bundle.pq_prekey.as_mut().unwrap();
    let mut key = pq.public_key.to_vec();
    key[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
    pq.public_key = key.into();
    pq.signature = bob
        .identity
        .sign(&sotto_proto::transcript::pq_prekey(pq.id, &pq.public_key))
        .to_bytes()
        .to_vec()
        .into();
    assert_eq!(verify_bundle(&bundle).err(), Some(E2eError::BadBundle));
}

#[test]
fn a_tampered_kem_ciphertext_fails_the_first_message_and_changes_nothing() {
    let alice = party(0);
    let mut bob = party(1);
    let (_, first) = first_to(&alice, &bundle_of(&bob, "bob"));
    let before = serde_json::to_vec(&bob.prekeys).unwrap();

    for flip in [0usize, 700, kem_key::CIPHERTEXT_LEN - 1] {
        let mut tampered = first.clone();
        let mut ct = tampered.pq_ciphertext.to_vec();
        ct[flip] ^= 1;
        tampered.pq_ciphertext = ct.into();
        // ML-KEM rejects implicitly: another secret, so the message does not decrypt.
        assert_eq!(
            Session::respond(&bob.identity, &mut bob.prekeys, &tampered).err(),
            Some(E2eError::Decrypt),
            "byte {flip}"
        );
    }
    let mut short = first.clone();
    short.pq_ciphertext = short.pq_ciphertext.slice(..100);
    assert_eq!(
        Session::respond(&bob.identity, &mut bob.prekeys, &short).err(),
        Some(E2eError::Malformed)
    );
    // Naming the last-resort prekey instead of the one-time one used.
    let last_resort = bob.prekeys.upload(&bob.identity, Vec::new(), Vec::new());
    let mut other = first.clone();
    other.pq_prekey_id = last_resort.and_then(|u| u.pq_last_resort).map(|k| k.id);
    assert_ne!(other.pq_prekey_id, first.pq_prekey_id);
    assert_eq!(
        Session::respond(&bob.identity, &mut bob.prekeys, &other).err(),
        Some(E2eError::Decrypt)
    );

    assert_eq!(
        serde_json::to_vec(&bob.prekeys).unwrap(),
        before,
        "no prekey was used up"
    );
    Session::respond(&bob.identity, &mut bob.prekeys, &first).unwrap();
    assert_eq!(bob.prekeys.pq_one_time_count(), 0);
}

#[test]
fn a_first_message_without_a_kem_ciphertext_is_refused() {
    // What a relay (or an old client) would send to fall back to X3DH.
    let alice = party(0);
    let mut bob = party(1);
    let (_, first) = first_to(&alice, &bundle_of(&bob, "bob"));
    for strip in [
        |m: &mut v1::PrekeyMessage| m.pq_ciphertext = Default::default(),
        |m: &mut v1::PrekeyMessage| m.pq_prekey_id = None,
    ] {
        let mut classical = first.clone();
        strip(&mut classical);
        assert_eq!(
            Session::respond(&bob.identity, &mut bob.prekeys, &classical).err(),
            Some(E2eError::ClassicalRefused)
        );
    }
    assert_eq!(bob.prekeys.one_time_count(), 1);
    assert_eq!(bob.prekeys.pq_one_time_count(), 1);
}

#[test]
fn a_one_time_pq_prekey_is_used_once() {
    let alice = party(0);
    // No curve one-time prekey: only the PQ one stops a replay.
    let mut bob = party_with(0, 1);
    let (_, first) = first_to(&alice, &bundle_of(&bob, "bob"));
    Session::respond(&bob.identity, &mut bob.prekeys, &first).unwrap();
    assert_eq!(
        Session::respond(&bob.identity, &mut bob.prekeys, &first).err(),
        Some(E2eError::UnknownPrekey)
    );
}

#[test]
fn prekeys_stored_before_pqxdh_are_due_for_rotation() {
    let bob = party(1);
    let mut stored: serde_json::Value = serde_json::to_value(&bob.prekeys).unwrap();
    let map = stored.as_object_mut().unwrap();
    map.remove("pq_last_resort");
    map.remove("pq_one_time");
    let mut old: LocalPrekeys = serde_json::from_value(stored).unwrap();
    assert!(old.signed_prekey_due(0), "no last-resort PQ prekey yet");
    assert!(old.upload(&bob.identity, Vec::new(), Vec::new()).is_none());
    old.rotate_signed(&bob.identity, 0);
    assert!(!old.signed_prekey_due(0));
    let upload = old.upload(&bob.identity, Vec::new(), Vec::new()).unwrap();
    assert!(upload.pq_last_resort.is_some());
}

#[test]
fn a_session_stored_before_pqxdh_loads_and_keeps_working() {
    // A session as an older version kept it: no PQ fields at all.
    let (_, _, a, b) = established(1);
    let strip = |s: &Session| -> Session {
        let mut v = serde_json::to_value(s).unwrap();
        let map = v.as_object_mut().unwrap();
        map.remove("post_quantum");
        if let Some(p) = map
            .get_mut("pending_prekey")
            .and_then(|p| p.as_object_mut())
        {
            p.remove("pq_ciphertext");
            p.remove("pq_prekey_id");
        }
        serde_json::from_value(v).unwrap()
    };
    let (mut a, mut b) = (strip(&a), strip(&b));
    assert!(!a.is_post_quantum() && !b.is_post_quantum());
    for i in 0..3u8 {
        let m = a.encrypt(&[i]).unwrap();
        assert_eq!(b.decrypt(ratchet_message(&m)).unwrap().as_slice(), [i]);
        let m = b.encrypt(&[i + 10]).unwrap();
        assert_eq!(a.decrypt(ratchet_message(&m)).unwrap().as_slice(), [i + 10]);
    }
}

#[test]
fn a_kem_ciphertext_from_another_first_message_does_not_decrypt() {
    // The KEM's secret is in the key derivation: a relay that pairs one
    // first message with another's (valid) ciphertext gets nothing accepted.
    let alice = party(0);
    let mut bob = party(0);
    let (_, first) = first_to(&alice, &bundle_of(&bob, "bob"));
    let mut other = first.clone();
    let (_, again) = first_to(&alice, &bundle_of(&bob, "bob"));
    other.pq_ciphertext = again.pq_ciphertext;
    assert_eq!(
        Session::respond(&bob.identity, &mut bob.prekeys, &other).err(),
        Some(E2eError::Decrypt)
    );
}

#[test]
fn a_first_message_with_the_longest_text_fits_what_the_relay_takes() {
    // The KEM ciphertext adds 1.6 KiB to every message until the peer answers.
    use prost::Message;
    let alice = party(0);
    let bob = party(1);
    let bundle = verify_bundle(&bundle_of(&bob, "bob")).unwrap();
    let mut a = Session::initiate(&alice.identity, &bundle).unwrap();
    let content = v1::SecretContent {
        text: "x".repeat(sotto_proto::MAX_TEXT),
        expire_secs: u32::MAX,
        client_id: vec![0xff; sotto_proto::CLIENT_ID_LEN].into(),
        sent_at: i64::MIN,
        session_reset: true,
        set_timer_secs: None,
        delivered: Vec::new(),
        group: None,
    };
    let first = a.encrypt(&content.encode_to_vec()).unwrap();
    assert!(matches!(first.kind, Some(secret_payload::Kind::Prekey(_))));
    assert!(
        first.encoded_len() <= sotto_proto::MAX_SECRET_CIPHERTEXT,
        "{} bytes",
        first.encoded_len()
    );
}

/// A session as a version before PQXDH stored it: no PQ fields at all.
fn as_stored_before_pqxdh(s: &Session) -> Session {
    let mut v = serde_json::to_value(s).unwrap();
    let map = v.as_object_mut().unwrap();
    map.remove("post_quantum");
    if let Some(p) = map
        .get_mut("pending_prekey")
        .and_then(|p| p.as_object_mut())
    {
        p.remove("pq_ciphertext");
        p.remove("pq_prekey_id");
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn malicious_relay_cannot_keep_an_unanswered_classical_session_current_over_a_pqxdh_one() {
    // Bob started a classical session with Alice before he upgraded; she has
    // not answered. Now both run PQXDH: Alice refuses his classical first
    // message and starts a PQXDH session to him. Bob must take hers, whatever
    // the base keys say: his classical one can never be answered, and it is
    // not post-quantum (a relay only has to wait for the base keys to favour
    // it to keep Bob sending classical first messages Alice refuses).
    let mut alice = party(1);
    let mut bob = party_with(0, 1);
    let (old, _) = first_to(&bob, &bundle_of(&alice, "alice"));
    let old = as_stored_before_pqxdh(&old);
    assert!(old.is_unanswered() && !old.is_post_quantum());
    let Some(secret_payload::Kind::Prekey(classical)) = old.clone().encrypt(b"hi").unwrap().kind
    else {
        panic!("an unanswered session sends its X3DH header");
    };
    assert_eq!(
        Session::respond(&alice.identity, &mut alice.prekeys, &classical).err(),
        Some(E2eError::ClassicalRefused)
    );
    // Alice's fresh PQXDH session, with a base key above Bob's classical one
    // (half of them are).
    let first = loop {
        let (_, first) = first_to(&alice, &bundle_of(&bob, "bob"));
        if first.ephemeral_key.as_ref() > old.base_key().as_slice() {
            break first;
        }
    };
    let (fresh, _) = Session::respond(&bob.identity, &mut bob.prekeys, &first).unwrap();
    let mut sessions = PeerSessions::new(old);
    sessions.add_inbound(fresh);
    assert!(
        sessions.current().is_post_quantum(),
        "Bob goes on sending classical first messages on a session Alice refuses"
    );
}
