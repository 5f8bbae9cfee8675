//! `FetchIdentity`: a user's registered identity key, for safety numbers and
//! for checking a contact's key, without taking a one-time prekey.

use sotto_proto::v1::{FetchIdentity, IdentityKey, response};

use super::{Handled, lookup, valid_name};
use crate::state::RelayState;

pub fn handle(state: &RelayState, requester: &str, fetch: FetchIdentity) -> Handled {
    valid_name("username", &fetch.user)?;
    let account = lookup(state, requester, &fetch.user)?;
    Ok(response::Kind::IdentityKey(IdentityKey {
        user: account.username,
        identity_key: account.identity_key.to_bytes().to_vec().into(),
    }))
}
