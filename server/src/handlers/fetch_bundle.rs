//! `FetchBundle`: a prekey bundle to start a secret chat with a user. Each
//! one-time prekey, curve or ML-KEM-1024, goes out once (flushed before the
//! answer, so a crash cannot hand it out twice); its owner is told when few
//! are left.
//!
//! Nobody is refused a bundle because others took many: past the target's
//! rate, or for a requester who already took one of the target's one-time
//! prekeys today, the bundle goes out with the signed prekey and the
//! last-resort PQ prekey only.

use sotto_proto::v1::{ErrorCode, FetchBundle, Push, push, response};

use super::{Handled, RequestError, lookup, valid_name};
use crate::session::Session;

use crate::state::RelayState;

pub async fn handle(
    state: &RelayState,
    session: &Session,
    requester: &str,
    fetch: FetchBundle,
) -> Handled {
    if !session.bundles.allow() {
        return Err(RequestError::limited(
            "bundles_per_connection",
            "too many prekey bundles taken on this connection; wait a minute",
        ));
    }
    valid_name("username", &fetch.user)?;
    let account = lookup(state, requester, &fetch.user)?;
    // Once a day per pair (on a cluster, at all its nodes together), and
    // then within the target's rate: a pair refused spends none of it.
    let claimed = !state.quotas.took_today(requester, &fetch.user)
        && state
            .prekeys
            .claim_first_contact(requester, &fetch.user)
            .await?;
    let with_one_time = claimed && state.quotas.target_rate(&fetch.user);
    let handed = state
        .prekeys
        .take_bundle(&fetch.user, &account.identity_key, with_one_time)
        .await?
        .ok_or_else(|| {
            RequestError::new(
                ErrorCode::NoPrekeys,
                format!("{} has not published keys for secret chats yet", fetch.user),
            )
        })?;
    if claimed
        && !handed.took_one_time
        && let Err(e) = state
            .prekeys
            .release_first_contact(requester, &fetch.user)
            .await
    {
        tracing::warn!(error = %e, "a claim on a one-time prekey was not given back");
    }
    if handed.took_one_time {
        state.quotas.took_one_time_prekey(requester, &fetch.user);
        state.writer.durable().await?;
        if handed.left.low() {
            state.hub.push(
                &fetch.user,
                &Push {
                    kind: Some(push::Kind::PrekeysLow(handed.left.prekeys_low())),
                },
            );
        }
    }
    Ok(response::Kind::PrekeyBundle(handed.bundle))
}
