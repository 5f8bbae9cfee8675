//! `DeliveryStatus`: which of the asker's own normal messages are delivered,
//! for a sender who was away when their recipients acknowledged them. The
//! rule, and why it answers about the asker's own messages only, is in
//! [`crate::delivery`].

use sotto_proto::v1::{DeliveryReport, DeliveryStatus, ErrorCode, response};

use super::{Handled, RequestError};
use crate::delivery;
use crate::state::RelayState;

pub fn handle(state: &RelayState, user: &str, ask: DeliveryStatus) -> Handled {
    if ask.ids.len() > sotto_proto::MAX_DELIVERY_QUERY {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!(
                "ask about at most {} messages at once",
                sotto_proto::MAX_DELIVERY_QUERY
            ),
        ));
    }
    if !state.quotas.delivery_question(user) {
        return Err(RequestError::limited(
            "delivery_questions",
            format!(
                "at most {} delivery questions a minute; ask again in a minute",
                crate::quotas::DELIVERY_QUESTIONS_PER_MINUTE
            ),
        ));
    }
    let delivered = delivery::status(&state.archive, &state.groups, user, &ask.ids)?;
    Ok(response::Kind::DeliveryReport(DeliveryReport { delivered }))
}
