//! `SendNormal`: store a normal-mode message, flush it, then answer and push.
//!
//! The answer comes only after the append thread flushed the record: a `Stored`
//! reply means the message survives a crash of the relay. A retry carrying the
//! same client id is answered with the first store's id and writes nothing.

use sotto_proto::v1::{ErrorCode, Push, SendNormal, Stored, push, response, send_normal};

use super::{Handled, RequestError, client_id, may_send, normal_message, valid_name};
use crate::archive::{Appended, Destination, NewNormal};
use crate::state::RelayState;

pub async fn handle(state: &RelayState, user: &str, send: SendNormal) -> Handled {
    may_send(state, user)?;
    let client_id = client_id(&send.client_id)?;
    if send.text.is_empty() {
        return Err(RequestError::bad_request("a message needs some text"));
    }
    if send.text.len() > sotto_proto::MAX_TEXT {
        return Err(RequestError::new(
            ErrorCode::TooLarge,
            format!(
                "a message may hold at most {} bytes of text",
                sotto_proto::MAX_TEXT
            ),
        ));
    }
    let to = match send.to {
        None => {
            return Err(RequestError::bad_request(
                "a message needs a recipient or a group",
            ));
        }
        Some(send_normal::To::User(to)) => {
            valid_name("username", &to)?;
            if !state.accounts.exists(&to)? {
                return Err(RequestError::new(
                    ErrorCode::UnknownUser,
                    format!("no account named {to}"),
                ));
            }
            Destination::User(to)
        }
        Some(send_normal::To::Group(name)) => {
            valid_name("group name", &name)?;
            let group = state.groups.get(&name)?.ok_or_else(|| {
                RequestError::new(ErrorCode::UnknownGroup, format!("no group named {name}"))
            })?;
            if !group.members.iter().any(|m| m == user) {
                return Err(RequestError::new(
                    ErrorCode::NotAMember,
                    format!("you are not a member of {name}"),
                ));
            }
            Destination::Group(group)
        }
    };
    let appended = state
        .writer
        .append(NewNormal {
            from: user.to_owned(),
            to,
            text: send.text,
            client_id,
        })
        .await?;
    // Durable now, a duplicate too: the writer answers only after its flush,
    // and the first store was flushed in this batch or an earlier one.
    match appended {
        Appended::Duplicate(receipt) => Ok(response::Kind::Stored(Stored {
            id: receipt.id,
            sent_at: receipt.sent_at,
            duplicate: true,
        })),
        Appended::New { record, recipients } => {
            let push = Push {
                kind: Some(push::Kind::Normal(normal_message(record.id, &record))),
            };
            for recipient in &recipients {
                state.hub.push(recipient, &push);
            }
            Ok(response::Kind::Stored(Stored {
                id: record.id,
                sent_at: record.sent_at,
                duplicate: false,
            }))
        }
    }
}
