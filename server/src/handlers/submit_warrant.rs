//! `SubmitWarrant`: an investigator's signed warrant in, its disclosure out
//! (or that it is held for the operators' review). The warrant desk owns
//! every rule and the audit entry; this only writes the answer: each part of
//! the disclosure as its own `Response` frame, in order, on the request's
//! stream (or one `PendingReview` or error frame), the first frame carrying
//! the receipt of its audit entry, then finishes the stream.

use sotto_proto::frame;
use sotto_proto::v1::{ErrorCode, Response, SubmitWarrant, response};

use crate::state::RelayState;
use crate::warrant::{Answer, WarrantAnswer};

pub async fn serve(state: &RelayState, send: quinn::SendStream, submit: SubmitWarrant) {
    let answer = super::off_the_workers(state.warrants.submit(submit.warrant)).await;
    write(state, send, "warrant", answer).await;
}

/// Writes a warrant request's answer as frames (see the module's comment).
pub(super) async fn write(
    state: &RelayState,
    mut send: quinn::SendStream,
    kind: &'static str,
    answer: Answer<WarrantAnswer>,
) {
    let decided = answer.outcome;
    let decision = match &decided {
        Ok(WarrantAnswer::Disclosed(_)) => "granted",
        Ok(WarrantAnswer::Pending(_)) => "pending",
        Err(_) => "refused",
    };
    state.metrics.warrant_request(kind, decision);
    let mut answers: Vec<Response> = match decided {
        Ok(WarrantAnswer::Disclosed(parts)) => parts
            .into_iter()
            .map(|part| Response {
                kind: Some(response::Kind::Disclosure(part)),
                receipt: None,
            })
            .collect(),
        Ok(WarrantAnswer::Pending(pending)) => vec![Response {
            kind: Some(response::Kind::PendingReview(pending)),
            receipt: None,
        }],
        Err(e) => vec![super::desk_error(e, ErrorCode::WarrantRefused).into()],
    };
    if let Some(first) = answers.first_mut() {
        first.receipt = answer.receipt;
    }
    for answer in &answers {
        if frame::write_frame(&mut send, answer).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}
