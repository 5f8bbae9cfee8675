//! The decoders a peer or a file reaches, on arbitrary input, in every CI
//! run (the same targets run under libFuzzer in `tests/fuzz`, where a
//! nightly toolchain is installed): the frame codec and each message kind,
//! `relay.toml`, `authorities.toml` and the audit log reader. None may panic,
//! and what validates stays within its rules.

use proptest::prelude::*;
use prost::Message;
use sotto_proto::v1;

/// Reads a frame from a slice: a slice never blocks, so one poll does it.
fn read_frame(mut data: &[u8]) -> Result<Option<prost::bytes::Bytes>, sotto_proto::FrameError> {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(sotto_proto::frame::read_frame(&mut data, 64 * 1024));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => unreachable!("a slice is always ready"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn frames_and_messages_decode_or_fail_cleanly(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(Some(body)) = read_frame(&data) {
            prop_assert!(body.len() <= 64 * 1024);
            let _ = v1::Request::decode(body.as_ref());
        }
        let _ = v1::Request::decode(data.as_slice());
        let _ = v1::Response::decode(data.as_slice());
        let _ = v1::Push::decode(data.as_slice());
        let _ = v1::SecretPayload::decode(data.as_slice());
        let _ = v1::SignedWarrant::decode(data.as_slice());
        let _ = v1::SealedBundle::decode(data.as_slice());
    }

    #[test]
    fn a_frame_round_trips_whatever_its_body(text in ".{0,300}", id in proptest::collection::vec(any::<u8>(), 16)) {
        let request = v1::Request {
            kind: Some(v1::request::Kind::SendNormal(v1::SendNormal {
                client_id: id.into(),
                text,
                to: Some(v1::send_normal::To::User("bob".into())),
            })),
        };
        let framed = sotto_proto::frame::encode(&request);
        let body = read_frame(&framed).unwrap().unwrap();
        prop_assert_eq!(v1::Request::decode(body.as_ref()).unwrap(), request);
    }

    #[test]
    fn relay_toml_validates_only_what_the_relay_can_honour(text in "(\\[limits\\]\n)?([a-z_]{1,40} = [0-9]{1,12}\n){0,6}") {
        if let Ok(config) = toml::from_str::<sotto_server::RelayConfig>(&text)
            && config.validate().is_ok()
        {
            prop_assert!(config.limits.connections_per_address <= config.limits.connections);
            prop_assert!(config.limits.frame_read_secs >= 1);
            prop_assert!(config.idle_timeout_secs >= 5);
        }
    }

    #[test]
    fn authorities_toml_parses_or_fails_cleanly(text in "(\\[\\[authority\\]\\]\nname = \"[^\"\n]{0,12}\"\npublic_key = \"[0-9a-f]{0,64}\"\n){0,3}") {
        if let Ok(file) = sotto_warrant::AuthorityFile::parse(&text)
            && file.registry().is_ok()
        {
            let again = sotto_warrant::AuthorityFile::parse(&file.to_toml()).unwrap();
            prop_assert!(again.registry().is_ok());
        }
    }

    #[test]
    fn the_audit_log_reader_takes_any_file(lines in proptest::collection::vec("[ -~]{0,120}", 0..6)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let _ = sotto_server::warrant::audit::verify(&path);
        if let Ok(entries) = sotto_server::warrant::audit::entries(&path) {
            let _ = sotto_server::warrant::audit::transparency(&entries);
        }
    }
}
