//! `SubmitWarrant`: an investigator's signed warrant in, a signed and encrypted
//! disclosure out. The warrant desk owns every rule and the audit entry.

use sotto_proto::v1::{ErrorCode, SubmitWarrant, response};

use super::Handled;
use crate::state::RelayState;

pub async fn handle(state: &RelayState, submit: SubmitWarrant) -> Handled {
    state
        .warrants
        .submit(submit.warrant)
        .await
        .map(response::Kind::Disclosure)
        .map_err(|e| super::desk_error(e, ErrorCode::WarrantRefused))
}
