//! The responder's side of a secret chat on what the relay (or anyone) hands
//! it: a first message (PQXDH respond) and later ratchet messages, taken from
//! arbitrary bytes, and real ones with bytes flipped. Nothing may panic, and
//! a changed message never decrypts.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sotto_client::e2e::{LocalPrekeys, Session, verify_bundle};
use sotto_client::identity::Identity;
use sotto_proto::v1::{self, secret_payload};

struct Pair {
    bob: Identity,
    bob_prekeys: LocalPrekeys,
    /// alice's first message to bob, and bob's session after answering it.
    first: v1::PrekeyMessage,
    bob_session: Session,
    /// A later message from alice.
    later: v1::RatchetMessage,
}

fn pair() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        let alice = Identity::from_secrets(&[1; 32], &[2; 32]);
        let bob = Identity::from_secrets(&[3; 32], &[4; 32]);
        let mut bob_prekeys = LocalPrekeys::default();
        bob_prekeys.rotate_signed(&bob, 0);
        let otk = bob_prekeys.generate_one_time(1);
        let pq_otk = bob_prekeys.generate_pq_one_time(&bob, 1);
        let upload = bob_prekeys.upload(&bob, otk.clone(), pq_otk.clone()).unwrap();
        let bundle = v1::PrekeyBundle {
            user: "bob".into(),
            identity_key: bob.public_key().to_bytes().to_vec().into(),
            identity_dh_key: upload.identity_dh_key.clone(),
            identity_dh_signature: upload.identity_dh_signature.clone(),
            signed_prekey: upload.signed_prekey.clone(),
            one_time: otk.into_iter().next(),
            pq_prekey: pq_otk.into_iter().next(),
        };
        let mut alice_session = Session::initiate(&alice, &verify_bundle(&bundle).unwrap()).unwrap();
        let Some(secret_payload::Kind::Prekey(first)) = alice_session.encrypt(b"hello").unwrap().kind
        else {
            panic!("a first message carries the PQXDH header")
        };
        let mut answering = bob_prekeys.clone();
        let (bob_session, _) = Session::respond(&bob, &mut answering, &first).unwrap();
        let later = match alice_session.encrypt(b"later").unwrap().kind {
            Some(secret_payload::Kind::Prekey(p)) => p.message.unwrap(),
            Some(secret_payload::Kind::Message(m)) => m,
            None => unreachable!(),
        };
        Pair {
            bob,
            bob_prekeys,
            first,
            bob_session,
            later,
        }
    })
}

fn flipped(original: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for (i, b) in data.iter().enumerate() {
        bytes[i % original.len()] ^= b;
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let p = pair();
    // Arbitrary bytes as a payload, through both paths.
    if let Ok(payload) = v1::SecretPayload::decode(data) {
        match payload.kind {
            Some(secret_payload::Kind::Prekey(first)) => {
                let mut prekeys = p.bob_prekeys.clone();
                let _ = Session::respond(&p.bob, &mut prekeys, &first);
            }
            Some(secret_payload::Kind::Message(m)) => {
                let _ = p.bob_session.clone().decrypt(&m);
            }
            None => {}
        }
    }
    if data.iter().all(|b| *b == 0) {
        return;
    }
    // A real later message, changed: never decrypts.
    let later = p.later.encode_to_vec();
    if let Ok(changed) = v1::RatchetMessage::decode(flipped(&later, data).as_slice()) {
        if changed != p.later {
            assert!(
                p.bob_session.clone().decrypt(&changed).is_err(),
                "a changed message decrypted"
            );
        }
    }
    // A real first message, changed: never answered.
    let first = p.first.encode_to_vec();
    if let Ok(changed) = v1::PrekeyMessage::decode(flipped(&first, data).as_slice()) {
        if changed != p.first {
            let mut prekeys = p.bob_prekeys.clone();
            assert!(
                Session::respond(&p.bob, &mut prekeys, &changed).is_err(),
                "a changed first message was answered"
            );
        }
    }
});
