//! `Ack`: the client has safely kept what it fetched. Moves the account's
//! delivery cursor, deletes the acknowledged secret envelopes (and warrant notices) for good, and
//! then tells the senders of the normal messages it moved past, if they are
//! connected, which of theirs are delivered now (see [`crate::delivery`]).

use sotto_proto::v1::{Ack, Acked, ErrorCode, Push, push, response};
use tracing::warn;

use super::{Handled, RequestError};
use crate::RelayError;
use crate::delivery;
use crate::state::RelayState;

pub async fn handle(state: &RelayState, user: &str, ack: Ack) -> Handled {
    if ack.secret_ids.len() > sotto_proto::MAX_FETCH as usize
        || ack.notice_ids.len() > sotto_proto::MAX_FETCH as usize
    {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!(
                "acknowledge at most {} envelopes (and notices) at once",
                sotto_proto::MAX_FETCH
            ),
        ));
    }
    // The writes wait for the store (behind a flush, on a slow disk for
    // seconds): dispatch runs this off the connections' workers.
    let mut before = None;
    if ack.normal_upto > 0 {
        before = Some(state.archive.acknowledged(user)?);
        state.archive.ack(user, ack.normal_upto)?;
    }
    state.secret_queue.acknowledge(user, &ack.secret_ids)?;
    state.notices.acknowledge(user, &ack.notice_ids)?;
    state.writer.durable().await?;
    if let Some(before) = before {
        // A courtesy on top of the acknowledgement, which stands: a sender
        // who is not told now learns it when they next ask. Its pushes go
        // out before the answer.
        if let Err(e) = tell_senders(state, user, before) {
            warn!(error = %e, "senders were not told of a delivery");
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
    for (sender, delivered) in delivery::on_ack(&state.archive, &state.groups, user, before, after)?
    {
        let push = Push {
            kind: Some(push::Kind::Delivered(delivered)),
        };
        state.hub.push(&sender, &push);
    }
    Ok(())
}
