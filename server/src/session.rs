//! One connection's state: who logged in on it, its latest login challenge,
//! whether it subscribed, and its own limits. Handlers read and change it;
//! the connection task makes one per connection.

use std::sync::{Mutex, MutexGuard};

use crate::ratelimit::RateLimiter;

/// Per-connection login state.
pub struct Session {
    pub id: u64,
    pub conn: quinn::Connection,
    pub(crate) state: Mutex<SessionState>,
    /// Login and registration attempts (challenges) this connection may make.
    pub logins: RateLimiter,
    /// Prekey bundles this connection may take (each one uses up someone's one-time key).
    pub bundles: RateLimiter,
}

/// Challenges one connection may ask for per minute.
pub(crate) const LOGINS_PER_MINUTE: u32 = 10;
/// Prekey bundles one connection may take per minute.
pub(crate) const BUNDLES_PER_MINUTE: u32 = 60;

#[derive(Default)]
pub struct SessionState {
    /// The logged-in account, once a login or registration succeeded.
    pub user: Option<String>,
    /// The latest challenge nonce; a login consumes it.
    pub nonce: Option<[u8; sotto_proto::NONCE_LEN]>,
    pub subscribed: bool,
}

impl Session {
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
        crate::tls::lift_pre_login_limits(&self.conn, config);
    }

    /// Keying material of this connection's TLS session, which login signatures cover.
    pub fn exporter(&self) -> Option<[u8; sotto_proto::LOGIN_EXPORTER_LEN]> {
        let mut out = [0u8; sotto_proto::LOGIN_EXPORTER_LEN];
        self.conn
            .export_keying_material(&mut out, sotto_proto::LOGIN_EXPORTER_LABEL, b"")
            .ok()?;
        Some(out)
    }
}
