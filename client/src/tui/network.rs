//! The chat client's connection: it owns the profile, keeps a connection to the
//! relay (reconnecting with backoff), turns [`Effect`]s into requests, and
//! reports what happens as [`Event`]s.
//!
//! Invariant: a message typed while the relay is away is queued and sent once
//! it is back, exactly once, also across a restart of the client: a normal
//! message is kept in the vault (`Profile::pending`) with its client id until
//! the relay stores it (once, whatever the retries), a secret one is encrypted
//! once and kept in the vault's outbox until the relay has it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::app::{Connection, ConvKey, Effect, Event, local_id_of};
use crate::commands::sync::{fetch_new, mark_shown};
use crate::e2e::safety;
use crate::profile::{PendingNormal, Profile};
use crate::relay::{ClientError, Recipient, RelayClient};
use crate::secret;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);

enum Flow {
    Reconnect,
    Exit,
}

/// A secret message was encrypted into the outbox but the relay did not take
/// it: its effect is done (the outbox delivers it), and the connection is
/// suspect. It must not be performed again, or it would be encrypted twice.
#[derive(Debug, thiserror::Error)]
#[error("the relay did not take the secret message yet")]
struct KeptInOutbox;

fn transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_transient)
    })
}

/// Runs until the effect channel closes (the UI quit).
pub async fn run(
    mut profile: Profile,
    mut effects: UnboundedReceiver<Effect>,
    events: UnboundedSender<Event>,
) {
    let mut queue: VecDeque<Effect> = VecDeque::new();
    // Secret messages in the outbox, by client id, and the UI line they show as.
    let mut outbox_lines: HashMap<String, u64> = HashMap::new();
    let mut backoff = FIRST_RETRY;
    loop {
        let _ = events.send(Event::Connection(Connection::Connecting));
        match profile.connect().await {
            Ok(client) => {
                backoff = FIRST_RETRY;
                let _ = events.send(Event::Connection(Connection::Online));
                let flow = online(
                    &mut profile,
                    &client,
                    &mut effects,
                    &events,
                    &mut queue,
                    &mut outbox_lines,
                )
                .await;
                client.close().await;
                if let Flow::Exit = flow {
                    return;
                }
            }
            Err(_) => {
                let _ = events.send(Event::Connection(Connection::Offline {
                    retry_in_secs: backoff.as_secs().max(1),
                }));
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        effect = effects.recv() => match effect {
                            Some(effect) => accept(&mut profile, effect, &mut queue, &events),
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(LAST_RETRY);
            }
        }
    }
}

async fn online(
    profile: &mut Profile,
    client: &RelayClient,
    effects: &mut UnboundedReceiver<Effect>,
    events: &UnboundedSender<Event>,
    queue: &mut VecDeque<Effect>,
    outbox_lines: &mut HashMap<String, u64>,
) -> Flow {
    if deliver_outbox(profile, client, events, outbox_lines)
        .await
        .is_err()
        || drain(profile, client, events, queue, outbox_lines)
            .await
            .is_err()
    {
        return Flow::Reconnect;
    }
    if fetched(profile, client, events).await.is_err() {
        return Flow::Reconnect;
    }
    let Ok(mut pushes) = client.subscribe().await else {
        return Flow::Reconnect;
    };
    loop {
        tokio::select! {
            push = pushes.next() => match push {
                // Any push means something waits: fetch it the one safe way.
                Ok(Some(_)) => {
                    if fetched(profile, client, events).await.is_err() {
                        return Flow::Reconnect;
                    }
                }
                _ => return Flow::Reconnect,
            },
            effect = effects.recv() => match effect {
                None => return Flow::Exit,
                Some(effect) => {
                    accept(profile, effect, queue, events);
                    if drain(profile, client, events, queue, outbox_lines).await.is_err() {
                        return Flow::Reconnect;
                    }
                }
            },
        }
    }
}

/// Takes an effect from the UI: a normal message goes into the vault at once
/// (so it survives a restart), anything else waits in the queue.
fn accept(
    profile: &mut Profile,
    effect: Effect,
    queue: &mut VecDeque<Effect>,
    events: &UnboundedSender<Event>,
) {
    let Effect::SendNormal {
        local_id,
        client_id,
        to,
        text,
    } = effect
    else {
        queue.push_back(effect);
        return;
    };
    let (user, group) = match to {
        ConvKey::Group(g) => (None, Some(g)),
        ConvKey::Direct(u) | ConvKey::Secret(u) => (Some(u), None),
    };
    profile.pending.push(PendingNormal {
        client_id: hex::encode(client_id),
        user,
        group,
        text,
        typed_at: crate::profile::now_ms(),
    });
    if let Err(e) = profile.save() {
        profile.pending.pop();
        let _ = events.send(Event::Failed {
            local_id,
            reason: format!("cannot keep it in the vault: {e:#}"),
        });
    }
}

/// Sends the normal messages waiting in the vault, oldest first.
async fn deliver_pending(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
) -> Result<()> {
    for p in profile.pending.clone() {
        let mut client_id = [0u8; 16];
        hex::decode_to_slice(&p.client_id, &mut client_id)?;
        let local_id = local_id_of(&client_id);
        let recipient = match (&p.user, &p.group) {
            (_, Some(g)) => Recipient::Group(g),
            (Some(u), _) => Recipient::User(u),
            _ => continue,
        };
        let result = client.send_normal(recipient, &p.text, client_id).await;
        profile.pending.retain(|q| q.client_id != p.client_id);
        match result {
            Ok(stored) => {
                profile.remember_sent_normal(
                    &stored,
                    p.user.clone(),
                    p.group.clone(),
                    &p.text,
                    &p.client_id,
                );
                profile.save()?;
                let _ = events.send(Event::Delivered { local_id });
            }
            Err(e) if e.is_transient() => {
                profile.pending.insert(0, p);
                return Err(e.into());
            }
            Err(e) => {
                profile.save()?;
                let _ = events.send(Event::Failed {
                    local_id,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

async fn fetched(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
) -> Result<()> {
    let fetched = fetch_new(profile, client).await?;
    for warning in fetched.warnings {
        let _ = events.send(Event::Notice(warning));
    }
    if !fetched.entries.is_empty() {
        mark_shown(profile, &fetched.entries)?;
        let _ = events.send(Event::Incoming(fetched.entries));
    }
    Ok(())
}

async fn deliver_outbox(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
    outbox_lines: &mut HashMap<String, u64>,
) -> Result<()> {
    for entry in profile.outbox.clone() {
        secret::deliver(profile, client, &entry).await?;
        if let Some(local_id) = outbox_lines.remove(&entry.client_id) {
            let _ = events.send(Event::Delivered { local_id });
        }
    }
    Ok(())
}

/// Carries out queued effects in order; stops (keeping the rest) when the
/// connection fails.
async fn drain(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
    queue: &mut VecDeque<Effect>,
    outbox_lines: &mut HashMap<String, u64>,
) -> Result<()> {
    deliver_pending(profile, client, events).await?;
    while let Some(next) = queue.front() {
        match perform(profile, client, events, next, outbox_lines).await {
            Err(e) if e.is::<KeptInOutbox>() => {
                queue.pop_front();
                return Err(e);
            }
            Err(e) if transient(&e) => return Err(e),
            Err(e) => {
                if let Effect::SendSecret { local_id, .. } = next {
                    let _ = events.send(Event::Failed {
                        local_id: *local_id,
                        reason: format!("{e:#}"),
                    });
                } else {
                    let _ = events.send(Event::Notice(format!("{e:#}")));
                }
            }
            Ok(()) => {}
        }
        queue.pop_front();
    }
    Ok(())
}

async fn perform(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
    effect: &Effect,
    outbox_lines: &mut HashMap<String, u64>,
) -> Result<()> {
    match effect {
        // Accepted into the vault's pending list; `deliver_pending` sends it.
        Effect::SendNormal { .. } => {}
        Effect::SendSecret {
            local_id,
            to,
            text,
            expire,
        } => {
            let entry = secret::prepare(profile, client, to, text, *expire).await?;
            outbox_lines.insert(entry.client_id.clone(), *local_id);
            // Encrypted and in the outbox: from here a failure is retried, never re-encrypted.
            if secret::deliver(profile, client, &entry).await.is_ok() {
                outbox_lines.remove(&entry.client_id);
                let _ = events.send(Event::Delivered {
                    local_id: *local_id,
                });
            } else {
                anyhow::bail!(KeptInOutbox);
            }
        }
        Effect::CreateGroup { name, members } => {
            let created = client.create_group(name, members).await?;
            let _ = events.send(Event::Notice(format!(
                "group #{} created with {}",
                created.name,
                created.members.join(", ")
            )));
        }
        Effect::Verify { user } => {
            let key = match profile.contacts.get(user) {
                Some(c) => {
                    let mut key = [0u8; 32];
                    hex::decode_to_slice(&c.identity_key, &mut key)?;
                    key
                }
                None => client.fetch_identity(user).await?,
            };
            let mine = profile.identity().public_key().to_bytes();
            let number = safety::safety_number((&profile.config.username, &mine), (user, &key));
            let mut text = format!(
                "Safety number with {user}:\n\n{}\n\nCompare it with the one {user} sees (/verify in their chat\n\
                 with you, or `sotto safety-number {}`), in person or on a call.\n\
                 If all 60 digits match, nobody sits between you.",
                safety::display(&number),
                profile.config.username
            );
            if profile
                .contacts
                .get(user)
                .is_some_and(|c| c.changed_to.is_some())
            {
                text.push_str(&format!(
                    "\n\nWARNING: {user} now presents a different identity key.\nAfter comparing, /trust accepts it."
                ));
            }
            secret::mark_shown(profile, user);
            profile.save()?;
            let _ = events.send(Event::VerifyText(text));
        }
        Effect::Trust { user } => {
            let mut warnings = Vec::new();
            secret::trust(
                profile,
                client,
                user,
                secret::TrustWhat::LastShown,
                &mut warnings,
            )
            .await?;
            let _ = events.send(Event::Notice(format!(
                "{user}'s identity key is trusted now"
            )));
            for warning in warnings {
                let _ = events.send(Event::Notice(warning));
            }
        }
        Effect::Bell | Effect::Quit => {}
    }
    Ok(())
}
