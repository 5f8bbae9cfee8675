//! `Login`: the client signs the latest challenge nonce together with this
//! connection's TLS exporter secret, so the signature is worthless elsewhere.

use ed25519_dalek::{Signature, VerifyingKey};
use sotto_proto::v1::{ErrorCode, LoggedIn, Login, response};

use super::{Handled, RequestError, valid_name};
use crate::session::Session;
use crate::state::RelayState;

pub fn handle(state: &RelayState, session: &Session, login: Login) -> Handled {
    valid_name("username", &login.username)?;
    let nonce = take_challenge(session)?;
    // An unknown name gets the same work and the same answer as a wrong
    // key: a login attempt does not tell whether the account exists.
    let account = state.accounts.get(&login.username)?;
    let key = account
        .as_ref()
        .map_or_else(nobody_s_key, |a| a.identity_key);
    verify_login(session, &key, &login.username, &nonce, &login.signature)?;
    let Some(account) = account else {
        return Err(bad_signature());
    };
    session.logged_in(account.username, &state.config);
    Ok(response::Kind::LoggedIn(LoggedIn {}))
}

/// The one answer to a failed login, whether or not the account exists.
fn bad_signature() -> RequestError {
    RequestError::new(
        ErrorCode::BadSignature,
        "the login was not accepted: no account by that name holds this key",
    )
}

/// A key nobody holds the secret of, checked in place of an unknown account's.
fn nobody_s_key() -> VerifyingKey {
    static KEY: std::sync::OnceLock<VerifyingKey> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| ed25519_dalek::SigningKey::generate(&mut rand::rng()).verifying_key())
}

/// Takes the pending challenge nonce; each one serves a single attempt.
pub(super) fn take_challenge(
    session: &Session,
) -> Result<[u8; sotto_proto::NONCE_LEN], RequestError> {
    let mut s = session.lock();
    if s.user.is_some() {
        return Err(RequestError::new(
            ErrorCode::AlreadyLoggedIn,
            "this connection is already logged in",
        ));
    }
    s.nonce.take().ok_or_else(|| {
        RequestError::new(
            ErrorCode::NoChallenge,
            "ask for a challenge before logging in",
        )
    })
}

/// Checks the login signature over the transcript bound to this connection.
pub(super) fn verify_login(
    session: &Session,
    key: &VerifyingKey,
    username: &str,
    nonce: &[u8],
    signature: &[u8],
) -> Result<(), RequestError> {
    let exporter = session.exporter().ok_or_else(|| {
        RequestError::new(
            ErrorCode::Internal,
            "this connection has no TLS secret to bind to",
        )
    })?;
    let bad = bad_signature;
    let signature = Signature::from_slice(signature).map_err(|_| bad())?;
    key.verify_strict(
        &sotto_proto::transcript::login(username, nonce, &exporter),
        &signature,
    )
    .map_err(|_| bad())
}
