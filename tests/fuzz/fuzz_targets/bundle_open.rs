//! Opening a sealed disclosure or unmask answer, as the investigator's tool
//! does with what a relay (or anyone on the path) sent: arbitrary bytes, and
//! a real bundle with arbitrary bytes flipped.
#![no_main]

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sotto_proto::v1;
use sotto_warrant::{DeliveryKey, Purpose};
use x25519_dalek::{PublicKey, StaticSecret};

struct Keys {
    delivery: StaticSecret,
    relay: SigningKey,
    sealed: Vec<u8>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let delivery = StaticSecret::from([5; 32]);
        let relay = SigningKey::from_bytes(&[9; 32]);
        let to = DeliveryKey::from_bytes(PublicKey::from(&delivery).as_bytes()).unwrap();
        let sealed = sotto_warrant::bundle::seal(Purpose::Disclosure, b"a disclosure", &relay, &to)
            .encode_to_vec();
        Keys {
            delivery,
            relay,
            sealed,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let pin = k.relay.verifying_key();
    if let Ok(sealed) = v1::SealedBundle::decode(data) {
        for purpose in [Purpose::Disclosure, Purpose::Unmasking] {
            let _ = sotto_warrant::bundle::open(purpose, &sealed, &k.delivery, Some(&pin));
        }
    }
    // A real bundle with the input's bytes xored in: every change must be refused.
    if !data.is_empty() && data.iter().any(|b| *b != 0) {
        let mut bytes = k.sealed.clone();
        for (i, b) in data.iter().enumerate() {
            let at = i % bytes.len();
            bytes[at] ^= b;
        }
        if bytes != k.sealed {
            if let Ok(sealed) = v1::SealedBundle::decode(bytes.as_slice()) {
                if sealed.encode_to_vec() != k.sealed {
                    let opened =
                        sotto_warrant::bundle::open(Purpose::Disclosure, &sealed, &k.delivery, Some(&pin));
                    assert!(opened.is_err(), "a changed bundle opened");
                }
            }
        }
    }
});
