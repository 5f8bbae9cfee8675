//! `AuditProof`: the consistency proof between two sizes of the transparency
//! log, and the relay's latest signed head. Hashes only, so served to anyone:
//! it is how an investigator checks that a receipt's head is still in a head
//! published later. The proof is checked against both signed roots, so a
//! relay that rewrote its log cannot make one.
//!
//! Served before login, so limited per connection and per address; the proof
//! is made on a blocking thread, off the connections' workers (it takes the
//! log's lock, which an append holds while it syncs).

use std::sync::Arc;

use sotto_proto::v1::{AuditProof, Consistency, ErrorCode, response};

use super::{Handled, RequestError};
use crate::session::Session;
use crate::state::RelayState;

pub async fn handle(state: &Arc<RelayState>, session: &Session, r: AuditProof) -> Handled {
    if !session.audit_proofs.allow() || !state.quotas.audit_proof(session.remote.ip()) {
        return Err(RequestError::limited(
            "audit_proofs",
            "too many consistency proofs asked for: wait a minute",
        ));
    }
    let log = state.warrants.audit_log().cloned().map_err(|why| {
        RequestError::new(
            ErrorCode::Internal,
            match why == crate::warrant::NOT_THE_DESK {
                true => crate::warrant::NOT_THE_DESK,
                false => "the relay's transparency log is not the one it signed: it gives no proof until its operator restores it",
            },
        )
    })?;
    let (proof, head) =
        tokio::task::spawn_blocking(move || (log.consistency(r.from_size, r.to_size), log.head()))
            .await
            .map_err(|_| {
                RequestError::new(
                    ErrorCode::Internal,
                    "the relay could not complete the request; try again",
                )
            })?;
    let proof =
        proof.map_err(|e| RequestError::bad_request(format!("no consistency proof: {e}")))?;
    Ok(response::Kind::Consistency(Consistency {
        proof: proof.iter().map(|h| h.to_vec().into()).collect(),
        head: Some(head.to_proto()),
    }))
}
