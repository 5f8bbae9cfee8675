//! `Register`: binds a free username to an identity key. The registrant proves
//! it holds the key by signing the login transcript; success also logs in.

use ed25519_dalek::VerifyingKey;
use sotto_proto::v1::{ErrorCode, Register, Registered, response};
use tracing::info;

use super::login::{take_challenge, verify_login};
use super::{Handled, RequestError};
use crate::accounts::Registration;
use crate::session::Session;
use crate::state::RelayState;

pub async fn handle(state: &RelayState, session: &Session, register: Register) -> Handled {
    sotto_proto::names::validate_new_username(&register.username).map_err(|e| {
        RequestError::new(ErrorCode::InvalidUsername, format!("invalid username: {e}"))
    })?;
    let nonce = take_challenge(session)?;
    let key: [u8; 32] = register
        .identity_key
        .as_ref()
        .try_into()
        .map_err(|_| RequestError::bad_request("an identity key is 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&key)
        .map_err(|_| RequestError::bad_request("the identity key is not a valid Ed25519 key"))?;
    verify_login(
        session,
        &key,
        &register.username,
        &nonce,
        &register.signature,
    )?;
    // Counted only for a registration that proved its key: garbage
    // cannot use up an address's (or a NAT's) allowance.
    if !state.quotas.register(session.remote.ip()) {
        return Err(RequestError::limited(
            "registrations",
            "too many accounts were made from this address; try again in an hour",
        ));
    }
    // A name with a history but no account record (an operator deleted
    // the record, or on a cluster the stream holding it): registering it
    // again would hand that history to whoever asks first.
    if state.archive.has_history(&register.username)?
        && state.accounts.get(&register.username)?.is_none()
    {
        tracing::warn!(
            connection = session.id,
            "a registration was refused: the name has a history but no account record"
        );
        return Err(RequestError::new(
            ErrorCode::UsernameTaken,
            format!("the username {} is taken", register.username),
        ));
    }
    match state.accounts.register(&register.username, &key)? {
        Registration::Taken => Err(RequestError::new(
            ErrorCode::UsernameTaken,
            format!("the username {} is taken", register.username),
        )),
        Registration::Created => {
            state.writer.durable().await?;
            info!(connection = session.id, "account registered");
            session.logged_in(register.username, &state.config);
            Ok(response::Kind::Registered(Registered {}))
        }
    }
}
