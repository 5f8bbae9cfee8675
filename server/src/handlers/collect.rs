//! `Collect`: the disclosure of a warrant served before, fetched (again: the
//! same bytes), or that it is still held for the operators' review. Written
//! as `SubmitWarrant`'s answer is, frame by frame, with its receipt.

use sotto_proto::v1::Collect;

use crate::state::RelayState;

pub async fn serve(state: &RelayState, send: quinn::SendStream, collect: Collect) {
    let answer =
        super::off_the_workers(state.warrants.collect(collect.warrant, collect.delivery)).await;
    super::submit_warrant::write(state, send, "collect", answer).await;
}
