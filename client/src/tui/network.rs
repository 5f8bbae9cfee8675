//! The chat client's connection: it owns the profile, keeps a connection to the
//! relay (reconnecting with backoff), turns [`Effect`]s into requests, and
//! reports what happens as [`Event`]s.
//!
//! Invariant: a message typed is kept in the vault before anything else
//! (`Profile::pending`, with its client id), and sent once the relay is
//! there, exactly once, also across a restart of the client; a secret one is
//! then encrypted once and kept in the vault's outbox until the relay has it.
//! A message the relay refuses for good is marked failed and kept; it never
//! holds up the messages after it.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, Result};
use sotto_proto::v1::{Push, push};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::app::{Connection, ConvKey, Effect, Event, local_id_of};
use crate::commands::sync::{fetch_new, mark_shown, notice_text};
use crate::profile::{PendingMessage, Profile};
use crate::relay::{CONNECT_TIMEOUT, ClientError, RelayClient};
use crate::{delivery, outbox, secret};

/// The wait before the second retry (the first is at once); it doubles
/// after each failure, up to [`LAST_RETRY`], each wait jittered.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(10);

/// The wait after `failures` failed attempts in a row: none after the first,
/// then doubling from [`FIRST_RETRY`] to at most [`LAST_RETRY`], each drawn
/// between half and all of it (so clients that lost one relay do not all
/// come back at the same instant).
pub fn retry_wait(failures: u32, jitter: f64) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let doubled = FIRST_RETRY.saturating_mul(1 << (failures - 2).min(8));
    doubled
        .min(LAST_RETRY)
        .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}
/// How often disappearing messages are looked at.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Deletes disappearing messages whose time came from the vault.
fn purge_expired(profile: &mut Profile) {
    if profile.purge_expired(crate::profile::now_ms()) > 0 {
        let _ = profile.save();
    }
}

enum Flow {
    Reconnect,
    Exit,
}

use crate::relay::transient;

/// Runs until the effect channel closes (the UI quit).
pub async fn run(
    mut profile: Profile,
    mut effects: UnboundedReceiver<Effect>,
    events: UnboundedSender<Event>,
) {
    let mut queue: VecDeque<Effect> = VecDeque::new();
    let mut failures = 0u32;
    // Disappearing messages leave the vault at their time, online or not.
    let mut purge = tokio::time::interval(PURGE_EVERY);
    loop {
        let _ = events.send(Event::Connection(Connection::Connecting));
        // Effects that come while connecting wait; the UI quitting ends
        // the attempt at once (nothing is half done while connecting).
        let mut arrived = Vec::new();
        let attempt = {
            let connecting = tokio::time::timeout(CONNECT_TIMEOUT, profile.connect());
            tokio::pin!(connecting);
            loop {
                tokio::select! {
                    attempt = &mut connecting => break attempt,
                    effect = effects.recv() => match effect {
                        Some(effect) => arrived.push(effect),
                        None => return,
                    },
                }
            }
        };
        for effect in arrived {
            accept(&mut profile, effect, &mut queue, &events);
        }
        let error = match attempt {
            Ok(Ok(client)) => {
                failures = 0;
                let _ = events.send(Event::Connection(Connection::Online));
                let flow = online(
                    &mut profile,
                    &client,
                    &mut effects,
                    &events,
                    &mut queue,
                    &mut purge,
                )
                .await;
                client.close().await;
                if let Flow::Exit = flow {
                    return;
                }
                continue;
            }
            Ok(Err(e)) => e,
            Err(_) => anyhow::anyhow!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        };
        let mismatch = error
            .chain()
            .find_map(|c| match c.downcast_ref::<ClientError>() {
                Some(ClientError::PinMismatch {
                    addr,
                    expected,
                    actual,
                }) => Some(Connection::CertificateMismatch {
                    relay: addr.clone(),
                    pinned: expected.to_string(),
                    presented: actual.to_string(),
                }),
                _ => None,
            });
        drop(error);
        if let Some(mismatch) = mismatch {
            // Not a network hiccup: trying again would only ask the impostor again.
            let _ = events.send(Event::Connection(mismatch));
            loop {
                tokio::select! {
                    _ = purge.tick() => purge_expired(&mut profile),
                    effect = effects.recv() => match effect {
                        Some(effect) => accept(&mut profile, effect, &mut queue, &events),
                        None => return,
                    },
                }
            }
        }
        failures = failures.saturating_add(1);
        let wait = retry_wait(failures, rand::random::<f64>());
        let _ = events.send(Event::Connection(Connection::Offline {
            retry_in_secs: wait.as_secs_f64().ceil() as u64,
        }));
        let wait = tokio::time::sleep(wait);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                _ = purge.tick() => purge_expired(&mut profile),
                effect = effects.recv() => match effect {
                    Some(effect) => accept(&mut profile, effect, &mut queue, &events),
                    None => return,
                },
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
    purge: &mut tokio::time::Interval,
) -> Flow {
    if deliver_outbox(profile, client, events).await.is_err()
        || drain(profile, client, events, queue).await.is_err()
    {
        return Flow::Reconnect;
    }
    if fetched(profile, client, events).await.is_err() {
        return Flow::Reconnect;
    }
    let Ok(mut pushes) = client.subscribe().await else {
        return Flow::Reconnect;
    };
    // Asked once subscribed, so that nothing delivered in between is missed;
    // a refusal (a relay too old to know the question) leaves the marks be.
    if let Err(e) = delivered_while_away(profile, client, events).await
        && transient(&e)
    {
        return Flow::Reconnect;
    }
    loop {
        tokio::select! {
            _ = purge.tick() => purge_expired(profile),
            push = pushes.next() => match push {
                Ok(Some(Push { kind: Some(push::Kind::Delivered(delivered)) })) => {
                    let marked = delivery::apply(profile, &delivered);
                    if !marked.is_empty() {
                        let _ = profile.save();
                        let _ = events.send(receipt(&marked));
                    }
                }
                // Any other push means something waits: fetch it the one safe way.
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
                    if drain(profile, client, events, queue).await.is_err() {
                        return Flow::Reconnect;
                    }
                }
            },
        }
    }
}

/// Takes an effect from the UI: a message goes into the vault at once (so it
/// survives a restart, even typed while the relay is away); anything else
/// waits in the queue.
fn accept(
    profile: &mut Profile,
    effect: Effect,
    queue: &mut VecDeque<Effect>,
    events: &UnboundedSender<Event>,
) {
    let (local_id, pending) = match effect {
        Effect::SendNormal {
            local_id,
            client_id,
            to,
            text,
        } => {
            let secret = matches!(to, ConvKey::SecretGroup(_));
            let (user, group) = match to {
                ConvKey::Group(g) | ConvKey::SecretGroup(g) => (None, Some(g)),
                ConvKey::Direct(u) | ConvKey::Secret(u) => (Some(u), None),
            };
            (
                local_id,
                PendingMessage {
                    client_id: hex::encode(client_id),
                    user,
                    group,
                    text,
                    typed_at: crate::profile::now_ms(),
                    secret,
                    expire_secs: None,
                    failed: None,
                },
            )
        }
        Effect::SendSecret {
            local_id,
            client_id,
            to,
            text,
            expire,
        } => (
            local_id,
            PendingMessage {
                client_id: hex::encode(client_id),
                user: Some(to),
                group: None,
                text,
                typed_at: crate::profile::now_ms(),
                secret: true,
                expire_secs: expire,
                failed: None,
            },
        ),
        other => {
            queue.push_back(other);
            return;
        }
    };
    profile.pending.push(pending);
    match profile.save() {
        Ok(()) => {
            let _ = events.send(Event::Kept { local_id });
        }
        Err(e) => {
            profile.pending.pop();
            let _ = events.send(Event::Failed {
                local_id,
                reason: format!("cannot keep it in the vault: {e:#}"),
            });
        }
    }
}

/// Sends the messages waiting in the vault, oldest first; what failed for
/// good is skipped (see [`crate::outbox`]).
async fn deliver_pending(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
) -> Result<()> {
    let waiting: Vec<PendingMessage> = profile
        .pending
        .iter()
        .filter(|p| p.failed.is_none())
        .cloned()
        .collect();
    for p in waiting {
        let mut client_id = [0u8; 16];
        hex::decode_to_slice(&p.client_id, &mut client_id)?;
        let local_id = local_id_of(&client_id);
        match outbox::send_pending(profile, client, &p).await? {
            outbox::Outcome::Stored => {
                let _ = events.send(Event::Delivered { local_id });
            }
            outbox::Outcome::Failed(reason) => {
                let _ = events.send(Event::Failed { local_id, reason });
            }
        }
    }
    Ok(())
}

/// Our messages that these client ids (hex) name are delivered now.
pub(super) fn receipt(client_ids: &[String]) -> Event {
    let local_ids = client_ids
        .iter()
        .filter_map(|id| hex::decode(id).ok())
        .map(|id| local_id_of(&id))
        .collect();
    Event::Receipt { local_ids }
}

/// Marks our normal messages that were delivered while we were away.
async fn delivered_while_away(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
) -> Result<()> {
    let marked = delivery::refresh(profile, client).await?;
    if !marked.is_empty() {
        let _ = events.send(receipt(&marked));
    }
    Ok(())
}

async fn fetched(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
) -> Result<()> {
    let mut fetched = fetch_new(profile, client, false).await?;
    secret::send_receipts(profile, client, &fetched.entries, &mut fetched.warnings).await?;
    if !fetched.delivered.is_empty() {
        let _ = events.send(receipt(&fetched.delivered));
    }
    for warning in fetched.warnings {
        let _ = events.send(Event::Notice(warning));
    }
    if profile.notices.iter().any(|n| !n.shown) {
        for n in profile.notices.iter_mut().filter(|n| !n.shown) {
            let _ = events.send(Event::Notice(format!(
                "notice from the relay: {}",
                notice_text(n)
            )));
            n.shown = true;
        }
        profile.save()?;
    }
    for (peer, secs) in fetched.timers {
        let _ = events.send(Event::TimerSet { peer, secs });
    }
    for (group, secs) in fetched.group_timers {
        let _ = events.send(Event::GroupTimerSet { group, secs });
    }
    if !fetched.entries.is_empty() {
        mark_shown(profile, &fetched.entries)?;
        let _ = events.send(Event::Incoming(fetched.entries));
    }
    Ok(())
}

/// Sends what waits in the outbox (encrypted before a restart), skipping
/// what failed for good.
async fn deliver_outbox(
    profile: &mut Profile,
    client: &RelayClient,
    events: &UnboundedSender<Event>,
) -> Result<()> {
    let waiting: Vec<_> = profile
        .outbox
        .iter()
        .filter(|e| e.failed.is_none())
        .cloned()
        .collect();
    for entry in waiting {
        let mut client_id = [0u8; 16];
        hex::decode_to_slice(&entry.client_id, &mut client_id)?;
        let local_id = local_id_of(&client_id);
        match secret::deliver(profile, client, &entry).await? {
            secret::Delivered::Stored(_) => {
                let _ = events.send(Event::Delivered { local_id });
            }
            secret::Delivered::Failed(reason) => {
                let _ = events.send(Event::Failed { local_id, reason });
            }
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
) -> Result<()> {
    deliver_pending(profile, client, events).await?;
    while let Some(next) = queue.front() {
        match perform(profile, client, events, next).await {
            Err(e) if transient(&e) => return Err(e),
            Err(e) => {
                let _ = events.send(Event::Warning(format!("{e:#}")));
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
) -> Result<()> {
    match effect {
        // Accepted into the vault's pending list; `deliver_pending` sends them.
        Effect::SendNormal { .. } | Effect::SendSecret { .. } => {}
        Effect::Outbox(action) => {
            use super::app::OutboxAction;
            match action {
                OutboxAction::List => {
                    let mut listed = Vec::new();
                    crate::commands::outbox::list(profile, &mut listed)?;
                    let _ = events.send(Event::OutboxText(String::from_utf8_lossy(&listed).into()));
                }
                OutboxAction::Retry(id) => {
                    let notice = match outbox::retry(profile, client, id).await? {
                        outbox::Outcome::Stored => format!("{id}: sent, the relay has it now"),
                        outbox::Outcome::Failed(reason) => {
                            format!("{id}: refused again: {reason}")
                        }
                    };
                    let _ = events.send(Event::Notice(notice));
                }
                OutboxAction::Withdraw(id) => {
                    outbox::drop(profile, id)?;
                }
                OutboxAction::Drop(id) => {
                    let dropped = outbox::drop(profile, id)?;
                    let _ = events.send(Event::Notice(format!(
                        "{}: dropped, it will not be sent",
                        &dropped[..8]
                    )));
                }
            }
        }
        Effect::SetTimer { peer, secs } => {
            let outgoing = secret::Outgoing::timer(*secs, crate::commands::new_client_id());
            let entry = secret::prepare(profile, client, peer, outgoing).await?;
            if let secret::Delivered::Failed(reason) =
                secret::deliver(profile, client, &entry).await?
            {
                let _ = events.send(Event::Notice(format!(
                    "{peer} was not told of the new timer: {reason}"
                )));
            }
        }
        Effect::SetGroupTimer { group, secs } => {
            secret::send_group_timer(profile, client, group, *secs)
                .await
                .with_context(|| format!("the timer of the secret group {group} was not set"))?;
        }
        Effect::CreateGroup { name, members } => {
            let created = client
                .create_group(name, members)
                .await
                .with_context(|| format!("group #{name} was not created"))?;
            let _ = events.send(Event::GroupCreated {
                name: created.name.clone(),
            });
            let _ = events.send(Event::Notice(format!(
                "group #{} created with {}",
                created.name,
                created.members.join(", ")
            )));
        }
        Effect::Verify { user } => {
            let text = member_safety_text(profile, client, user).await?;
            profile.save()?;
            let _ = events.send(Event::VerifyText(text));
        }
        Effect::VerifyGroup { group } => {
            let id = crate::commands::group::secret_group_named(profile, group)?;
            let me = profile.config.username.clone();
            let members: Vec<String> = profile
                .secret_groups
                .info(&id)
                .map(|i| i.members.into_iter().filter(|m| *m != me).collect())
                .unwrap_or_default();
            let mut text =
                format!("secret group {group}: compare each member's safety number with them\n");
            for member in &members {
                text.push_str(&format!("\n── {member} ──\n"));
                text.push_str(&member_safety_text(profile, client, member).await?);
            }
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

/// The safety number to compare with `user` (their key fetched first if
/// this device has none yet).
async fn member_safety_text(
    profile: &mut Profile,
    client: &RelayClient,
    user: &str,
) -> Result<String> {
    let fetched = match profile.contacts.contains_key(user) {
        true => None,
        false => Some(client.fetch_identity(user).await?),
    };
    secret::safety_text(profile, user, fetched, "/trust")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_is_at_once_then_waits_grow_jittered_to_ten_seconds() {
        assert_eq!(retry_wait(1, 1.0), Duration::ZERO);
        assert_eq!(retry_wait(2, 1.0), Duration::from_secs(1));
        assert_eq!(retry_wait(3, 1.0), Duration::from_secs(2));
        assert_eq!(retry_wait(4, 0.0), Duration::from_secs(2));
        assert_eq!(retry_wait(6, 1.0), LAST_RETRY);
        assert_eq!(retry_wait(u32::MAX, 1.0), LAST_RETRY);
        assert_eq!(retry_wait(u32::MAX, 0.0), LAST_RETRY / 2);
    }
}
