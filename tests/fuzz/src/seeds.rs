//! Writes the seed corpora: real frames, warrants, bundles and files as sotto
//! makes them, one file each, under `corpus/<target>/`.
//!
//!   cargo +nightly run --manifest-path tests/fuzz/Cargo.toml --bin seeds

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use sotto_proto::v1::{self, request};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn framed(kind: request::Kind) -> Vec<u8> {
    sotto_proto::frame::encode(&v1::Request { kind: Some(kind) }).to_vec()
}

fn main() {
    let now: i64 = 1_796_000_000;
    let authority = SigningKey::from_bytes(&[7; 32]);
    let relay = SigningKey::from_bytes(&[9; 32]);

    // Frames: one of each request a client or an investigator sends.
    let requests = [
        ("challenge", request::Kind::Challenge(v1::ChallengeRequest {})),
        (
            "login",
            request::Kind::Login(v1::Login {
                username: "alice".into(),
                signature: vec![1; 64].into(),
            }),
        ),
        (
            "send_normal",
            request::Kind::SendNormal(v1::SendNormal {
                client_id: vec![2; 16].into(),
                text: "hi bob".into(),
                to: Some(v1::send_normal::To::User("bob".into())),
            }),
        ),
        (
            "send_secret",
            request::Kind::SendSecret(v1::SendSecret {
                client_id: vec![3; 16].into(),
                to: "bob".into(),
                ciphertext: vec![4; 120].into(),
            }),
        ),
        ("fetch", request::Kind::Fetch(v1::Fetch { limit: 100 })),
        (
            "ack",
            request::Kind::Ack(v1::Ack {
                normal_upto: 1_796_000_000_000_000,
                secret_ids: vec![1, 2, 3],
                notice_ids: vec![4],
            }),
        ),
        (
            "register",
            request::Kind::Register(v1::Register {
                username: "dee".into(),
                identity_key: vec![8; 32].into(),
                signature: vec![1; 64].into(),
            }),
        ),
        ("subscribe", request::Kind::Subscribe(v1::Subscribe {})),
        (
            "create_group",
            request::Kind::CreateGroup(v1::CreateGroup {
                name: "crew".into(),
                members: vec!["bob".into(), "cyd".into()],
            }),
        ),
        (
            "send_group",
            request::Kind::SendNormal(v1::SendNormal {
                client_id: vec![9; 16].into(),
                text: "hi crew".into(),
                to: Some(v1::send_normal::To::Group("crew".into())),
            }),
        ),
        (
            "upload_prekeys",
            request::Kind::UploadPrekeys(v1::UploadPrekeys {
                identity_dh_key: vec![1; 32].into(),
                identity_dh_signature: vec![2; 64].into(),
                signed_prekey: Some(v1::SignedPrekey {
                    id: 1,
                    public_key: vec![3; 32].into(),
                    signature: vec![4; 64].into(),
                    created_at: 1_796_000_000_000,
                }),
                one_time: vec![v1::OneTimePrekey {
                    id: 2,
                    public_key: vec![5; 32].into(),
                }],
                pq_last_resort: Some(v1::PqPrekey {
                    id: 3,
                    public_key: vec![6; 1568].into(),
                    signature: vec![7; 64].into(),
                    created_at: 1_796_000_000_000,
                }),
                pq_one_time: vec![v1::PqPrekey {
                    id: 4,
                    public_key: vec![8; 1568].into(),
                    signature: vec![9; 64].into(),
                    created_at: 0,
                }],
            }),
        ),
        (
            "fetch_bundle",
            request::Kind::FetchBundle(v1::FetchBundle { user: "bob".into() }),
        ),
        (
            "fetch_identity",
            request::Kind::FetchIdentity(v1::FetchIdentity { user: "cyd".into() }),
        ),
        (
            "submit_warrant",
            request::Kind::SubmitWarrant(v1::SubmitWarrant {
                warrant: Some(v1::SignedWarrant {
                    warrant: vec![1; 40].into(),
                    signature: vec![2; 64].into(),
                }),
            }),
        ),
        (
            "collect",
            request::Kind::Collect(v1::Collect {
                warrant: Some(v1::SignedWarrant {
                    warrant: vec![1; 40].into(),
                    signature: vec![2; 64].into(),
                }),
            }),
        ),
        (
            "unmask",
            request::Kind::Unmask(v1::Unmask {
                request: Some(v1::SignedUnmaskRequest {
                    request: vec![1; 40].into(),
                    signature: vec![2; 64].into(),
                }),
            }),
        ),
    ];
    // The dispatcher: a session byte (0: logged in as ann, 3: nobody),
    // then frames. Each request alone, and a conversation.
    let mut conversation = vec![0u8];
    for (name, kind) in requests {
        let frame = framed(kind);
        write("frame", name, &frame);
        for who in [0u8, 3] {
            write("dispatcher", &format!("{name}-{who}"), &[&[who][..], &frame].concat());
        }
        conversation.extend_from_slice(&frame);
    }
    write("dispatcher", "conversation", &conversation);

    // Warrants and unmask requests: 8 bytes of `now`, then the message.
    let warrant = v1::Warrant {
        id: "W-1".into(),
        case_reference: "case".into(),
        authority: "chief".into(),
        targets: vec!["alice".into()],
        window_from: now - 30 * 86_400,
        window_until: now,
        not_before: now - 60,
        expires: now + 86_400,
        delivery_key: vec![5; 32].into(),
        relay_key: relay.verifying_key().to_bytes().to_vec().into(),
        ..Default::default()
    };
    let bytes = warrant.encode_to_vec();
    let signed = v1::SignedWarrant {
        signature: authority
            .sign(&sotto_proto::transcript::warrant(&bytes))
            .to_bytes()
            .to_vec()
            .into(),
        warrant: bytes.clone().into(),
    };
    write("warrant", "granted", &[&now.to_le_bytes()[..], &bytes].concat());
    write("warrant", "signed", &[&now.to_le_bytes()[..], &signed.encode_to_vec()].concat());
    let unmask = v1::UnmaskRequest {
        warrant_id: "W-1".into(),
        authority: "chief".into(),
        pseudonyms: vec!["anon-27fab1bcb3bcd3277d7a35e9".into()],
        reason: "identify the sender".into(),
        issued_at: now,
        request_id: vec![6; 16].into(),
    };
    write("unmask", "fresh", &[&now.to_le_bytes()[..], &unmask.encode_to_vec()].concat());

    // A sealed disclosure to the bundle target's delivery key.
    let delivery = x25519_dalek::StaticSecret::from([5; 32]);
    let to = sotto_warrant::DeliveryKey::from_bytes(
        x25519_dalek::PublicKey::from(&delivery).as_bytes(),
    )
    .unwrap();
    let sealed = sotto_warrant::bundle::seal(
        sotto_warrant::Purpose::Disclosure,
        b"a disclosure",
        &relay,
        &to,
    );
    write("bundle_open", "disclosure", &sealed.encode_to_vec());

    // The vault: stored key parameters, an old one-file vault, values.
    let params = br#"{"m_kib":65536,"t":3,"p":1,"salt":"000102030405060708090a0b0c0d0e0f"}"#;
    write("vault", "params", &[&[0u8][..], params].concat());
    let legacy = format!(
        r#"{{"format":"sotto-vault/1","kdf":{},"nonce":"{}","ciphertext":"{}"}}"#,
        String::from_utf8_lossy(params),
        "00".repeat(24),
        "ab".repeat(40)
    );
    write("vault", "legacy", &[&[1u8][..], legacy.as_bytes()].concat());
    write("vault", "raw", &[2u8, 0, 1, 2, 3]);
    write("vault", "edited", &[3u8, 20, 100, 1]);
    write("vault", "round", &[4u8, b'h', b'i']);

    // Files an operator keeps.
    let mut file = sotto_warrant::AuthorityFile::default();
    let hex: String = authority
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    file.add("chief", &hex).unwrap();
    write("authorities_toml", "one", file.to_toml().as_bytes());
    write(
        "relay_toml",
        "default",
        sotto_server::RelayConfig::commented_default().as_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let log = sotto_server::warrant::audit::AuditLog::open(
        &dir.path().join("audit.log"),
        SigningKey::from_bytes(&[1; 32]),
    )
    .unwrap();
    for (kind, decision) in [("warrant", "granted"), ("unmask", "refused")] {
        log.append(sotto_server::warrant::audit::AuditEntry::new(kind, decision))
            .unwrap();
    }
    write(
        "audit_log",
        "two",
        &std::fs::read(dir.path().join("audit.log")).unwrap(),
    );
}
