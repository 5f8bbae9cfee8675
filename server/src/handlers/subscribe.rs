//! `Subscribe`: the answer stream stays open, and the relay writes `Push`
//! frames on it after the `Subscribed` answer for as long as the connection lives.

use sotto_proto::frame;
use sotto_proto::v1::{ErrorCode, Response, Subscribed, push, response};
use tracing::debug;

use super::RequestError;
use crate::session::Session;
use crate::state::RelayState;

/// Answers a subscription on `send` and then streams pushes on it.
pub async fn serve(state: &RelayState, session: &Session, mut send: quinn::SendStream) {
    let answer: Result<String, RequestError> = {
        let mut s = session.lock();
        match (s.user.clone(), s.subscribed) {
            (None, _) => Err(RequestError::new(
                ErrorCode::NotLoggedIn,
                "log in first: this request needs an account",
            )),
            (Some(_), true) => Err(RequestError::bad_request(
                "this connection is subscribed already",
            )),
            (Some(user), false) => {
                s.subscribed = true;
                Ok(user)
            }
        }
    };
    let user = match answer {
        Ok(user) => user,
        Err(e) => {
            if frame::write_frame(&mut send, &Response::from(e))
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
            return;
        }
    };
    let Some(mut pushes) = state.hub.subscribe(&user, session.id) else {
        session.lock().subscribed = false;
        state.metrics.refused("subscriptions");
        let refused = RequestError::limited(
            "subscriptions",
            format!(
                "this account has {} connections receiving messages already; close one first",
                state.config.limits.subscriptions_per_account
            ),
        );
        if frame::write_frame(&mut send, &Response::from(refused))
            .await
            .is_ok()
        {
            let _ = send.finish();
        }
        return;
    };
    // On a cluster: once answered, pushes from the other relay nodes arrive
    // too (what came before is in the inbox, fetched after this answer).
    state.hub.settled().await;
    let subscribed = Response {
        kind: Some(response::Kind::Subscribed(Subscribed {})),
        receipt: None,
    };
    if frame::write_frame(&mut send, &subscribed).await.is_err() {
        state.hub.unsubscribe(&user, session.id);
        return;
    }
    while let Some(push) = pushes.recv().await {
        if let Err(e) = frame::write_frame(&mut send, &push).await {
            debug!(connection = session.id, error = %e, "push stream closed");
            break;
        }
        let mode = match push.kind {
            Some(push::Kind::Normal(_)) => "normal",
            Some(push::Kind::Secret(_)) => "secret",
            _ => continue,
        };
        crate::metrics::Metrics::count(&state.metrics.deliveries, "mode", mode);
    }
    state.hub.unsubscribe(&user, session.id);
}
