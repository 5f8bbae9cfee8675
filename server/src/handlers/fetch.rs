//! `Fetch`: what arrived for this account and is not acknowledged yet.

use sotto_proto::v1::{Batch, Fetch, response};

use super::{Handled, normal_message};
use crate::relay::RelayState;

pub fn handle(state: &RelayState, user: &str, fetch: Fetch) -> Handled {
    let limit = fetch.limit.clamp(1, sotto_proto::MAX_FETCH) as usize;
    let (entries, more) = state.archive.inbox(user, limit)?;
    Ok(response::Kind::Batch(Batch {
        normal: entries
            .iter()
            .map(|e| normal_message(e.seq, &e.record))
            .collect(),
        secret: Vec::new(),
        more,
        prekeys_low: None,
    }))
}
