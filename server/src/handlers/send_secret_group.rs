//! `SendSecretGroup`: queue one end-to-end encrypted group message for each
//! recipient the sender names. The relay sees the group's opaque id and the
//! recipients, never the group's name, members or admins, and cannot read
//! the ciphertext; it keeps it once, until the last recipient acknowledges
//! it or it expires. Answered only once flushed.

use std::collections::BTreeSet;

use sotto_proto::v1::{ErrorCode, Push, SecretGroupQueued, SendSecretGroup, push, response};

use super::send_secret::queue_full;
use super::{Handled, RequestError, client_id, may_send_copies, secret_ciphertext, valid_name};
use crate::secret_queue::{GroupQueued, NewGroupSecret};
use crate::state::RelayState;

/// The most recipients of one group message (a group of 256).
pub const MAX_RECIPIENTS: usize = 255;
/// The longest opaque group id.
pub const MAX_GROUP_ID: usize = 64;

pub async fn handle(state: &RelayState, user: &str, send: SendSecretGroup) -> Handled {
    // Kept once on one relay; once per recipient on a cluster, where each
    // copy counts as a send (one request must not cost 255 of them).
    let copies = match state.secret_queue.keeps_group_bodies_once() {
        true => 1,
        false => send.recipients.len().clamp(1, MAX_RECIPIENTS) as u32,
    };
    may_send_copies(state, user, copies)?;
    let client_id = client_id(&send.client_id)?;
    if send.group_id.is_empty() || send.group_id.len() > MAX_GROUP_ID {
        return Err(RequestError::bad_request(format!(
            "a secret group's id is 1 to {MAX_GROUP_ID} bytes"
        )));
    }
    if send.recipients.is_empty() || send.recipients.len() > MAX_RECIPIENTS {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!("a secret group message goes to 1 to {MAX_RECIPIENTS} recipients"),
        ));
    }
    let mut seen = BTreeSet::new();
    for to in &send.recipients {
        valid_name("username", to)?;
        if to == user {
            return Err(RequestError::bad_request(
                "a secret group message's recipients are the other members, not the sender",
            ));
        }
        if !seen.insert(to.as_str()) {
            return Err(RequestError::bad_request(format!(
                "{to} is named twice among the recipients"
            )));
        }
    }
    secret_ciphertext(&send.ciphertext, "a secret group message")?;
    for to in &send.recipients {
        if !state.accounts.exists(to)? {
            return Err(RequestError::new(
                ErrorCode::UnknownUser,
                format!("no account named {to}"),
            ));
        }
    }
    let ttl_ms = (state.config.secret_ttl_secs as i64).saturating_mul(1000);
    let recipients = send.recipients.len() as u32;
    let queued = state.secret_queue.enqueue_group(NewGroupSecret {
        from: user.to_owned(),
        group: send.group_id.to_vec(),
        recipients: send.recipients,
        client_id,
        ciphertext: send.ciphertext.to_vec(),
        ttl_ms,
    })?;
    match queued {
        GroupQueued::Full(full, to) => Err(queue_full(state, &to, full)),
        GroupQueued::Duplicate => Ok(response::Kind::SecretGroupQueued(SecretGroupQueued {
            recipients,
            duplicate: true,
        })),
        GroupQueued::New(envelopes) => {
            // Nobody hears of it before it is on disk.
            state.writer.durable().await?;
            for (to, envelope) in envelopes {
                state.hub.push(
                    &to,
                    &Push {
                        kind: Some(push::Kind::Secret(envelope)),
                    },
                );
            }
            Ok(response::Kind::SecretGroupQueued(SecretGroupQueued {
                recipients,
                duplicate: false,
            }))
        }
    }
}
