//! One connection's state: who logged in on it, its latest login challenge,
//! whether it subscribed, and its own limits. Handlers read and change it;
//! the connection task makes one per connection.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use crate::ratelimit::RateLimiter;

/// Keying material of a connection's TLS session (what login signatures cover).
pub type Exporter = [u8; sotto_proto::LOGIN_EXPORTER_LEN];

/// Per-connection login state.
pub struct Session {
    pub id: u64,
    /// The QUIC connection, whose limits a login lifts; none when requests
    /// are handed to the dispatcher directly (the fuzzing harness).
    conn: Option<quinn::Connection>,
    pub remote: SocketAddr,
    exporter: Option<Exporter>,
    pub(crate) state: Mutex<SessionState>,
    /// Login and registration attempts (challenges) this connection may make.
    pub logins: RateLimiter,
    /// Prekey bundles this connection may take (each one uses up someone's one-time key).
    pub bundles: RateLimiter,
    /// Consistency proofs of the transparency log this connection may ask for.
    pub audit_proofs: RateLimiter,
}

/// Challenges one connection may ask for per minute.
pub(crate) const LOGINS_PER_MINUTE: u32 = 10;
/// Prekey bundles one connection may take per minute.
pub(crate) const BUNDLES_PER_MINUTE: u32 = 60;
/// Consistency proofs one connection may ask for per minute (an investigator
/// checking kept receipts asks one for each).
pub(crate) const AUDIT_PROOFS_PER_MINUTE: u32 = 120;

#[derive(Default)]
pub struct SessionState {
    /// The logged-in account, once a login or registration succeeded.
    pub user: Option<String>,
    /// The latest challenge nonce; a login consumes it.
    pub nonce: Option<[u8; sotto_proto::NONCE_LEN]>,
    pub subscribed: bool,
}

impl Session {
    /// The session of QUIC connection `conn`.
    pub fn new(id: u64, conn: &quinn::Connection) -> Self {
        let mut exporter = [0u8; sotto_proto::LOGIN_EXPORTER_LEN];
        let exporter = conn
            .export_keying_material(&mut exporter, sotto_proto::LOGIN_EXPORTER_LABEL, b"")
            .ok()
            .map(|()| exporter);
        Session {
            conn: Some(conn.clone()),
            ..Self::detached(id, conn.remote_address(), exporter)
        }
    }

    /// A session with no connection behind it: `remote` and `exporter`
    /// stand for what a connection would have.
    pub fn detached(id: u64, remote: SocketAddr, exporter: Option<Exporter>) -> Self {
        Session {
            id,
            conn: None,
            remote,
            exporter,
            state: Mutex::new(SessionState::default()),
            logins: RateLimiter::per_minute(LOGINS_PER_MINUTE),
            bundles: RateLimiter::per_minute(BUNDLES_PER_MINUTE),
            audit_proofs: RateLimiter::per_minute(AUDIT_PROOFS_PER_MINUTE),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn user(&self) -> Option<String> {
        self.lock().user.clone()
    }

    /// Marks the connection as `user`'s, and lifts the limits of a
    /// connection nobody has logged in on: more streams, and room for
    /// full-size frames on each.
    pub fn logged_in(&self, user: String, config: &crate::config::RelayConfig) {
        self.lock().user = Some(user);
        if let Some(conn) = &self.conn {
            crate::tls::lift_pre_login_limits(conn, config);
        }
    }

    /// Keying material of this connection's TLS session, which login signatures cover.
    pub fn exporter(&self) -> Option<Exporter> {
        self.exporter
    }
}
