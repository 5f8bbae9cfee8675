//! `FetchBundle`: a prekey bundle to start a secret chat with a user. Each
//! one-time prekey goes out once (flushed before the answer, so a crash cannot
//! hand it out twice); its owner is told when few are left.

use sotto_proto::v1::{ErrorCode, FetchBundle, PrekeysLow, Push, push, response};

use super::{Handled, RequestError, valid_name};
use crate::prekeys::LOW_WATER;
use crate::ratelimit::RateLimiter;
use crate::session::Session;

use crate::state::RelayState;

pub async fn handle(state: &RelayState, session: &Session, fetch: FetchBundle) -> Handled {
    if !session.bundles.allow() {
        return Err(RequestError::new(
            ErrorCode::RateLimited,
            "too many prekey bundles taken on this connection; wait a minute",
        ));
    }
    valid_name("username", &fetch.user)?;
    let allowed = state
        .bundle_limiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(fetch.user.clone())
        .or_insert_with(|| RateLimiter::per_minute(state.config.prekey_bundles_per_minute))
        .allow();
    if !allowed {
        return Err(RequestError::new(
            ErrorCode::RateLimited,
            format!(
                "{}'s prekeys were asked for too often; try again in a minute",
                fetch.user
            ),
        ));
    }
    let account = state.accounts.get(&fetch.user)?.ok_or_else(|| {
        RequestError::new(
            ErrorCode::UnknownUser,
            format!("no account named {}", fetch.user),
        )
    })?;
    let (bundle, left) = state
        .prekeys
        .take_bundle(&fetch.user, &account.identity_key)?
        .ok_or_else(|| {
            RequestError::new(
                ErrorCode::NoPrekeys,
                format!("{} has not published keys for secret chats yet", fetch.user),
            )
        })?;
    state.writer.durable().await?;
    if left < LOW_WATER {
        state.hub.push(
            &fetch.user,
            &Push {
                kind: Some(push::Kind::PrekeysLow(PrekeysLow {
                    remaining: left as u32,
                })),
            },
        );
    }
    Ok(response::Kind::PrekeyBundle(bundle))
}
