//! `UploadPrekeys`: a user publishes its signed prekey, last-resort ML-KEM-1024
//! prekey and one-time prekeys of both kinds. The relay checks they are
//! signed by the account's identity key, at most
//! [`PREKEY_UPLOADS_PER_MINUTE`](crate::quotas::PREKEY_UPLOADS_PER_MINUTE) a minute.

use sotto_proto::v1::{ErrorCode, PrekeysStored, UploadPrekeys, response};

use super::{Handled, RequestError};
use crate::prekeys::UploadRefused;
use crate::state::RelayState;

/// The most one-time prekeys one upload may carry.
const MAX_PER_UPLOAD: usize = 200;

pub async fn handle(state: &RelayState, user: &str, upload: UploadPrekeys) -> Handled {
    if !state.quotas.prekey_upload(user) {
        return Err(RequestError::limited(
            "prekey_uploads_per_minute",
            "too many prekey uploads from this account; wait a minute",
        ));
    }
    if upload.one_time.len() > MAX_PER_UPLOAD || upload.pq_one_time.len() > MAX_PER_UPLOAD {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_PER_UPLOAD} one-time prekeys of each kind per upload"),
        ));
    }
    let account = state.accounts.get(user)?.ok_or_else(|| {
        RequestError::new(ErrorCode::UnknownUser, "this account no longer exists")
    })?;
    match state
        .prekeys
        .upload(user, &account.identity_key, upload)
        .await?
    {
        Ok((count, pq_count)) => {
            state.writer.durable().await?;
            Ok(response::Kind::PrekeysStored(PrekeysStored {
                one_time_count: count as u32,
                pq_one_time_count: pq_count as u32,
            }))
        }
        Err(UploadRefused::BadSignature(what)) => Err(RequestError::new(
            ErrorCode::BadSignature,
            format!("{what} does not verify with your identity key"),
        )),
        Err(UploadRefused::Malformed(what)) => Err(RequestError::bad_request(what)),
    }
}
