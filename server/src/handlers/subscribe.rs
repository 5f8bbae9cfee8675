//! `Subscribe`: the relay opens one unidirectional stream and pushes deliveries
//! on it while the connection lives.

use sotto_proto::frame;
use sotto_proto::v1::{ErrorCode, Subscribed, response};
use tracing::debug;

use super::{Handled, RequestError};
use crate::connection::Session;
use crate::relay::RelayState;

pub async fn handle(state: &RelayState, session: &Session, user: &str) -> Handled {
    {
        let mut s = session.lock();
        if s.subscribed {
            return Ok(response::Kind::Subscribed(Subscribed {}));
        }
        s.subscribed = true;
    }
    let mut stream = session.conn.open_uni().await.map_err(|_| {
        RequestError::new(ErrorCode::Internal, "cannot open the push stream on this connection")
    })?;
    let mut pushes = state.hub.subscribe(user, session.id);
    let connection = session.id;
    tokio::spawn(async move {
        while let Some(push) = pushes.recv().await {
            if let Err(e) = frame::write_frame(&mut stream, &push).await {
                debug!(connection, error = %e, "push stream closed");
                break;
            }
        }
    });
    Ok(response::Kind::Subscribed(Subscribed {}))
}
