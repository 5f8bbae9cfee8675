//! `SubmitWarrant`: an investigator's signed warrant in, its disclosure out.
//! The warrant desk owns every rule and the audit entry; this only writes the
//! answer: each part of the disclosure as its own `Response` frame, in order,
//! on the request's stream (or one error frame), then finishes the stream.

use sotto_proto::frame;
use sotto_proto::v1::{ErrorCode, Response, SubmitWarrant, response};

use crate::state::RelayState;

pub async fn serve(state: &RelayState, mut send: quinn::SendStream, submit: SubmitWarrant) {
    let decided = state.warrants.submit(submit.warrant).await;
    state.metrics.warrant_request("warrant", decided.is_ok());
    let answers: Vec<Response> = match decided {
        Ok(parts) => parts
            .into_iter()
            .map(|part| Response {
                kind: Some(response::Kind::Disclosure(part)),
                receipt: None,
            })
            .collect(),
        Err(e) => vec![super::desk_error(e, ErrorCode::WarrantRefused).into()],
    };
    for answer in &answers {
        if frame::write_frame(&mut send, answer).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}
