//! A relay without QUIC, for fuzzing the dispatcher: the same state a running
//! relay has (store, writer thread, warrant desk) over a data directory of
//! its own, and sessions that stand for connections. Each request goes
//! through [`crate::handlers::dispatch`] as a connection would send it (a
//! warrant through the desk, as the connection does).
//!
//! Not part of the relay's interface: the fuzz targets in `tests/fuzz/` use it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use sotto_proto::v1::{self, Response, request, response};

use crate::config::RelayConfig;
use crate::session::{Exporter, Session};
use crate::state::RelayState;
use crate::{datadir, handlers};

/// The accounts every harness has, logged in on sessions that ask for them.
pub const USERS: [&str; 3] = ["ann", "bob", "cyd"];

/// What a session's TLS exporter is taken to be.
pub const EXPORTER: Exporter = [7; sotto_proto::LOGIN_EXPORTER_LEN];

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    state: Option<Arc<RelayState>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// The identity keys of [`USERS`], in order.
    pub keys: Vec<SigningKey>,
    _lock: datadir::DirLock,
}

impl Harness {
    /// A relay over the data directory `root` (made if new), with limits
    /// high enough that a fuzzer meets the handlers rather than the limits,
    /// and the accounts of [`USERS`].
    pub fn new(root: &Path) -> Result<Self> {
        Self::wrapping(root, |store| store)
    }

    /// As [`Harness::new`], over the data directory's store as `wrap` makes it
    /// (a test double around it, say).
    pub(crate) fn wrapping(
        root: &Path,
        wrap: impl FnOnce(Arc<dyn crate::store::Store>) -> Arc<dyn crate::store::Store>,
    ) -> Result<Self> {
        let mut config = RelayConfig::default();
        config.limits.sends_per_minute = u32::MAX;
        config.limits.lookups_per_account_per_day = u32::MAX;
        config.limits.registrations_per_address_per_hour = u32::MAX;
        config.prekey_bundles_per_minute = u32::MAX;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let opened = datadir::open(root, &config)?;
        let (state, writer_thread) = crate::relay::assemble(
            root,
            config,
            &crate::Clock::system(),
            wrap(opened.store),
            &opened.sealer,
            &opened.disclosure_key,
            &opened.audit_key,
            None,
        )?;
        let mut keys = Vec::new();
        for (n, user) in USERS.iter().enumerate() {
            let key = SigningKey::from_bytes(&[n as u8 + 1; 32]);
            state.accounts.register(user, &key.verifying_key())?;
            keys.push(key);
        }
        runtime
            .block_on(state.writer.durable())
            .context("the accounts are not durable")?;
        Ok(Harness {
            runtime,
            state: Some(state),
            writer_thread: Some(writer_thread),
            keys,
            _lock: opened.lock,
        })
    }

    pub(crate) fn state(&self) -> &Arc<RelayState> {
        self.state.as_ref().expect("the state lives until drop")
    }

    /// A new session: logged in as `USERS[n]`, or nobody.
    pub fn session(&self, user: Option<usize>) -> Session {
        let id = self.state().next_connection_id();
        let remote = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let session = Session::detached(id, remote, Some(EXPORTER));
        if let Some(name) = user.and_then(|n| USERS.get(n)) {
            session.logged_in((*name).to_owned(), &self.state().config);
        }
        session
    }

    /// What the relay answers `request` on `session`: one response, or
    /// several for a warrant's disclosure.
    pub fn dispatch(&self, session: &Session, request: v1::Request) -> Vec<Response> {
        let state = self.state();
        self.runtime.block_on(async {
            match request.kind {
                Some(request::Kind::SubmitWarrant(submit)) => {
                    warrant_frames(state.warrants.submit(submit.warrant).await)
                }
                Some(request::Kind::Collect(collect)) => warrant_frames(
                    state
                        .warrants
                        .collect(collect.warrant, collect.delivery)
                        .await,
                ),
                kind => vec![handlers::dispatch(state, session, v1::Request { kind }).await],
            }
        })
    }
}

/// A warrant request's answer as the frames a connection writes.
fn warrant_frames(answer: crate::warrant::Answer<crate::warrant::WarrantAnswer>) -> Vec<Response> {
    use crate::warrant::WarrantAnswer;
    let response = |kind| Response {
        kind: Some(kind),
        receipt: None,
    };
    match answer.outcome {
        Ok(WarrantAnswer::Disclosed(parts)) => parts
            .into_iter()
            .map(|part| response(response::Kind::Disclosure(part)))
            .collect(),
        Ok(WarrantAnswer::Pending(p)) => vec![response(response::Kind::PendingReview(p))],
        Err(e) => vec![handlers::desk_error(e, v1::ErrorCode::WarrantRefused).into()],
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.state.take());
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_proto::v1::{Fetch, SendNormal, send_normal};

    #[test]
    fn requests_reach_the_handlers_and_get_their_answers() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::new(dir.path()).unwrap();
        let ann = harness.session(Some(0));
        let send = v1::Request {
            kind: Some(request::Kind::SendNormal(SendNormal {
                client_id: vec![1; 16].into(),
                to: Some(send_normal::To::User("bob".into())),
                text: "hello".into(),
            })),
        };
        let answer = harness.dispatch(&ann, send.clone());
        assert!(
            matches!(answer[0].kind, Some(response::Kind::Stored(_))),
            "{answer:?}"
        );
        // Nobody logged in: refused.
        let nobody = harness.session(None);
        let answer = harness.dispatch(&nobody, send);
        assert!(matches!(answer[0].kind, Some(response::Kind::Error(_))));
        let bob = harness.session(Some(1));
        let fetch = v1::Request {
            kind: Some(request::Kind::Fetch(Fetch { limit: 10 })),
        };
        match &harness.dispatch(&bob, fetch)[0].kind {
            Some(response::Kind::Batch(b)) => assert_eq!(b.normal[0].text, "hello"),
            other => panic!("{other:?}"),
        }
        // A second harness over the same directory finds it in use.
        assert!(Harness::new(dir.path()).is_err());
    }
}
