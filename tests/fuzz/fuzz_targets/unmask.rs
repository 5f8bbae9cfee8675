//! The unmask checks on any request a registered authority could sign, at
//! any time; and arbitrary bytes claiming to be a signed unmask request.
#![no_main]

use std::sync::OnceLock;

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sotto_proto::v1;
use sotto_warrant::{AuthorityFile, Registry};

fn authority() -> &'static (SigningKey, Registry) {
    static KEYS: OnceLock<(SigningKey, Registry)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let authority = SigningKey::from_bytes(&[7; 32]);
        let mut file = AuthorityFile::default();
        let hex: String = authority
            .verifying_key()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        file.add("chief", &hex).unwrap();
        let registry = file.registry().unwrap();
        (authority, registry)
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, registry) = authority();
    if data.len() < 8 {
        return;
    }
    let now = i64::from_le_bytes(data[..8].try_into().unwrap());
    let body = &data[8..];
    if let Ok(signed) = v1::SignedUnmaskRequest::decode(body) {
        let _ = sotto_warrant::verify_unmask(&signed, registry);
    }
    let Ok(mut request) = v1::UnmaskRequest::decode(body) else {
        return;
    };
    request.authority = "chief".into();
    let bytes = request.encode_to_vec();
    let signed = v1::SignedUnmaskRequest {
        signature: key
            .sign(&sotto_proto::transcript::unmask(&bytes))
            .to_bytes()
            .to_vec()
            .into(),
        request: bytes.into(),
    };
    let verified = sotto_warrant::verify_unmask(&signed, registry).expect("signed by chief");
    let _ = sotto_warrant::check_unmask(verified, now);
});
