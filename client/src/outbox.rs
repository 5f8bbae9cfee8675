//! What waits to be sent, for `sotto outbox` and the chat client alike: the
//! messages typed but not yet taken by the relay (`Profile::pending`; a
//! secret one not yet encrypted) and the encrypted secret messages the relay
//! has not queued yet (`Profile::outbox`).
//!
//! Invariant: a message is in exactly one of the two lists until the relay
//! has it; one refused for good is marked failed there, kept for a retry or a
//! drop, and never holds up the messages after it.

use anyhow::{Result, bail};

use crate::profile::{PendingMessage, Profile};
use crate::relay::{Recipient, RelayClient, transient};
use crate::secret::{self, Delivered};

/// Why `text` cannot be a message, in the same words for `sotto send`, a
/// message handed to `sotto chat`, and one typed in it; `None` when it can.
pub fn refusal(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some(
            "the message is empty (nothing but spaces or new lines): nothing was sent".into(),
        );
    }
    if text.len() > sotto_proto::MAX_TEXT {
        return Some(format!(
            "the message is {} bytes; a message holds at most {} bytes (64 KiB): nothing was sent",
            text.len(),
            sotto_proto::MAX_TEXT
        ));
    }
    None
}

/// How a send ended, when the connection held.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    /// Refused for good: marked failed in the vault.
    Failed(String),
}

/// One waiting message, as `sotto outbox list` shows it.
pub struct Waiting {
    /// The first 8 hex digits of its client id: what `retry` and `drop` take.
    pub id: String,
    pub secret: bool,
    pub to: String,
    pub text: String,
    pub failed: Option<String>,
}

/// Everything waiting, oldest first (typed, then encrypted).
pub fn list(profile: &Profile) -> Vec<Waiting> {
    let mut out: Vec<Waiting> = profile
        .pending
        .iter()
        .map(|p| Waiting {
            id: p.client_id.chars().take(8).collect(),
            secret: p.secret,
            to: p
                .group
                .as_ref()
                .map(|g| format!("#{g}"))
                .or_else(|| p.user.clone())
                .unwrap_or_default(),
            text: p.text.clone(),
            failed: p.failed.clone(),
        })
        .collect();
    for e in &profile.outbox {
        let text = profile
            .history()
            .iter()
            .find(|h| h.client_id == e.client_id)
            .map(|h| h.text.clone())
            .unwrap_or_default();
        out.push(Waiting {
            id: e.client_id.chars().take(8).collect(),
            secret: true,
            to: e.to.clone(),
            text,
            failed: e.failed.clone(),
        });
    }
    out
}

enum Found {
    Pending(usize),
    Outbox(usize),
}

fn find(profile: &Profile, id: &str) -> Result<Found> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() < 4 {
        bail!("give at least the first 4 hex digits of the message's id (`sotto outbox list`)");
    }
    let mut found: Vec<Found> = profile
        .pending
        .iter()
        .enumerate()
        .filter(|(_, p)| p.client_id.starts_with(&id))
        .map(|(i, _)| Found::Pending(i))
        .collect();
    found.extend(
        profile
            .outbox
            .iter()
            .enumerate()
            .filter(|(_, e)| e.client_id.starts_with(&id))
            .map(|(i, _)| Found::Outbox(i)),
    );
    match found.len() {
        0 => bail!("no waiting message has the id {id} (`sotto outbox list` shows them)"),
        1 => Ok(found.remove(0)),
        n => bail!("{n} waiting messages start with {id}: give more digits"),
    }
}

/// Takes a message out of the outbox for good. Returns its full client id.
pub fn drop(profile: &mut Profile, id: &str) -> Result<String> {
    let client_id = match find(profile, id)? {
        Found::Pending(i) => profile.pending.remove(i).client_id,
        Found::Outbox(i) => profile.outbox.remove(i).client_id,
    };
    // An encrypted one is in the history as sent: it never was.
    profile.forget_unsent(&client_id);
    profile.save()?;
    Ok(client_id)
}

/// Clears a message's failure so it is sent again; sends it now.
pub async fn retry(profile: &mut Profile, client: &RelayClient, id: &str) -> Result<Outcome> {
    match find(profile, id)? {
        Found::Pending(i) => {
            profile.pending[i].failed = None;
            let pending = profile.pending[i].clone();
            send_pending(profile, client, &pending).await
        }
        Found::Outbox(i) => {
            profile.outbox[i].failed = None;
            let entry = profile.outbox[i].clone();
            Ok(match secret::deliver(profile, client, &entry).await? {
                Delivered::Stored(_) => Outcome::Stored,
                Delivered::Failed(reason) => Outcome::Failed(reason),
            })
        }
    }
}

/// Sends one pending message. A secret one is encrypted first (into the
/// outbox), then leaves the pending list. A failure a retry may mend is an
/// error, and the message stays pending.
pub async fn send_pending(
    profile: &mut Profile,
    client: &RelayClient,
    p: &PendingMessage,
) -> Result<Outcome> {
    let mut client_id = [0u8; sotto_proto::CLIENT_ID_LEN];
    hex::decode_to_slice(&p.client_id, &mut client_id)?;
    if let (true, Some(group)) = (p.secret, &p.group) {
        return match secret::send_group_message(
            profile,
            client,
            group,
            &p.text,
            client_id,
            p.expire_secs,
        )
        .await
        {
            Ok(()) => {
                profile.pending.retain(|q| q.client_id != p.client_id);
                profile.save()?;
                Ok(Outcome::Stored)
            }
            Err(e) if transient(&e) => Err(e),
            Err(e) => fail(profile, &p.client_id, format!("{e:#}")),
        };
    }
    if p.secret {
        let Some(to) = p.user.as_deref() else {
            bail!("a secret message names no recipient");
        };
        // Still pending while it is encrypted: a crash before it leaves the
        // pending list sends it twice under one client id (the recipient
        // keeps it once), never loses it.
        let entry = match secret::prepare(
            profile,
            client,
            to,
            secret::Outgoing::message(&p.text, p.expire_secs, client_id),
        )
        .await
        {
            Ok(entry) => entry,
            Err(e) if transient(&e) => return Err(e),
            Err(e) => return fail(profile, &p.client_id, format!("{e:#}")),
        };
        profile.pending.retain(|q| q.client_id != p.client_id);
        profile.save()?;
        return Ok(match secret::deliver(profile, client, &entry).await? {
            Delivered::Stored(_) => Outcome::Stored,
            Delivered::Failed(reason) => Outcome::Failed(reason),
        });
    }
    let recipient = match (&p.user, &p.group) {
        (_, Some(g)) => Recipient::Group(g),
        (Some(u), _) => Recipient::User(u),
        _ => bail!("a message names no recipient"),
    };
    match client.send_normal(recipient, &p.text, client_id).await {
        Ok(stored) => {
            profile.pending.retain(|q| q.client_id != p.client_id);
            profile.remember_sent_normal(
                &stored,
                p.user.clone(),
                p.group.clone(),
                &p.text,
                &p.client_id,
            );
            profile.save()?;
            Ok(Outcome::Stored)
        }
        Err(e) if e.is_transient() => Err(e.into()),
        Err(e) => fail(profile, &p.client_id, e.to_string()),
    }
}

fn fail(profile: &mut Profile, client_id: &str, reason: String) -> Result<Outcome> {
    if let Some(p) = profile
        .pending
        .iter_mut()
        .find(|p| p.client_id == client_id)
    {
        p.failed = Some(reason.clone());
    }
    profile.save()?;
    Ok(Outcome::Failed(reason))
}
