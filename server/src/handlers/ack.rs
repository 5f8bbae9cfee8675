//! `Ack`: the client has safely kept what it fetched. Moves the account's
//! delivery cursor, deletes the acknowledged secret envelopes (and warrant notices) for good, and
//! then tells the senders of the normal messages it moved past, if they are
//! connected, which of theirs are delivered now (see [`crate::delivery`]).

use std::sync::Arc;

use sotto_proto::v1::{Ack, Acked, ErrorCode, Push, push, response};
use tracing::warn;

use super::{Handled, RequestError};
use crate::RelayError;
use crate::delivery::{self, ACK_READ_LIMIT};
use crate::state::RelayState;

pub async fn handle(state: &Arc<RelayState>, user: &str, ack: Ack) -> Handled {
    if ack.secret_ids.len() > sotto_proto::MAX_FETCH as usize
        || ack.notice_ids.len() > sotto_proto::MAX_FETCH as usize
    {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!(
                "acknowledge at most {} envelopes (and notices) at once",
                sotto_proto::MAX_FETCH
            ),
        ));
    }
    // The writes wait for the store (behind a flush, on a slow disk for
    // seconds): on a blocking thread, so that the connections' workers go
    // on answering everyone else, and keeping their connections alive.
    let before = {
        let (state, user) = (state.clone(), user.to_owned());
        tokio::task::spawn_blocking(move || -> Result<Option<u64>, RelayError> {
            let mut before = None;
            if ack.normal_upto > 0 {
                before = Some(state.archive.acknowledged(&user)?);
                state.archive.ack(&user, ack.normal_upto)?;
            }
            state.secret_queue.acknowledge(&user, &ack.secret_ids)?;
            state.notices.acknowledge(&user, &ack.notice_ids)?;
            Ok(before)
        })
        .await
        .map_err(|_| RelayError::Corrupt("an acknowledgement's write panicked"))??
    };
    state.writer.durable().await?;
    if let Some(before) = before {
        // A courtesy on top of the acknowledgement, which stands: a sender
        // who is not told now learns it when they next ask. It reads the
        // records back: on a blocking thread, not in the way of the
        // connections; awaited, so its pushes go out before the answer.
        let (state, user) = (state.clone(), user.to_owned());
        let told = tokio::task::spawn_blocking(move || tell_senders(&state, &user, before)).await;
        match told {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "senders were not told of a delivery"),
            Err(e) => warn!(error = %e, "telling senders of a delivery failed"),
        }
    }
    Ok(response::Kind::Acked(Acked {}))
}

/// Pushes to each sender whose messages `user`'s cursor moved past since
/// `before` what is delivered now. Read after the move: with two
/// acknowledgements at once, each covers from the cursor it saw to the one
/// it left, so every step of the cursor is covered by one of them.
fn tell_senders(state: &RelayState, user: &str, before: u64) -> Result<(), RelayError> {
    let after = state.archive.acknowledged(user)?;
    let acked = state
        .archive
        .received_between(user, before, after, ACK_READ_LIMIT)?;
    for (sender, delivered) in delivery::on_ack(&state.archive, &state.groups, &acked)? {
        let push = Push {
            kind: Some(push::Kind::Delivered(delivered)),
        };
        state.hub.push(&sender, &push);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use sotto_proto::v1::{self, request, response, send_normal};

    use crate::config::RelayConfig;
    use crate::session::Session;
    use crate::store::faulty::Faulty;

    /// A relay whose store writes can be held, its connections' workers two
    /// (as on the project's machine), and three accounts.
    fn relay(
        root: &std::path::Path,
    ) -> (
        Arc<crate::state::RelayState>,
        Arc<Faulty>,
        crate::datadir::DirLock,
    ) {
        let config = RelayConfig::default();
        let opened = crate::datadir::open(root, &config).unwrap();
        let disk = Arc::new(Faulty::new(opened.store));
        let (state, _writer) = crate::relay::assemble(
            root,
            config,
            &crate::Clock::system(),
            disk.clone(),
            &opened.sealer,
            &opened.disclosure_key,
            &opened.audit_key,
        )
        .unwrap();
        for (n, user) in ["ann", "bob", "cyd", "dee"].iter().enumerate() {
            let key = ed25519_dalek::SigningKey::from_bytes(&[n as u8 + 1; 32]);
            state.accounts.register(user, &key.verifying_key()).unwrap();
        }
        (state, disk, opened.lock)
    }

    fn session(state: &crate::state::RelayState, user: Option<&str>) -> Session {
        let remote = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let session = Session::detached(state.next_connection_id(), remote, None);
        if let Some(user) = user {
            session.logged_in(user.to_owned(), &state.config);
        }
        session
    }

    async fn ask(
        state: &Arc<crate::state::RelayState>,
        user: Option<&str>,
        kind: request::Kind,
    ) -> response::Kind {
        let session = session(state, user);
        let answer =
            crate::handlers::dispatch(state, &session, v1::Request { kind: Some(kind) }).await;
        answer.kind.expect("an answer")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledgements_waiting_on_a_slow_disk_leave_the_relay_answering_everyone_else() {
        let dir = tempfile::tempdir().unwrap();
        let (state, disk, _lock) = relay(&dir.path().join("relay"));
        let mut upto = Vec::new();
        for reader in ["ann", "bob", "cyd", "dee"] {
            let sent = ask(
                &state,
                Some("ann"),
                request::Kind::SendNormal(v1::SendNormal {
                    to: Some(send_normal::To::User(reader.to_owned())),
                    text: format!("hello {reader}"),
                    client_id: reader.as_bytes().repeat(16)[..16].to_vec().into(),
                }),
            )
            .await;
            let response::Kind::Stored(stored) = sent else {
                panic!("not stored: {sent:?}")
            };
            upto.push((reader, stored.id));
        }
        // The disk now takes its time with every write: four readers
        // acknowledge at once, more than the relay has workers.
        disk.hold_writes(true);
        let acks: Vec<_> = upto
            .into_iter()
            .map(|(reader, id)| {
                let state = state.clone();
                tokio::spawn(async move {
                    ask(
                        &state,
                        Some(reader),
                        request::Kind::Ack(v1::Ack {
                            normal_upto: id,
                            ..v1::Ack::default()
                        }),
                    )
                    .await
                })
            })
            .collect();
        assert_eq!(disk.wait_for_held_writes(1, Duration::from_secs(30)), 1);
        // Someone else connects meanwhile: answered (waited for on this
        // thread, which is no worker, so a relay that answers nobody fails
        // the test instead of hanging it).
        let (answered, answer) = std::sync::mpsc::channel();
        {
            let state = state.clone();
            tokio::spawn(async move {
                let _ = answered.send(
                    ask(
                        &state,
                        None,
                        request::Kind::Challenge(v1::ChallengeRequest {}),
                    )
                    .await,
                );
            });
        }
        let challenge = answer.recv_timeout(Duration::from_secs(10));
        disk.hold_writes(false);
        assert!(
            matches!(challenge, Ok(response::Kind::Challenge(_))),
            "a newcomer was not answered while acknowledgements waited on the disk: {challenge:?}"
        );
        for ack in acks {
            assert!(matches!(ack.await.unwrap(), response::Kind::Acked(_)));
        }
    }
}
