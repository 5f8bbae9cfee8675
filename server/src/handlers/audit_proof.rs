//! `AuditProof`: the consistency proof between two sizes of the transparency
//! log, and the relay's latest signed head. Hashes only, so served to anyone:
//! it is how an investigator checks that a receipt's head is still in a head
//! published later. The proof is checked against both signed roots, so a
//! relay that rewrote its log cannot make one.

use sotto_proto::v1::{AuditProof, Consistency, response};

use super::{Handled, RequestError};
use crate::state::RelayState;

pub fn handle(state: &RelayState, r: AuditProof) -> Handled {
    let log = state
        .warrants
        .audit_log()
        .map_err(|_| RequestError::new(sotto_proto::v1::ErrorCode::Internal, "the relay's transparency log is not the one it signed: it gives no proof until its operator restores it"))?;
    let proof = log
        .consistency(r.from_size, r.to_size)
        .map_err(|e| RequestError::bad_request(format!("no consistency proof: {e}")))?;
    Ok(response::Kind::Consistency(Consistency {
        proof: proof.iter().map(|h| h.to_vec().into()).collect(),
        head: Some(log.head().to_proto()),
    }))
}
