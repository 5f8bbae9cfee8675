//! `Unmask`: reveal pseudonyms of a granted warrant's disclosure, on a request
//! signed by the authority it was granted to, sealed to the warrant's delivery
//! key. The warrant desk owns every rule and the audit entry; the answer,
//! granted or refused, carries the entry's receipt.

use sotto_proto::v1::{ErrorCode, Receipt, Unmask, response};

use super::Handled;
use crate::state::RelayState;

pub async fn handle(state: &RelayState, unmask: Unmask) -> (Handled, Option<Receipt>) {
    let answer = state.warrants.unmask(unmask.request).await;
    state.metrics.warrant_request(
        "unmask",
        if answer.outcome.is_ok() {
            "granted"
        } else {
            "refused"
        },
    );
    let handled = answer
        .outcome
        .map(response::Kind::Unmasked)
        .map_err(|e| super::desk_error(e, ErrorCode::UnmaskRefused));
    (handled, answer.receipt)
}
