//! `SendSecret`: queue an end-to-end encrypted envelope for its recipient.
//! The relay cannot read it and keeps it only until it is acknowledged or
//! expires; it is never part of history. Answered only once flushed.

use sotto_proto::v1::{ErrorCode, Push, SecretQueued, SendSecret, push, response};

use super::{Handled, RequestError, client_id, may_send, secret_ciphertext, valid_name};
use crate::secret_queue::{Full, NewSecret, Queued};
use crate::state::RelayState;

pub async fn handle(state: &RelayState, user: &str, send: SendSecret) -> Handled {
    may_send(state, user)?;
    let client_id = client_id(&send.client_id)?;
    valid_name("username", &send.to)?;
    secret_ciphertext(&send.ciphertext, "a secret envelope")?;
    if !state.accounts.exists(&send.to)? {
        return Err(RequestError::new(
            ErrorCode::UnknownUser,
            format!("no account named {}", send.to),
        ));
    }
    let ttl_ms = (state.config.secret_ttl_secs as i64).saturating_mul(1000);
    let queued = state
        .writer
        .enqueue(NewSecret {
            from: user.to_owned(),
            to: send.to.clone(),
            client_id,
            ciphertext: send.ciphertext.to_vec(),
            ttl_ms,
        })
        .await?;
    match queued {
        Queued::Full(full) => Err(queue_full(state, &send.to, full)),
        Queued::Duplicate(id) => Ok(response::Kind::SecretQueued(SecretQueued {
            id,
            duplicate: true,
        })),
        Queued::New(envelope) => {
            let id = envelope.id;
            state.hub.push(
                &send.to,
                &Push {
                    kind: Some(push::Kind::Secret(envelope)),
                },
            );
            Ok(response::Kind::SecretQueued(SecretQueued {
                id,
                duplicate: false,
            }))
        }
    }
}

/// The refusal for an envelope that did not fit in a quota, saying which.
pub(super) fn queue_full(state: &RelayState, to: &str, full: Full) -> RequestError {
    let l = &state.config.limits;
    let (code, limit, message) = match full {
        Full::Recipient => (
            ErrorCode::RecipientQueueFull,
            "secret_queue_quota",
            format!(
                "{to} has too many secret messages waiting (at most {} envelopes, {} MiB); \
                 try again once they have fetched theirs",
                l.secret_queue_envelopes,
                l.secret_queue_bytes >> 20
            ),
        ),
        Full::FromSender => (
            ErrorCode::RecipientQueueFull,
            "secret_queue_sender_quota",
            format!(
                "you have too many secret messages waiting for {to} (at most {} envelopes, {} MiB); \
                 try again once they have fetched yours",
                l.secret_queue_per_sender_envelopes,
                l.secret_queue_per_sender_bytes >> 20
            ),
        ),
        Full::Relay => (
            ErrorCode::RelayQueueFull,
            "secret_queue_total",
            "the relay holds as many undelivered secret messages as it may; try again later"
                .to_owned(),
        ),
    };
    RequestError {
        limit,
        ..RequestError::new(code, message)
    }
}
