//! Every request kind through the relay's dispatcher, on the relay's real
//! state (store, writer thread, warrant desk) without QUIC: the first byte
//! picks the session (logged in as one of the harness's accounts, or
//! nobody), the rest is a run of frames as a connection would send them.
//!
//! Besides never panicking, a session nobody logged in on must never be
//! served anything that needs an account.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sotto_proto::v1::{self, response};
use sotto_server::fuzzing::{Harness, USERS};

/// The harness, made again now and then so that its store stays small.
struct Relay {
    harness: Option<Harness>,
    runs: u32,
    _dir: Option<tempfile::TempDir>,
}

static RELAY: Mutex<Relay> = Mutex::new(Relay {
    harness: None,
    runs: 0,
    _dir: None,
});

const RUNS_PER_HARNESS: u32 = 200_000;

fn fresh() -> (Harness, tempfile::TempDir) {
    // In memory where the system has it: a store's flushes cost nothing there.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let harness = Harness::new(&dir.path().join("relay")).expect("the harness starts");
    (harness, dir)
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, mut rest)) = data.split_first() else {
        return;
    };
    let mut relay = RELAY.lock().unwrap_or_else(|p| p.into_inner());
    if relay.harness.is_none() || relay.runs >= RUNS_PER_HARNESS {
        relay.harness = None;
        relay._dir = None;
        let (harness, dir) = fresh();
        relay.harness = Some(harness);
        relay._dir = Some(dir);
        relay.runs = 0;
    }
    relay.runs += 1;
    let harness = relay.harness.as_ref().expect("made above");
    let user = usize::from(who) % (USERS.len() + 1);
    let logged_in = user < USERS.len();
    let session = harness.session(logged_in.then_some(user));
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let body = &rest[4..];
        let (frame, next) = body.split_at(len.min(body.len()));
        rest = next;
        let Ok(request) = v1::Request::decode(frame) else {
            continue;
        };
        for answer in harness.dispatch(&session, request) {
            let kind = answer.kind.expect("every answer says what it is");
            if !logged_in {
                use response::Kind::*;
                assert!(
                    !matches!(
                        kind,
                        Stored(_)
                            | GroupCreated(_)
                            | Batch(_)
                            | Acked(_)
                            | PrekeysStored(_)
                            | PrekeyBundle(_)
                            | IdentityKey(_)
                            | SecretQueued(_)
                            | Subscribed(_)
                    ),
                    "served without a login: {kind:?}"
                );
            }
        }
    }
});
