//! The answers the chat client owes to `sotto send` processes (see
//! [`crate::control`]). A forwarded message becomes an [`Event::Forwarded`]
//! and is sent like a typed one; its answer follows the same events that
//! mark a typed line ✓ or take it away.
//!
//! Invariant: `sotto send` hears "stored" only after the relay said so; while
//! the relay is unreachable it hears that the message waits here, unsent.

use std::collections::HashMap;

use super::app::{Connection, ConvKey, Event, local_id_of};
use crate::control::{Answer, Forwarded, sent_line};

struct Owed {
    to: ConvKey,
    answer: tokio::sync::oneshot::Sender<Answer>,
}

/// Answers owed, by the UI line id of their message.
#[derive(Default)]
pub struct Owing {
    owed: HashMap<u64, Owed>,
}

impl Owing {
    /// Takes a forwarded request: the event that shows and sends it.
    pub fn take(&mut self, forwarded: Forwarded) -> Event {
        let client_id = crate::commands::new_client_id();
        let request = forwarded.request;
        self.owed.insert(
            local_id_of(&client_id),
            Owed {
                to: request.to.clone(),
                answer: forwarded.answer,
            },
        );
        Event::Forwarded {
            client_id,
            to: request.to,
            text: request.text,
            expire: request.expire_secs,
        }
    }

    /// Answers whoever this event concerns; `connection` is the state the
    /// client shows (after the event).
    pub fn settle(&mut self, event: &Event, connection: &Connection) {
        match event {
            Event::Delivered { local_id } => {
                if let Some(owed) = self.owed.remove(local_id) {
                    let _ = owed.answer.send(Answer::Stored(sent_line(&owed.to)));
                }
            }
            Event::Failed { local_id, reason } => {
                if let Some(owed) = self.owed.remove(local_id) {
                    let _ = owed.answer.send(Answer::NotStored(reason.clone()));
                }
            }
            _ => {}
        }
        let why = match connection {
            Connection::Offline { retry_in_secs: 0 } => {
                "cannot reach the relay (trying again now)".to_owned()
            }
            Connection::Offline { retry_in_secs } => {
                format!("cannot reach the relay (next try in {retry_in_secs} s)")
            }
            Connection::CertificateMismatch { .. } => {
                "does not connect: the relay presented another certificate than the pinned one"
                    .to_owned()
            }
            Connection::Connecting | Connection::Online => return,
        };
        for (_, owed) in self.owed.drain() {
            let _ = owed.answer.send(Answer::NotStored(format!(
                "the running `sotto chat` {why}: \
                 it shows the message to {} as pending and sends it once the relay is back, \
                 if it still runs then; the relay has not stored it yet, so do not send it again",
                recipient(&owed.to)
            )));
        }
    }
}

fn recipient(to: &ConvKey) -> String {
    match to {
        ConvKey::Direct(user) => user.clone(),
        ConvKey::Group(group) => format!("group {group}"),
        ConvKey::Secret(user) => format!("{user} (secret)"),
        ConvKey::SecretGroup(group) => format!("secret group {group}"),
    }
}
