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
    let account = state.accounts.get(&login.username)?.ok_or_else(|| {
        RequestError::new(
            ErrorCode::UnknownUser,
            format!("no account named {}", login.username),
        )
    })?;
    verify_login(
        session,
        &account.identity_key,
        &login.username,
        &nonce,
        &login.signature,
    )?;
    session.lock().user = Some(account.username);
    Ok(response::Kind::LoggedIn(LoggedIn {}))
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
    let bad = || {
        RequestError::new(
            ErrorCode::BadSignature,
            "the login signature does not verify for this account",
        )
    };
    let signature = Signature::from_slice(signature).map_err(|_| bad())?;
    key.verify_strict(
        &sotto_proto::transcript::login(username, nonce, &exporter),
        &signature,
    )
    .map_err(|_| bad())
}
