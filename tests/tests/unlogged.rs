//! A malicious relay that answers an investigator without logging: a
//! disclosure and an unmask answer, correctly signed and sealed, with no
//! receipt. `sotto-warrant` does not take them (non-zero exit, no bundle
//! written, no name printed) unless told `--accept-unlogged`.

use std::path::Path;
use std::process::Output;

use ed25519_dalek::SigningKey;
use prost::Message;
use sotto_investigator::{InvestigatorKeys, WarrantFile};
use sotto_proto::frame;
use sotto_proto::v1::{self, Request, Response, request, response};
use sotto_tests::bin;
use sotto_warrant::{DeliveryKey, Purpose, bundle};

/// A relay that answers every warrant and unmask request, and logs nothing.
async fn unlogging_relay(disclosure: SigningKey, delivery: DeliveryKey) -> (String, String) {
    let tls = sotto_server::tls::TlsIdentity::generate().unwrap();
    let defaults = sotto_server::RelayConfig::default();
    let config = tls
        .server_config(defaults.idle_timeout_secs, &defaults.limits)
        .unwrap();
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let disclosure = disclosure.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let req: Request = frame::read_message(&mut recv, 1 << 20)
                        .await
                        .unwrap()
                        .unwrap();
                    let kind = answer(&disclosure, &delivery, req);
                    let response = Response {
                        kind: Some(kind),
                        receipt: None,
                    };
                    frame::write_frame(&mut send, &response).await.unwrap();
                    let _ = send.finish();
                }
            });
        }
    });
    (addr, tls.fingerprint())
}

fn answer(disclosure: &SigningKey, delivery: &DeliveryKey, req: Request) -> response::Kind {
    match req.kind {
        Some(request::Kind::SubmitWarrant(s)) => {
            let w = v1::Warrant::decode(s.warrant.unwrap().warrant.as_ref()).unwrap();
            let part = v1::Disclosure {
                warrant_id: w.id,
                case_reference: w.case_reference,
                targets: w.targets,
                parts: 1,
                ..Default::default()
            };
            response::Kind::Disclosure(bundle::seal(
                Purpose::Disclosure,
                &part.encode_to_vec(),
                disclosure,
                delivery,
            ))
        }
        Some(request::Kind::Unmask(u)) => {
            let r = v1::UnmaskRequest::decode(u.request.unwrap().request.as_ref()).unwrap();
            let answer = v1::Unmasked {
                unmasked: vec![v1::Unmasking {
                    pseudonym: r.pseudonyms[0].clone(),
                    username: "contact".into(),
                }],
                warrant_id: r.warrant_id,
                request_id: r.request_id,
            };
            response::Kind::Unmasked(bundle::seal(
                Purpose::Unmasking,
                &answer.encode_to_vec(),
                disclosure,
                delivery,
            ))
        }
        _ => panic!("an unexpected request"),
    }
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(bin("sotto-warrant"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// The relay answers on the runtime's workers while the test waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_relay_that_answers_without_logging_is_not_taken_at_its_word() {
    let dir = tempfile::tempdir().unwrap();
    let disclosure = SigningKey::from_bytes(&[9; 32]);
    let keys = InvestigatorKeys::generate(&dir.path().join("inv"), "chief").unwrap();
    let delivery = DeliveryKey::from_bytes(&keys.delivery_public()).unwrap();
    let now = sotto_server::now_ms() / 1000;
    let warrant = v1::Warrant {
        id: "W-1".into(),
        case_reference: "CASE-1".into(),
        authority: "chief".into(),
        legal_basis: "court order".into(),
        approver: "chief".into(),
        targets: vec!["suspect".into()],
        window_from: now - 86_400,
        window_until: now,
        not_before: now - 60,
        expires: now + 86_400,
        delivery_key: keys.delivery_public().to_vec().into(),
        relay_key: disclosure.verifying_key().to_bytes().to_vec().into(),
        notify_after: 0,
    };
    let file = dir.path().join("w.json");
    WarrantFile::new(&keys.sign_warrant(&warrant))
        .save(&file)
        .unwrap();
    let (addr, fingerprint) = unlogging_relay(disclosure, delivery).await;
    let inv = dir.path().join("inv");
    let out = dir.path().join("bundle");
    let tool = |command: &str, args: &[&str]| {
        let mut all = vec![
            command,
            "--key",
            s(&inv),
            "--relay",
            &addr,
            "--fingerprint",
            &fingerprint,
        ];
        all.extend_from_slice(args);
        run(&all)
    };
    let refused = tool("submit", &["--out", s(&out), s(&file)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "an unlogged disclosure was taken"
    );
    assert!(stderr.contains("no receipt proves it logged"), "{stderr}");
    assert!(!out.exists(), "an unlogged disclosure was saved");
    let taken = tool("submit", &["--out", s(&out), "--accept-unlogged", s(&file)]);
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    assert!(out.exists());

    let unmask = [
        "--warrant",
        s(&file),
        "--pseudonym",
        "anon-1",
        "--reason",
        "who",
    ];
    let refused = tool("unmask", &unmask);
    assert!(!refused.status.success(), "an unlogged unmask was taken");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no receipt proves it logged"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("contact"),
        "an unlogged name was printed"
    );
    let taken = tool("unmask", &[&unmask[..], &["--accept-unlogged"]].concat());
    assert!(String::from_utf8_lossy(&taken.stdout).contains("contact"));
}
