//! `Ack`: the client has safely kept what it fetched. Moves the account's
//! delivery cursor, deletes the acknowledged secret envelopes for good, and
//! then tells the senders of the normal messages it moved past, if they are
//! connected, which of theirs are delivered now (see [`crate::delivery`]).

use std::sync::Arc;

use sotto_proto::v1::{Ack, Acked, ErrorCode, Push, push, response};
use tracing::warn;

use super::{Handled, RequestError};
use crate::RelayError;
use crate::delivery::{self, ACK_READ_LIMIT};
use crate::state::RelayState;

pub async fn handle(state: &Arc<RelayState>, user: &str, ack: Ack) -> Handled {
    if ack.secret_ids.len() > sotto_proto::MAX_FETCH as usize {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!(
                "acknowledge at most {} envelopes at once",
                sotto_proto::MAX_FETCH
            ),
        ));
    }
    // The writes wait for the store (behind a flush, on a slow disk for
    // seconds): on a blocking thread, so that the connections' workers go
    // on answering everyone else, and keeping their connections alive.
    let before = {
        let (state, user) = (state.clone(), user.to_owned());
        tokio::task::spawn_blocking(move || -> Result<Option<u64>, RelayError> {
            let mut before = None;
            if ack.normal_upto > 0 {
                before = Some(state.archive.acknowledged(&user)?);
                state.archive.ack(&user, ack.normal_upto)?;
            }
            state.secret_queue.acknowledge(&user, &ack.secret_ids)?;
            Ok(before)
        })
        .await
        .map_err(|_| RelayError::Corrupt("an acknowledgement's write panicked"))??
    };
    state.writer.durable().await?;
    if let Some(before) = before {
        // A courtesy on top of the acknowledgement, which stands: a sender
        // who is not told now learns it when they next ask. It reads the
        // records back: on a blocking thread, not in the way of the
        // connections; awaited, so its pushes go out before the answer.
        let (state, user) = (state.clone(), user.to_owned());
        let told = tokio::task::spawn_blocking(move || tell_senders(&state, &user, before)).await;
        match told {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "senders were not told of a delivery"),
            Err(e) => warn!(error = %e, "telling senders of a delivery failed"),
        }
    }
    Ok(response::Kind::Acked(Acked {}))
}

/// Pushes to each sender whose messages `user`'s cursor moved past since
/// `before` what is delivered now. Read after the move: with two
/// acknowledgements at once, each covers from the cursor it saw to the one
/// it left, so every step of the cursor is covered by one of them.
fn tell_senders(state: &RelayState, user: &str, before: u64) -> Result<(), RelayError> {
    let after = state.archive.acknowledged(user)?;
    let acked = state
        .archive
        .received_between(user, before, after, ACK_READ_LIMIT)?;
    for (sender, delivered) in delivery::on_ack(&state.archive, &state.groups, &acked)? {
        let push = Push {
            kind: Some(push::Kind::Delivered(delivered)),
        };
        state.hub.push(&sender, &push);
    }
    Ok(())
}
