//! `Fetch`: what arrived for this account and is not acknowledged yet: normal
//! messages from the inbox, secret envelopes from the secret queue.

use sotto_proto::v1::{Batch, Fetch, PrekeysLow, response};

use super::{Handled, normal_message};
use crate::prekeys::LOW_WATER;
use crate::relay::RelayState;

pub fn handle(state: &RelayState, user: &str, fetch: Fetch) -> Handled {
    let limit = fetch.limit.clamp(1, sotto_proto::MAX_FETCH) as usize;
    let (entries, more_normal) = state.archive.inbox(user, limit)?;
    let (secret, more_secret) = state.secret_queue.pending(user, limit)?;
    let left = state.prekeys.one_time_left(user)?;
    Ok(response::Kind::Batch(Batch {
        normal: entries
            .iter()
            .map(|e| normal_message(e.seq, &e.record))
            .collect(),
        secret,
        more: more_normal || more_secret,
        prekeys_low: (left < LOW_WATER).then_some(PrekeysLow {
            remaining: left as u32,
        }),
    }))
}
