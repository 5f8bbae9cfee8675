//! One task per QUIC connection: accept request streams, read one frame each,
//! hand it to [`crate::handlers::dispatch`], write the answer back.
//!
//! Invariant: nothing a peer sends can end the relay or another connection. A
//! frame over the limit or one that does not decode gets an error frame on its
//! own stream; the connection and everyone else carry on.

use std::sync::Arc;

use sotto_proto::frame::{self, FrameError};
use sotto_proto::v1::{ErrorCode, Request, request};
use tokio::task::JoinSet;
use tracing::debug;

use crate::admission::Admitted;
use crate::handlers::{self, RequestError};
use crate::metrics::Reading;
use crate::session::Session;
use crate::state::RelayState;

/// How long a peer may take to take an answer.
const ANSWER_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a handshake may take.
const HANDSHAKE_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves one incoming connection until it closes; its slot is freed then.
pub async fn serve(state: Arc<RelayState>, incoming: quinn::Incoming, mut slot: Admitted) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIME, incoming).await;
    slot.handshake_done();
    let conn = match handshake {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            debug!(error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            debug!("handshake did not finish in time");
            return;
        }
    };
    let session = Arc::new(Session::new(state.next_connection_id(), &conn));
    debug!(connection = session.id, remote = %conn.remote_address(), "connected");
    let mut requests = JoinSet::new();
    // Nobody logged in by then: the connection is closed (investigators'
    // requests need no login, and take a moment).
    let deadline = std::time::Duration::from_secs(state.config.limits.login_deadline_secs);
    let login_by = tokio::time::sleep(deadline);
    tokio::pin!(login_by);
    let mut login_checked = false;
    loop {
        tokio::select! {
            () = &mut login_by, if !login_checked => {
                login_checked = true;
                if session.user().is_none() {
                    if !requests.is_empty() {
                        // An investigator's request still being answered: look again later.
                        login_checked = false;
                        login_by.as_mut().reset(tokio::time::Instant::now() + deadline);
                        continue;
                    }
                    debug!(connection = session.id, "nobody logged in in time; closing");
                    conn.close(0u32.into(), b"log in sooner");
                    break;
                }
            }
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    // Boxed: the runtime copies a task's future whole as it
                    // moves through its stages, kilobytes at each request.
                    requests.spawn(Box::pin(serve_request(
                        state.clone(),
                        session.clone(),
                        send,
                        recv,
                    )));
                }
                Err(e) => {
                    debug!(connection = session.id, reason = %e, "connection closed");
                    break;
                }
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
        }
    }
    requests.shutdown().await;
    if let Some(user) = session.user() {
        state.hub.unsubscribe(&user, session.id);
    }
}

async fn serve_request(
    state: Arc<RelayState>,
    session: Arc<Session>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    // Before login only small frames (challenge, login, register, warrant
    // requests), and each must arrive whole in time: a stalled stream is
    // closed, not kept.
    let max = if session.user().is_some() {
        state.config.max_frame_bytes
    } else {
        state.config.limits.bytes_before_login as usize
    };
    let deadline = std::time::Duration::from_secs(state.config.limits.frame_read_secs);
    let mut reading = Reading::start(&state.metrics);
    let read = async {
        let Some(len) = frame::read_frame_len(&mut recv, max).await? else {
            return Ok(None);
        };
        reading.declared(len);
        frame::read_frame_body(&mut recv, len).await.map(Some)
    };
    let read = match tokio::time::timeout(deadline, read).await {
        Ok(read) => read,
        Err(_) => {
            debug!(
                connection = session.id,
                "a frame did not arrive in time; its stream is closed"
            );
            state.metrics.streams_closed_unfinished.inc();
            let _ = recv.stop(0u32.into());
            let _ = send.reset(0u32.into());
            return;
        }
    };
    drop(reading);
    let response = match read {
        Ok(None) => return,
        Ok(Some(body)) => match frame::decode::<Request>(&body) {
            Ok(Request {
                kind: Some(request::Kind::Subscribe(_)),
            }) => {
                // A subscription keeps its stream: pushes follow the answer.
                Box::pin(handlers::subscribe::serve(&state, &session, send)).await;
                return;
            }
            Ok(Request {
                kind: Some(request::Kind::SubmitWarrant(submit)),
            }) => {
                // A disclosure may take several frames.
                Box::pin(handlers::submit_warrant::serve(&state, send, submit)).await;
                return;
            }
            Ok(Request {
                kind: Some(request::Kind::Collect(collect)),
            }) => {
                Box::pin(handlers::collect::serve(&state, send, collect)).await;
                return;
            }
            Ok(request) => handlers::dispatch(&state, &session, request).await,
            Err(_) => RequestError::new(
                ErrorCode::BadFrame,
                "the request is not a valid sotto/1 message",
            )
            .into(),
        },
        Err(FrameError::TooLarge { len, max }) => {
            // Do not read the body: tell the peer to stop sending it.
            let _ = recv.stop(0u32.into());
            RequestError::new(
                ErrorCode::FrameTooLarge,
                format!("a frame of {len} bytes is over this relay's limit of {max} bytes"),
            )
            .into()
        }
        Err(FrameError::Malformed(_)) => RequestError::new(
            ErrorCode::BadFrame,
            "the request is not a valid sotto/1 message",
        )
        .into(),
        Err(e) => {
            debug!(connection = session.id, error = %e, "request stream failed");
            return;
        }
    };
    // A peer that never takes its answer (gives no flow-control credit)
    // does not keep it in the relay's memory for longer than this.
    let written = tokio::time::timeout(ANSWER_TIME, frame::write_frame(&mut send, &response)).await;
    match written {
        Ok(Ok(())) => {
            let _ = send.finish();
        }
        Ok(Err(_)) => {}
        Err(_) => {
            debug!(connection = session.id, "an answer was not taken in time");
            let _ = send.reset(0u32.into());
        }
    }
}
