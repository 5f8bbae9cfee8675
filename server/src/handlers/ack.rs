//! `Ack`: the client has what it fetched; move the account's delivery cursor.

use sotto_proto::v1::{Ack, Acked, response};

use super::Handled;
use crate::relay::RelayState;

pub async fn handle(state: &RelayState, user: &str, ack: Ack) -> Handled {
    if ack.normal_upto > 0 {
        state.archive.ack(user, ack.normal_upto)?;
    }
    state.commit.durable().await?;
    Ok(response::Kind::Acked(Acked {}))
}
