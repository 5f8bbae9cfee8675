//! Secret chats on top of the sans-IO core in [`crate::e2e`]: a session per
//! contact, contacts' identity keys (trusted on first use, with a loud refusal
//! to send when one changes), the outbox, and disappearing messages.
//!
//! Invariant: a ratchet step is saved in the vault together with the message it
//! produced or consumed, before the relay is told anything (sent or acked), so
//! a crash can never leave a session out of step with the messages.

use anyhow::{Context, Result, bail};
use prost::Message;
use sotto_proto::v1::{self, secret_payload};
use thiserror::Error;

use crate::e2e::prekeys::ONE_TIME_BATCH;
use crate::e2e::{Session, verify_bundle};
use crate::profile::{Contact, HistoryEntry, Mode, OutboxEntry, Profile, now_ms};
use crate::relay::RelayClient;

/// Sending to a contact whose identity key changed is refused until `sotto trust`.
#[derive(Debug, Error)]
#[error(
    "WARNING: {user}'s identity key has changed. Someone may be intercepting your chats with \
     {user}, or {user} set up a new device. Compare safety numbers (`sotto safety-number {user}`) \
     in person or on a call, then accept the new key with `sotto trust {user}`. Secret messages \
     to {user} are blocked until then."
)]
pub struct IdentityChanged {
    pub user: String,
}

/// What became of one secret envelope.
pub enum Received {
    Message(HistoryEntry),
    /// A redelivery of an envelope handled before.
    Again,
    /// It could not be read; it is dropped (and acknowledged) with a reason.
    Dropped(String),
}

/// Makes sure the relay holds a current signed prekey and enough one-time
/// prekeys. The private halves are saved in the vault before the public halves
/// leave the device.
pub async fn publish_prekeys(
    profile: &mut Profile,
    client: &RelayClient,
    relay_has: Option<usize>,
) -> Result<()> {
    let now = now_ms();
    let rotate = profile.prekeys.signed_prekey_due(now);
    let wanted = ONE_TIME_BATCH.saturating_sub(relay_has.unwrap_or(0));
    if !rotate && wanted == 0 {
        return Ok(());
    }
    if rotate {
        profile.rotate_signed_prekey(now);
    }
    let one_time = profile.prekeys.generate_one_time(wanted);
    profile.save()?;
    let upload = profile
        .prekeys
        .upload(profile.identity(), one_time)
        .context("no signed prekey to publish")?;
    client
        .upload_prekeys(upload)
        .await
        .context("cannot publish prekeys")?;
    Ok(())
}

/// Records `key` as `user`'s identity key: trusted on first use; a different
/// key than the trusted one is remembered as a change, and an error.
fn check_contact(profile: &mut Profile, user: &str, key: &[u8; 32]) -> Result<(), IdentityChanged> {
    let key = hex::encode(key);
    match profile.contacts.get_mut(user) {
        None => {
            profile.contacts.insert(
                user.to_owned(),
                Contact {
                    identity_key: key,
                    changed_to: None,
                },
            );
            Ok(())
        }
        Some(c) if c.identity_key == key && c.changed_to.is_none() => Ok(()),
        Some(c) => {
            if c.identity_key != key {
                c.changed_to = Some(key);
            }
            Err(IdentityChanged {
                user: user.to_owned(),
            })
        }
    }
}

/// Encrypts `text` for `peer`, setting up a session first if there is none,
/// and puts it in the outbox. The vault is saved before this returns.
pub async fn prepare(
    profile: &mut Profile,
    client: &RelayClient,
    peer: &str,
    text: &str,
    expire_secs: Option<u32>,
) -> Result<OutboxEntry> {
    if peer == profile.config.username {
        bail!("a secret chat needs someone else");
    }
    if profile
        .contacts
        .get(peer)
        .is_some_and(|c| c.changed_to.is_some())
    {
        return Err(IdentityChanged {
            user: peer.to_owned(),
        }
        .into());
    }
    if !profile.sessions.contains_key(peer) {
        let bundle = client.fetch_bundle(peer).await?;
        let bundle = verify_bundle(&bundle).with_context(|| format!("{peer}'s prekey bundle"))?;
        let checked = check_contact(profile, peer, &bundle.identity_key.to_bytes());
        if let Err(changed) = checked {
            profile.save()?;
            return Err(changed.into());
        }
        let session = Session::initiate(profile.identity(), &bundle)?;
        profile.sessions.insert(peer.to_owned(), session);
    }
    let client_id = crate::commands::new_client_id();
    let sent_at = now_ms();
    let content = v1::SecretContent {
        text: text.to_owned(),
        expire_secs: expire_secs.unwrap_or(0),
        client_id: client_id.to_vec().into(),
        sent_at,
    };
    let plaintext = zeroize::Zeroizing::new(content.encode_to_vec());
    let session = profile
        .sessions
        .get_mut(peer)
        .context("the session was just set up")?;
    let payload = session.encrypt(&plaintext)?;
    let entry = OutboxEntry {
        to: peer.to_owned(),
        client_id: hex::encode(client_id),
        payload: hex::encode(payload.encode_to_vec()),
    };
    profile.outbox.push(entry.clone());
    profile.remember(HistoryEntry {
        id: 0,
        mode: Mode::Secret,
        from: profile.config.username.clone(),
        peer: Some(peer.to_owned()),
        group: None,
        text: text.to_owned(),
        sent_at,
        client_id: hex::encode(client_id),
        expire_secs,
        shown_at: expire_secs.map(|_| sent_at),
    });
    profile.save()?;
    Ok(entry)
}

/// Hands one outbox entry to the relay; on success it leaves the outbox.
pub async fn deliver(
    profile: &mut Profile,
    client: &RelayClient,
    entry: &OutboxEntry,
) -> Result<()> {
    let mut client_id = [0u8; sotto_proto::CLIENT_ID_LEN];
    hex::decode_to_slice(&entry.client_id, &mut client_id).context("a damaged outbox entry")?;
    let payload = hex::decode(&entry.payload).context("a damaged outbox entry")?;
    let queued = client.send_secret(&entry.to, payload, client_id).await?;
    profile.outbox.retain(|e| e.client_id != entry.client_id);
    profile.update_history(|h| {
        let ours = h.mode == Mode::Secret && h.client_id == entry.client_id && h.id != queued.id;
        if ours {
            h.id = queued.id;
        }
        ours
    });
    profile.save()?;
    Ok(())
}

/// Sends whatever is still in the outbox; returns how many went out.
pub async fn flush_outbox(profile: &mut Profile, client: &RelayClient) -> Result<usize> {
    let pending = profile.outbox.clone();
    for entry in &pending {
        deliver(profile, client, entry).await?;
    }
    Ok(pending.len())
}

/// Decrypts one envelope into the history (in memory: the caller saves the
/// vault before acknowledging). A changed identity key is reported in `warnings`.
pub fn receive(
    profile: &mut Profile,
    envelope: &v1::SecretEnvelope,
    warnings: &mut Vec<String>,
) -> Received {
    if profile.seen_envelope(envelope.id) {
        return Received::Again;
    }
    profile.mark_envelope_seen(envelope.id);
    let from = envelope.from.as_str();
    let Ok(payload) = v1::SecretPayload::decode(envelope.ciphertext.as_ref()) else {
        return Received::Dropped(format!("a secret message from {from} is malformed"));
    };
    let plaintext = match payload.kind {
        Some(secret_payload::Kind::Prekey(first)) => {
            let Ok(key) = <[u8; 32]>::try_from(first.identity_key.as_ref()) else {
                return Received::Dropped(format!("a secret message from {from} is malformed"));
            };
            if let Err(changed) = check_contact(profile, from, &key) {
                warnings.push(changed.to_string());
            }
            let existing = profile
                .sessions
                .get_mut(from)
                .filter(|s| s.base_key().as_slice() == first.ephemeral_key.as_ref());
            match existing {
                Some(session) => match first.message.as_ref() {
                    Some(m) => session.decrypt(m),
                    None => {
                        return Received::Dropped(format!(
                            "a secret message from {from} is malformed"
                        ));
                    }
                },
                None => profile.respond(&first).map(|(session, plaintext)| {
                    profile.sessions.insert(from.to_owned(), session);
                    plaintext
                }),
            }
        }
        Some(secret_payload::Kind::Message(m)) => match profile.sessions.get_mut(from) {
            Some(session) => session.decrypt(&m),
            None => {
                return Received::Dropped(format!(
                    "a secret message from {from} belongs to no session here"
                ));
            }
        },
        None => return Received::Dropped(format!("a secret message from {from} is empty")),
    };
    let plaintext = match plaintext {
        Ok(p) => p,
        Err(e) => {
            return Received::Dropped(format!("a secret message from {from} was refused: {e}"));
        }
    };
    let Ok(content) = v1::SecretContent::decode(plaintext.as_slice()) else {
        return Received::Dropped(format!(
            "a secret message from {from} holds no readable content"
        ));
    };
    let entry = HistoryEntry {
        id: envelope.id,
        mode: Mode::Secret,
        from: from.to_owned(),
        peer: Some(from.to_owned()),
        group: None,
        text: content.text.clone(),
        sent_at: content.sent_at,
        client_id: hex::encode(&content.client_id),
        expire_secs: (content.expire_secs > 0).then_some(content.expire_secs),
        shown_at: None,
    };
    if profile.remember(entry.clone()) {
        Received::Message(entry)
    } else {
        Received::Again
    }
}

/// Accepts `user`'s current identity key (after comparing safety numbers).
/// Returns the key now trusted.
pub async fn trust(profile: &mut Profile, client: &RelayClient, user: &str) -> Result<[u8; 32]> {
    let current = client.fetch_identity(user).await?;
    let hex_key = hex::encode(current);
    profile.contacts.insert(
        user.to_owned(),
        Contact {
            identity_key: hex_key,
            changed_to: None,
        },
    );
    // A session made with another key must not be used again.
    if profile
        .sessions
        .get(user)
        .is_some_and(|s| s.peer_identity() != current)
    {
        profile.sessions.remove(user);
    }
    profile.save()?;
    Ok(current)
}

/// Parses a disappearing-message timer: `30s`, `5m`, `2h`, `1d`, or `off`.
pub fn parse_timer(text: &str) -> Result<Option<u32>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u32 = digits
        .parse()
        .with_context(|| format!("{text:?} is not a timer: use 30s, 5m, 2h, 1d or off"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => bail!("{text:?} is not a timer: use 30s, 5m, 2h, 1d or off"),
    };
    if secs == 0 {
        bail!("a timer must be at least one second (or off)");
    }
    Ok(Some(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_parse() {
        assert_eq!(parse_timer("30s").unwrap(), Some(30));
        assert_eq!(parse_timer("5m").unwrap(), Some(300));
        assert_eq!(parse_timer("1d").unwrap(), Some(86_400));
        assert_eq!(parse_timer("off").unwrap(), None);
        assert!(parse_timer("soon").is_err());
        assert!(parse_timer("0s").is_err());
    }
}
