//! `Challenge`: a fresh nonce for the next login or registration on this connection.

use rand::Rng;
use sotto_proto::v1::{Challenge, response};

use super::{Handled, RequestError};
use crate::session::Session;

pub fn handle(session: &Session) -> Handled {
    // Each login or registration attempt needs a challenge: this bounds guessing.
    if !session.logins.allow() {
        return Err(RequestError::limited(
            "login_attempts",
            "too many login attempts on this connection; wait a minute",
        ));
    }
    let mut nonce = [0u8; sotto_proto::NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    session.lock().nonce = Some(nonce);
    Ok(response::Kind::Challenge(Challenge {
        nonce: nonce.to_vec().into(),
    }))
}
