//! `Unmask`: reveal pseudonyms of a granted warrant's disclosure, on a request
//! signed by the authority it was granted to, sealed to the warrant's delivery
//! key. The warrant desk owns every rule and the audit entry.

use sotto_proto::v1::{ErrorCode, Unmask, response};

use super::Handled;
use crate::state::RelayState;

pub async fn handle(state: &RelayState, unmask: Unmask) -> Handled {
    let decided = state.warrants.unmask(unmask.request).await;
    state.metrics.warrant_request("unmask", decided.is_ok());
    decided
        .map(response::Kind::Unmasked)
        .map_err(|e| super::desk_error(e, ErrorCode::UnmaskRefused))
}
