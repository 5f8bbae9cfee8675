//! `Ack`: the client has safely kept what it fetched. Moves the account's
//! delivery cursor, and deletes the acknowledged secret envelopes for good.

use sotto_proto::v1::{Ack, Acked, ErrorCode, response};

use super::{Handled, RequestError};
use crate::state::RelayState;

pub async fn handle(state: &RelayState, user: &str, ack: Ack) -> Handled {
    if ack.secret_ids.len() > sotto_proto::MAX_FETCH as usize {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!(
                "acknowledge at most {} envelopes at once",
                sotto_proto::MAX_FETCH
            ),
        ));
    }
    if ack.normal_upto > 0 {
        state.archive.ack(user, ack.normal_upto)?;
    }
    state.secret_queue.acknowledge(user, &ack.secret_ids)?;
    state.writer.durable().await?;
    Ok(response::Kind::Acked(Acked {}))
}
