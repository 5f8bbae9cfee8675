//! The warrant checks on any warrant a registered authority could sign:
//! arbitrary fields (every integer, every list), signed with the registered
//! key, verified and checked at an arbitrary time. A granted warrant must
//! never reach outside the window rules; the checks must never panic or
//! overflow. Arbitrary signed-warrant bytes are verified too.
#![no_main]

use std::sync::OnceLock;

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sotto_proto::v1;
use sotto_warrant::{AuthorityFile, Limits, Registry};

fn authority() -> &'static (SigningKey, Registry, SigningKey) {
    static KEYS: OnceLock<(SigningKey, Registry, SigningKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let authority = SigningKey::from_bytes(&[7; 32]);
        let mut file = AuthorityFile::default();
        file.add("chief", &hex(authority.verifying_key().as_bytes()))
            .unwrap();
        let registry = file.registry().unwrap();
        (authority, registry, SigningKey::from_bytes(&[9; 32]))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let (key, registry, relay) = authority();
    if data.len() < 8 {
        return;
    }
    let now = i64::from_le_bytes(data[..8].try_into().unwrap());
    let body = &data[8..];
    // As received: arbitrary bytes claiming to be a signed warrant.
    if let Ok(signed) = v1::SignedWarrant::decode(body) {
        let _ = sotto_warrant::verify_warrant(&signed, registry);
    }
    // As a registered authority could sign it: any fields at all.
    let Ok(mut warrant) = v1::Warrant::decode(body) else {
        return;
    };
    warrant.authority = "chief".into();
    // Past the relay check, so that the rest is reached.
    warrant.relay_key = relay.verifying_key().to_bytes().to_vec().into();
    let bytes = warrant.encode_to_vec();
    let signed = v1::SignedWarrant {
        signature: key
            .sign(&sotto_proto::transcript::warrant(&bytes))
            .to_bytes()
            .to_vec()
            .into(),
        warrant: bytes.into(),
    };
    let verified = sotto_warrant::verify_warrant(&signed, registry).expect("signed by chief");
    let limits = Limits::new(90, 16);
    if let Ok(checked) =
        sotto_warrant::check_warrant(verified, now, &limits, &relay.verifying_key())
    {
        // What the review broke: a granted window is within the rules, in i128.
        let (from, until) = (
            i128::from(warrant.window_from),
            i128::from(warrant.window_until),
        );
        assert!(from < until, "an empty or inverted window was granted");
        assert!(until - from <= 90 * 86_400, "a window over 90 days was granted");
        assert!(until <= i128::from(warrant.expires) + 90 * 86_400);
        assert!(i128::from(warrant.expires) > i128::from(now));
        let _ = checked;
    }
});
