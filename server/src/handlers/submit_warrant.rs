//! `SubmitWarrant`: an investigator's signed warrant in, its disclosure out.
//! The warrant desk owns every rule and the audit entry; this only writes the
//! answer: each part of the disclosure as its own `Response` frame, in order,
//! on the request's stream (or one error frame), the first frame carrying the
//! receipt of its audit entry, then finishes the stream.

use sotto_proto::frame;
use sotto_proto::v1::{ErrorCode, Response, SubmitWarrant, response};

use crate::state::RelayState;

pub async fn serve(state: &RelayState, mut send: quinn::SendStream, submit: SubmitWarrant) {
    let answer = state.warrants.submit(submit.warrant).await;
    let decided = answer.outcome;
    state.metrics.warrant_request("warrant", decided.is_ok());
    let mut answers: Vec<Response> = match decided {
        Ok(parts) => parts
            .into_iter()
            .map(|part| Response {
                kind: Some(response::Kind::Disclosure(part)),
                receipt: None,
            })
            .collect(),
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
