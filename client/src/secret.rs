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
use crate::e2e::{PeerSessions, Session, verify_bundle};
use crate::profile::{
    Contact, HeldBecause, HeldEnvelope, HistoryEntry, MAX_HELD, MAX_HELD_PER_SENDER, Mode,
    OutboxEntry, Profile, now_ms,
};
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
    /// Kept encrypted, unread (see [`HeldBecause`]); the sentence says why.
    Held(String),
    /// The peer's client decrypted and kept our messages with these client
    /// ids (hex); they are marked delivered in the history already.
    Receipt {
        peer: String,
        client_ids: Vec<String>,
    },
    /// The peer set the chat's disappearing timer (applied already).
    Timer {
        peer: String,
        secs: Option<u32>,
        notice: String,
    },
    /// A member set a secret group's disappearing timer (applied already).
    GroupTimer {
        group: String,
        secs: Option<u32>,
        notice: String,
    },
    /// It could not be read and is not worth keeping; the sentence says why.
    Dropped(String),
    /// A secret group's control message (a change, a sender key, a request),
    /// applied; what to say, and what to send in answer (each inside the
    /// pairwise session with its member).
    Group {
        notice: Option<String>,
        send: Vec<crate::secret_group::Outgoing>,
    },
}

/// Tells each peer that their secret messages `arrived` (decrypted and kept
/// here) did arrive: one receipt per peer, sent like any secret message. A
/// receipt that cannot be sent now waits in the outbox; one that cannot be
/// made (a changed identity key) is skipped, said in the warnings.
pub async fn send_receipts(
    profile: &mut Profile,
    client: &RelayClient,
    arrived: &[HistoryEntry],
    warnings: &mut Vec<String>,
) -> Result<()> {
    let mut owed: std::collections::BTreeMap<&str, Vec<Vec<u8>>> = Default::default();
    for entry in arrived {
        if entry.mode != Mode::Secret || entry.from == profile.config.username {
            continue;
        }
        if let Ok(id) = hex::decode(&entry.client_id) {
            owed.entry(entry.from.as_str()).or_default().push(id);
        }
    }
    for (peer, ids) in owed {
        let outgoing = Outgoing::receipt(ids, crate::commands::new_client_id());
        let entry = match prepare(profile, client, peer, outgoing).await {
            Ok(entry) => entry,
            Err(e) if crate::relay::transient(&e) => return Err(e),
            Err(e) => {
                warnings.push(format!("{peer} was not told their messages arrived: {e:#}"));
                continue;
            }
        };
        if let Delivered::Failed(reason) = deliver(profile, client, &entry).await? {
            warnings.push(format!(
                "{peer} was not told their messages arrived: {reason}"
            ));
        }
    }
    Ok(())
}

/// How many one-time prekeys of each kind the relay says it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayHolds {
    pub one_time: usize,
    pub pq_one_time: usize,
}

impl RelayHolds {
    /// As many as an upload tops up to: only a due rotation is published.
    pub const FULL: RelayHolds = RelayHolds {
        one_time: ONE_TIME_BATCH,
        pq_one_time: ONE_TIME_BATCH,
    };
}

impl From<&v1::PrekeysLow> for RelayHolds {
    fn from(low: &v1::PrekeysLow) -> Self {
        RelayHolds {
            one_time: low.remaining as usize,
            pq_one_time: low.pq_remaining as usize,
        }
    }
}

/// Makes sure the relay holds a current signed prekey and last-resort
/// ML-KEM-1024 prekey (rotated together) and enough one-time prekeys of both
/// kinds (`None`: it holds none). The private halves are saved in the vault
/// before the public halves leave the device.
pub async fn publish_prekeys(
    profile: &mut Profile,
    client: &RelayClient,
    relay_has: Option<RelayHolds>,
) -> Result<()> {
    let now = now_ms();
    let rotate = profile.prekeys.signed_prekey_due(now);
    let has = relay_has.unwrap_or(RelayHolds {
        one_time: 0,
        pq_one_time: 0,
    });
    let wanted = ONE_TIME_BATCH.saturating_sub(has.one_time);
    let pq_wanted = ONE_TIME_BATCH.saturating_sub(has.pq_one_time);
    if !rotate && wanted == 0 && pq_wanted == 0 {
        return Ok(());
    }
    if rotate {
        profile.rotate_signed_prekey(now);
    }
    let one_time = profile.prekeys.generate_one_time(wanted);
    let pq_one_time = profile.generate_pq_one_time(pq_wanted);
    profile.save()?;
    let upload = profile
        .prekeys
        .upload(profile.identity(), one_time, pq_one_time)
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
            profile
                .contacts
                .insert(user.to_owned(), Contact::trusted(key));
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
/// A secret message to encrypt: text (with its timer), or a control message
/// that sets the chat's timer on both sides.
pub struct Outgoing<'a> {
    pub text: &'a str,
    /// This message's timer; `None` takes the chat's (see [`Profile::timers`]).
    pub expire_secs: Option<u32>,
    pub client_id: [u8; sotto_proto::CLIENT_ID_LEN],
    /// Set: a control message announcing the chat's new timer (0 = off).
    pub set_timer: Option<u32>,
    /// Not empty: a receipt for the peer's messages with these client ids.
    pub delivered: Vec<Vec<u8>>,
    /// Set: a secret group's control message for the peer.
    pub group: Option<v1::GroupControl>,
}

impl<'a> Outgoing<'a> {
    pub fn message(
        text: &'a str,
        expire_secs: Option<u32>,
        client_id: [u8; sotto_proto::CLIENT_ID_LEN],
    ) -> Self {
        Outgoing {
            text,
            expire_secs,
            client_id,
            set_timer: None,
            delivered: Vec::new(),
            group: None,
        }
    }

    /// A secret group's control message (see [`crate::secret_group`]).
    pub fn group_control(
        control: v1::GroupControl,
        client_id: [u8; sotto_proto::CLIENT_ID_LEN],
    ) -> Self {
        Outgoing {
            text: "",
            expire_secs: None,
            client_id,
            set_timer: None,
            delivered: Vec::new(),
            group: Some(control),
        }
    }

    pub fn timer(secs: Option<u32>, client_id: [u8; sotto_proto::CLIENT_ID_LEN]) -> Self {
        Outgoing {
            text: "",
            expire_secs: None,
            client_id,
            set_timer: Some(secs.unwrap_or(0)),
            delivered: Vec::new(),
            group: None,
        }
    }

    /// A receipt: the peer's messages with these client ids are decrypted
    /// and kept here.
    pub fn receipt(delivered: Vec<Vec<u8>>, client_id: [u8; sotto_proto::CLIENT_ID_LEN]) -> Self {
        Outgoing {
            text: "",
            expire_secs: None,
            client_id,
            set_timer: None,
            delivered,
            group: None,
        }
    }
}

pub async fn prepare(
    profile: &mut Profile,
    client: &RelayClient,
    peer: &str,
    outgoing: Outgoing<'_>,
) -> Result<OutboxEntry> {
    let Outgoing {
        text,
        expire_secs,
        client_id,
        set_timer,
        delivered,
        group,
    } = outgoing;
    let control = set_timer.is_some() || !delivered.is_empty() || group.is_some();
    let expire_secs = match set_timer {
        Some(_) => None,
        None => expire_secs.or_else(|| profile.timers.get(peer).copied()),
    };
    if peer == profile.config.username {
        bail!("a secret chat needs someone else");
    }
    // Checked before anything is encrypted: no ratchet step is spent on a
    // message the relay would refuse (a timer change or a receipt carries no text).
    if !control {
        check_size(text)?;
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
    // A fresh session when there is none, or when a message from the peer
    // could not be decrypted (a session reset, announced in the message), or
    // when ours is a classical one (from before PQXDH) the peer never
    // answered: its first message is refused now, so it never will.
    let reset = profile.resets.contains(peer) && profile.sessions.contains_key(peer);
    let unanswerable = profile.sessions.get(peer).is_some_and(|s| {
        let current = s.current();
        current.is_unanswered() && !current.is_post_quantum()
    });
    if reset || unanswerable || !profile.sessions.contains_key(peer) {
        let bundle = client.fetch_bundle(peer).await?;
        let bundle = verify_bundle(&bundle).with_context(|| format!("{peer}'s prekey bundle"))?;
        let checked = check_contact(profile, peer, &bundle.identity_key.to_bytes());
        if let Err(changed) = checked {
            profile.save()?;
            return Err(changed.into());
        }
        let session = Session::initiate(profile.identity(), &bundle)?;
        match profile.sessions.get_mut(peer) {
            Some(sessions) => sessions.restart(session),
            None => {
                profile
                    .sessions
                    .insert(peer.to_owned(), PeerSessions::new(session));
            }
        }
        profile.resets.remove(peer);
    }
    let sent_at = now_ms();
    let content = v1::SecretContent {
        text: text.to_owned(),
        expire_secs: expire_secs.unwrap_or(0),
        client_id: client_id.to_vec().into(),
        sent_at,
        session_reset: reset,
        set_timer_secs: set_timer,
        delivered: delivered.into_iter().map(Into::into).collect(),
        group,
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
        failed: None,
    };
    profile.outbox.push(entry.clone());
    match set_timer {
        Some(0) => {
            profile.timers.remove(peer);
        }
        Some(secs) => {
            profile.timers.insert(peer.to_owned(), secs);
        }
        None if control => {}
        None => {
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
                unprinted: false,
                delivered: false,
            });
        }
    }
    profile.save()?;
    Ok(entry)
}

/// Sends a secret group's control message inside the pairwise session with
/// its member (kept in the outbox until the relay stored it).
pub async fn send_group_control(
    profile: &mut Profile,
    client: &RelayClient,
    out: crate::secret_group::Outgoing,
) -> Result<()> {
    let mut client_id = [0u8; sotto_proto::CLIENT_ID_LEN];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut client_id);
    let entry = prepare(
        profile,
        client,
        &out.to,
        Outgoing::group_control(out.control, client_id),
    )
    .await?;
    if let Delivered::Failed(reason) = deliver(profile, client, &entry).await? {
        bail!("the relay refused it: {reason}");
    }
    Ok(())
}

/// Sends `text` to the secret group this device holds as `name`: one
/// ciphertext under our sender key, which the relay queues for every other
/// member; kept in the history once the relay stored it.
pub async fn send_group_message(
    profile: &mut Profile,
    client: &RelayClient,
    name: &str,
    text: &str,
    client_id: [u8; sotto_proto::CLIENT_ID_LEN],
    expire_secs: Option<u32>,
) -> Result<()> {
    check_size(text)?;
    let id = crate::commands::group::secret_group_named(profile, name)?;
    let expire_secs = expire_secs.or_else(|| profile.secret_groups.timer(&id));
    let sent_at = now_ms();
    let content = v1::SecretContent {
        text: text.to_owned(),
        client_id: client_id.to_vec().into(),
        sent_at,
        expire_secs: expire_secs.unwrap_or(0),
        ..Default::default()
    };
    send_group_content(profile, client, id, &content).await?;
    profile.remember(HistoryEntry {
        id: 0,
        mode: Mode::Secret,
        from: profile.config.username.clone(),
        peer: None,
        group: Some(name.to_owned()),
        text: text.to_owned(),
        sent_at,
        client_id: hex::encode(client_id),
        expire_secs,
        shown_at: None,
        unprinted: false,
        delivered: false,
    });
    profile.save()?;
    Ok(())
}

/// Sets the secret group `name`'s disappearing timer (`None`: off) here
/// and, by a group message that carries it, on every member's device.
pub async fn send_group_timer(
    profile: &mut Profile,
    client: &RelayClient,
    name: &str,
    secs: Option<u32>,
) -> Result<()> {
    let id = crate::commands::group::secret_group_named(profile, name)?;
    let content = v1::SecretContent {
        client_id: crate::commands::new_client_id().to_vec().into(),
        sent_at: now_ms(),
        set_timer_secs: Some(secs.unwrap_or(0)),
        ..Default::default()
    };
    profile.secret_groups.set_timer(&id, secs)?;
    send_group_content(profile, client, id, &content).await
}

/// One group message: encrypted under our sender key (the chain's move
/// kept before anything leaves, so no key is used twice), handed to the
/// relay once for every other member.
async fn send_group_content(
    profile: &mut Profile,
    client: &RelayClient,
    id: crate::secret_group::GroupId,
    content: &v1::SecretContent,
) -> Result<()> {
    let plaintext = zeroize::Zeroizing::new(content.encode_to_vec());
    let send = profile.secret_groups.encrypt(&id, &plaintext)?;
    profile.save()?;
    let client_id: [u8; sotto_proto::CLIENT_ID_LEN] = content
        .client_id
        .as_ref()
        .try_into()
        .context("a client id")?;
    client
        .send_secret_group(id.as_bytes(), &send.recipients, send.ciphertext, client_id)
        .await?;
    Ok(())
}

/// A secret message's text is at most [`sotto_proto::MAX_TEXT`] bytes.
pub fn check_size(text: &str) -> Result<()> {
    match crate::outbox::refusal(text) {
        Some(reason) => bail!("{reason}"),
        None => Ok(()),
    }
}

/// What handing an outbox entry to the relay came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Queued by the relay, under this envelope id.
    Stored(u64),
    /// Refused for good: the entry is kept, marked failed with this reason.
    Failed(String),
}

/// Hands one outbox entry to the relay. Stored: it leaves the outbox.
/// Refused for good: it stays, marked failed, and never blocks what comes
/// after it. A failure a retry may mend (the connection) is an error.
pub async fn deliver(
    profile: &mut Profile,
    client: &RelayClient,
    entry: &OutboxEntry,
) -> Result<Delivered> {
    let mut client_id = [0u8; sotto_proto::CLIENT_ID_LEN];
    hex::decode_to_slice(&entry.client_id, &mut client_id).context("a damaged outbox entry")?;
    let payload = hex::decode(&entry.payload).context("a damaged outbox entry")?;
    let queued = match client.send_secret(&entry.to, payload, client_id).await {
        Ok(queued) => queued,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => {
            let reason = e.to_string();
            if let Some(kept) = profile
                .outbox
                .iter_mut()
                .find(|e| e.client_id == entry.client_id)
            {
                kept.failed = Some(reason.clone());
            }
            profile.save()?;
            return Ok(Delivered::Failed(reason));
        }
    };
    profile.outbox.retain(|e| e.client_id != entry.client_id);
    profile.update_history(|h| {
        let ours = h.mode == Mode::Secret && h.client_id == entry.client_id && h.id != queued.id;
        if ours {
            h.id = queued.id;
        }
        ours
    });
    profile.save()?;
    Ok(Delivered::Stored(queued.id))
}

/// Sends what waits in the outbox, oldest first, skipping what failed for
/// good; returns the entries refused now (client id, reason).
pub async fn flush_outbox(
    profile: &mut Profile,
    client: &RelayClient,
) -> Result<Vec<(String, String)>> {
    let waiting: Vec<OutboxEntry> = profile
        .outbox
        .iter()
        .filter(|e| e.failed.is_none())
        .cloned()
        .collect();
    let mut refused = Vec::new();
    for entry in &waiting {
        if let Delivered::Failed(reason) = deliver(profile, client, entry).await? {
            refused.push((entry.client_id.clone(), reason));
        }
    }
    Ok(refused)
}

/// Decrypts one envelope into the history (in memory: the caller saves the
/// vault before acknowledging). Nothing that arrives is lost silently: what
/// cannot be shown is kept encrypted with a reason, and the user told.
///
/// - a first message from an identity key other than the trusted one is
///   held, not decrypted, and does not touch the sessions, until `trust`;
/// - a first message is decrypted by the session it started if that is
///   kept; a replayed one whose session is gone is refused (its base key is
///   remembered); otherwise it starts a session (see [`PeerSessions::add_inbound`]);
/// - a message no kept session decrypts is held, and the next secret send
///   to its sender starts a fresh session.
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
    if from == profile.config.username {
        // Nobody sends secret messages to themselves: a relay's forgery.
        return Received::Dropped(
            "a secret message claiming to come from you was refused".to_owned(),
        );
    }
    if !envelope.group.is_empty() {
        return receive_group_message(profile, envelope);
    }
    let Ok(payload) = v1::SecretPayload::decode(envelope.ciphertext.as_ref()) else {
        return Received::Dropped(format!("a secret message from {from} is malformed"));
    };
    let plaintext = match payload.kind {
        Some(secret_payload::Kind::Prekey(first)) => {
            let Ok(key) = <[u8; 32]>::try_from(first.identity_key.as_ref()) else {
                return Received::Dropped(format!("a secret message from {from} is malformed"));
            };
            if let Err(changed) = check_first_key(profile, from, &key) {
                return hold(
                    profile,
                    envelope,
                    HeldBecause::ChangedIdentity,
                    changed.to_string(),
                );
            }
            let kept = profile
                .sessions
                .get_mut(from)
                .and_then(|s| s.with_base_key(&first.ephemeral_key));
            let read = match (kept, first.message.as_ref()) {
                (Some(session), Some(m)) => session.decrypt(m),
                (Some(_), None) => {
                    return Received::Dropped(format!("a secret message from {from} is malformed"));
                }
                (None, _) if profile.seen_base_keys.contains(&first.ephemeral_key) => {
                    return Received::Dropped(format!(
                        "a first secret message from {from} was replayed (its session ended): refused"
                    ));
                }
                (None, _) => profile.respond(&first).map(|(session, plaintext)| {
                    profile.seen_base_keys.insert(session.base_key());
                    match profile.sessions.get_mut(from) {
                        Some(sessions) => sessions.add_inbound(session),
                        None => {
                            profile
                                .sessions
                                .insert(from.to_owned(), PeerSessions::new(session));
                        }
                    }
                    plaintext
                }),
            };
            // A new peer's key is trusted only once its first message
            // decrypted: a refused one (no KEM ciphertext, tampered, for a
            // used prekey) leaves no trace, and is not held.
            if read.is_ok() && !profile.contacts.contains_key(from) {
                profile
                    .contacts
                    .insert(from.to_owned(), Contact::trusted(hex::encode(key)));
            }
            read
        }
        Some(secret_payload::Kind::Message(m)) => match profile.sessions.get_mut(from) {
            Some(sessions) => sessions.decrypt(&m),
            None => Err(crate::e2e::E2eError::Decrypt),
        },
        None => return Received::Dropped(format!("a secret message from {from} is empty")),
    };
    let plaintext = match plaintext {
        Ok(p) => p,
        Err(crate::e2e::E2eError::Replayed) => {
            return Received::Dropped(format!(
                "a secret message from {from} was received before (a replay): ignored"
            ));
        }
        Err(e) if !profile.contacts.contains_key(from) => {
            // Nothing to recover with a stranger: not kept, so strangers
            // cannot fill the vault with garbage.
            return Received::Dropped(format!(
                "a secret message from {from} cannot be decrypted ({e}): dropped"
            ));
        }
        Err(e) => {
            profile.resets.insert(from.to_owned());
            return hold(
                profile,
                envelope,
                HeldBecause::Undecryptable,
                format!(
                    "a secret message from {from} cannot be decrypted ({e}); it is kept. \
                     Your next secret message to {from} starts a fresh session."
                ),
            );
        }
    };
    let Ok(content) = v1::SecretContent::decode(plaintext.as_slice()) else {
        return Received::Dropped(format!(
            "a secret message from {from} holds no readable content"
        ));
    };
    if content.session_reset {
        warnings.push(format!("{from} started a fresh secret session"));
    }
    if let Some(control) = &content.group {
        // Whether the user wrote to `from` matters only to an invitation (a
        // state for a group not held here): the history is read only then.
        let invitation = matches!(control.kind, Some(v1::group_control::Kind::State(_)))
            && crate::secret_group::GroupId::from_bytes(&control.group_id)
                .is_ok_and(|id| profile.secret_groups.info(&id).is_none());
        let me = &profile.config.username;
        let known = invitation
            && profile
                .history()
                .iter()
                .any(|e| e.from == *me && e.peer.as_deref() == Some(from));
        return match profile
            .secret_groups
            .receive_control_known(from, control, known)
        {
            Ok(outcome) => Received::Group {
                notice: group_notice(profile, &outcome.event),
                send: outcome.send,
            },
            Err(e) => Received::Dropped(format!(
                "a secret group change from {from} was refused: {e}"
            )),
        };
    }
    if !content.delivered.is_empty() {
        let me = profile.config.username.clone();
        let ids: Vec<String> = content.delivered.iter().map(hex::encode).collect();
        profile.update_history(|entry| {
            let now_delivered = !entry.delivered
                && entry.mode == Mode::Secret
                && entry.from == me
                && entry.peer.as_deref() == Some(from)
                && ids.contains(&entry.client_id);
            entry.delivered |= now_delivered;
            now_delivered
        });
        return Received::Receipt {
            peer: from.to_owned(),
            client_ids: ids,
        };
    }
    if let Some(secs) = content.set_timer_secs {
        let notice = match secs {
            0 => {
                profile.timers.remove(from);
                format!("{from} turned disappearing messages off")
            }
            secs => {
                profile.timers.insert(from.to_owned(), secs);
                format!("{from} set disappearing messages to {secs} s after they are read")
            }
        };
        return Received::Timer {
            peer: from.to_owned(),
            secs: (secs > 0).then_some(secs),
            notice,
        };
    }
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
        unprinted: false,
        delivered: false,
    };
    if profile.remember(entry.clone()) {
        Received::Message(entry)
    } else {
        Received::Again
    }
}

/// A secret group message: one ciphertext under the sender's sender key,
/// read with that sender's key only. One we hold no key for yet asks the
/// sender for it (the message itself cannot be read later).
fn receive_group_message(profile: &mut Profile, envelope: &v1::SecretEnvelope) -> Received {
    use crate::secret_group::{GroupId, SecretGroupError};
    let from = envelope.from.as_str();
    let Ok(id) = GroupId::from_bytes(&envelope.group) else {
        return Received::Dropped(format!("a secret group message from {from} is malformed"));
    };
    let Some(info) = profile.secret_groups.info(&id) else {
        return group_message_for_no_group(profile, envelope, id);
    };
    let plaintext = match profile
        .secret_groups
        .receive_message(from, &id, &envelope.ciphertext)
    {
        Ok(plaintext) => plaintext,
        Err(SecretGroupError::Cipher(crate::e2e::E2eError::UnknownSenderKey)) => {
            let send = profile
                .secret_groups
                .request_distribution(&id, from)
                .map(|o| vec![o])
                .unwrap_or_default();
            return Received::Group {
                notice: Some(format!(
                    "a message from {from} in secret group {} could not be read (this device \
                     has not their key yet): asked them for it, later ones will be",
                    info.name
                )),
                send,
            };
        }
        Err(e) => {
            return Received::Dropped(format!(
                "a secret group message from {from} in {} was refused: {e}",
                info.name
            ));
        }
    };
    read_group_plaintext(profile, &id, &info.name, from, envelope.id, &plaintext)
}

/// A secret group message decrypted: a change of the group's timer
/// (applied), or a message for the history under the group's timer (the
/// shorter of the group's here and the sender's, so a member whose client
/// leaves the timer off does not keep our copy for ever).
pub(crate) fn read_group_plaintext(
    profile: &mut Profile,
    id: &crate::secret_group::GroupId,
    name: &str,
    from: &str,
    envelope_id: u64,
    plaintext: &[u8],
) -> Received {
    if let Ok(content) = v1::SecretContent::decode(plaintext)
        && let Some(secs) = content.set_timer_secs
    {
        let secs = (secs > 0).then_some(secs);
        let _ = profile.secret_groups.set_timer(id, secs);
        let notice = match secs {
            None => format!("{from} turned disappearing messages off in the secret group {name}"),
            Some(secs) => format!(
                "{from} set disappearing messages in the secret group {name} to {secs} s after \
                 they are read"
            ),
        };
        return Received::GroupTimer {
            group: name.to_owned(),
            secs,
            notice,
        };
    }
    let mut entry = match group_entry(from, envelope_id, name, plaintext) {
        Ok(entry) => entry,
        Err(why) => return Received::Dropped(why),
    };
    if let Some(timer) = profile.secret_groups.timer(id) {
        entry.expire_secs = Some(entry.expire_secs.map_or(timer, |secs| secs.min(timer)));
    }
    if profile.remember(entry.clone()) {
        Received::Message(entry)
    } else {
        Received::Again
    }
}

/// A group message read: its history entry, or why it holds nothing to show.
pub(crate) fn group_entry(
    from: &str,
    envelope_id: u64,
    group: &str,
    plaintext: &[u8],
) -> Result<HistoryEntry, String> {
    let Ok(content) = v1::SecretContent::decode(plaintext) else {
        return Err(format!(
            "a secret group message from {from} holds no readable content"
        ));
    };
    Ok(HistoryEntry {
        id: envelope_id,
        mode: Mode::Secret,
        from: from.to_owned(),
        peer: None,
        group: Some(group.to_owned()),
        text: content.text.clone(),
        sent_at: content.sent_at,
        client_id: hex::encode(&content.client_id),
        expire_secs: (content.expire_secs > 0).then_some(content.expire_secs),
        shown_at: None,
        unprinted: false,
        delivered: false,
    })
}

/// A group message for a group this device does not hold: kept with an
/// invitation to it that waits for the user's answer; else (a reinstall
/// lost the group) the sender is asked for the group, whose answer is shown
/// as an invitation to accept. A group we left or declined is not asked for.
fn group_message_for_no_group(
    profile: &mut Profile,
    envelope: &v1::SecretEnvelope,
    id: crate::secret_group::GroupId,
) -> Received {
    use crate::secret_group::Hold;
    let from = envelope.from.as_str();
    let groups = &mut profile.secret_groups;
    let hold = groups.hold_message(from, &id, envelope.id, &envelope.ciphertext);
    // Only the invitations whose members include the sender: another
    // sender's invitation to the same group id (a hijacker's, maybe under
    // another name) is not the one this message belongs to.
    let invitations: Vec<String> = groups
        .invitations()
        .into_iter()
        .filter(|i| i.group == id && i.members.iter().any(|m| m == from))
        .map(|i| format!("{} (from {})", i.name, i.from))
        .collect();
    let which = match invitations.as_slice() {
        [one] => format!("the secret group {one}"),
        several => format!(
            "a secret group you are invited to by several people ({}): compare them with \
             `sotto group invitations`",
            several.join(", ")
        ),
    };
    match hold {
        Hold::Kept => {
            return Received::Group {
                notice: Some(format!(
                    "a message from {from} in {which}, which you have not accepted yet, is \
                     kept: accepting the invitation reads it"
                )),
                send: Vec::new(),
            };
        }
        Hold::Again => return Received::Again,
        Hold::Full => {
            return Received::Dropped(format!(
                "a message from {from} in {which}, which you have not accepted yet, could not \
                 be kept: the room for such messages is full (answer your invitations)"
            ));
        }
        Hold::NoInvitation => {}
    }
    match groups.request_distribution(&id, from) {
        Ok(ask) => Received::Group {
            notice: Some(format!(
                "a message from {from} in a secret group this device does not hold (lost in a \
                 reinstall?) could not be read: asked {from} about the group; what they answer \
                 is shown as an invitation, for you to accept or decline"
            )),
            send: vec![ask],
        },
        Err(crate::secret_group::SecretGroupError::AlreadyAsked) => Received::Dropped(format!(
            "another message from {from} in a secret group this device does not hold: \
             {from} was asked about it already"
        )),
        Err(e) => Received::Dropped(format!(
            "a secret group message from {from} for a group this device is not in: dropped ({e})"
        )),
    }
}

/// What to tell the user of a secret group change.
fn group_notice(profile: &Profile, event: &crate::secret_group::GroupEvent) -> Option<String> {
    use crate::secret_group::GroupEvent;
    let name = |id| {
        profile
            .secret_groups
            .info(id)
            .map(|i| i.name)
            .unwrap_or_else(|| "a secret group".to_owned())
    };
    match event {
        GroupEvent::Joined { name: n, by, .. } => {
            Some(format!("{by} added you to the secret group {n}"))
        }
        GroupEvent::Changed {
            group,
            by,
            added,
            removed,
        } => Some(format!(
            "{by} changed the secret group {}: added [{}], removed [{}]",
            name(group),
            added.join(", "),
            removed.join(", ")
        )),
        GroupEvent::RemovedUs { by, .. } => Some(format!("{by} removed you from a secret group")),
        GroupEvent::Left { group, who } => {
            Some(format!("{who} left the secret group {}", name(group)))
        }
        GroupEvent::Invited {
            group,
            name: n,
            by,
            recovered,
        } => {
            let waiting = profile
                .secret_groups
                .invitations()
                .into_iter()
                .find(|i| i.group == *group && i.from == *by);
            let members = waiting
                .as_ref()
                .map(|i| i.members.join(", "))
                .unwrap_or_default();
            let acceptable = waiting.as_ref().is_none_or(|i| i.acceptable);
            let what = match (*recovered, acceptable) {
                (false, _) => format!("{by} invites you to the secret group {n}"),
                (true, true) => format!(
                    "{by} sent back the secret group {n} when this device asked about it (lost \
                     in a reinstall?)"
                ),
                (true, false) => format!(
                    "{by} sent back the secret group {n} when this device asked about it, but \
                     is no admin of it: accepting asks its admins ({}) for it",
                    waiting.map(|i| i.admins.join(", ")).unwrap_or_default()
                ),
            };
            Some(format!(
                "{what} (members: {members}): `sotto group accept --secret {n}` joins it, \
                 `sotto group decline --secret {n}` refuses"
            ))
        }
        GroupEvent::Withdrawn { by, .. } => Some(format!(
            "{by} withdrew an invitation to a secret group before you answered"
        )),
        GroupEvent::SenderKey { .. }
        | GroupEvent::Requested { .. }
        | GroupEvent::KeptForInvitation { .. } => None,
    }
}

/// A first message's identity key: any other key than the trusted one is
/// recorded as a change and refused. A new peer's key is trusted on first
/// use, once the first message decrypted (see [`receive`]).
fn check_first_key(
    profile: &mut Profile,
    user: &str,
    key: &[u8; 32],
) -> Result<(), IdentityChanged> {
    let hex_key = hex::encode(key);
    match profile.contacts.get_mut(user) {
        Some(c) if c.identity_key == hex_key => Ok(()),
        Some(c) => {
            c.changed_to = Some(hex_key);
            Err(IdentityChanged {
                user: user.to_owned(),
            })
        }
        None => Ok(()),
    }
}

/// Keeps an envelope encrypted and unread, and says so. At most
/// [`MAX_HELD_PER_SENDER`] a sender (later ones are dropped with a warning),
/// so one sender cannot push out another's.
fn hold(
    profile: &mut Profile,
    envelope: &v1::SecretEnvelope,
    because: HeldBecause,
    why: String,
) -> Received {
    let from_sender = profile
        .held
        .iter()
        .filter(|h| h.from == envelope.from)
        .count();
    if from_sender >= MAX_HELD_PER_SENDER {
        return Received::Dropped(format!(
            "{why} (not kept: {MAX_HELD_PER_SENDER} messages from {} are kept unread already)",
            envelope.from
        ));
    }
    profile.held.push(HeldEnvelope {
        from: envelope.from.clone(),
        id: envelope.id,
        ciphertext: hex::encode(&envelope.ciphertext),
        because,
        received_at: now_ms(),
    });
    if profile.held.len() > MAX_HELD {
        profile.held.remove(0);
    }
    Received::Held(why)
}

/// Reads again the envelopes from `user` held for a changed identity key
/// (after `trust`): they go into the history, or are held again with a reason.
pub fn release_held(
    profile: &mut Profile,
    user: &str,
    warnings: &mut Vec<String>,
) -> Vec<HistoryEntry> {
    let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut profile.held)
        .into_iter()
        .partition(|h| h.from == user && h.because == HeldBecause::ChangedIdentity);
    profile.held = others;
    let mut shown = Vec::new();
    for held in mine {
        let Ok(ciphertext) = hex::decode(&held.ciphertext) else {
            continue;
        };
        let envelope = v1::SecretEnvelope {
            id: held.id,
            from: held.from,
            ciphertext: ciphertext.into(),
            queued_at: held.received_at,
            group: Default::default(),
        };
        // It was marked seen when it arrived; this is its reading.
        profile.forget_envelope(envelope.id);
        match receive(profile, &envelope, warnings) {
            Received::Message(entry) => shown.push(entry),
            Received::Held(why) | Received::Dropped(why) => warnings.push(why),
            Received::Timer { notice, .. } | Received::GroupTimer { notice, .. } => {
                warnings.push(notice)
            }
            Received::Group { notice, send } => {
                warnings.extend(notice);
                if !send.is_empty() {
                    warnings.push(
                        "a secret group asked for answers this device does not send from a \
                         released message; they go with the group's next change"
                            .to_owned(),
                    );
                }
            }
            Received::Receipt { .. } | Received::Again => {}
        }
    }
    shown
}

/// The safety number to compare with `user`, as one text, for the key
/// `trust` would accept: their changed key if they present one (said loudly),
/// else the trusted one. That key is recorded as shown, so `trust` accepts
/// exactly the key whose number the user compared. `fetched` is their key
/// from the relay, for someone not yet a contact (trusted on first use).
pub fn safety_text(
    profile: &mut Profile,
    user: &str,
    fetched: Option<[u8; 32]>,
    trust_hint: &str,
) -> Result<String> {
    if !profile.contacts.contains_key(user) {
        let key = fetched.context("no key known for this user")?;
        profile
            .contacts
            .insert(user.to_owned(), Contact::trusted(hex::encode(key)));
    }
    let contact = profile.contacts.get_mut(user).context("just added")?;
    let changed = contact.changed_to.is_some();
    let shown = contact
        .changed_to
        .clone()
        .unwrap_or_else(|| contact.identity_key.clone());
    contact.shown_key = Some(shown.clone());
    let mut key = [0u8; 32];
    hex::decode_to_slice(&shown, &mut key).context("a damaged contact key")?;
    let mine = profile.identity().public_key().to_bytes();
    let number = crate::e2e::safety::display(&crate::e2e::safety::safety_number(
        (&profile.config.username, &mine),
        (user, &key),
    ));
    let me = &profile.config.username;
    Ok(if changed {
        format!(
            "WARNING: {user} now presents a NEW identity key. Someone may be between you, or {user} \
             set up a new device.\n\nThe safety number with that NEW key:\n\n{number}\n\n\
             Compare it with what {user} sees for you (`sotto safety-number {me}`), in person or on a \
             call. Only if all 60 digits match, accept that key with {trust_hint}."
        )
    } else {
        format!(
            "Safety number with {user}:\n\n{number}\n\nCompare it with what {user} sees for you \
             (`sotto safety-number {me}`), in person or on a call. If all 60 digits match, \
             nobody sits between you."
        )
    })
}

/// What `trust` is to accept.
pub enum TrustWhat<'a> {
    /// The key whose safety number `safety-number` showed last.
    LastShown,
    /// The key whose safety number is these 60 digits (spaces allowed).
    Digits(&'a str),
}

/// Accepts `user`'s identity key after the safety numbers were compared:
/// exactly the key that was compared (or whose digits are given), and only
/// if the relay presents that same key now. Messages held for the change
/// are then read. Returns the key now trusted.
pub async fn trust(
    profile: &mut Profile,
    client: &RelayClient,
    user: &str,
    what: TrustWhat<'_>,
    warnings: &mut Vec<String>,
) -> Result<[u8; 32]> {
    let current = client.fetch_identity(user).await?;
    let mine = profile.identity().public_key().to_bytes();
    let number =
        crate::e2e::safety::safety_number((&profile.config.username, &mine), (user, &current));
    match what {
        TrustWhat::Digits(digits) => {
            let given: String = digits.chars().filter(|c| !c.is_whitespace()).collect();
            if given != number {
                bail!(
                    "those digits are not the safety number of the key the relay presents for {user} now: \
                     nothing was trusted (compare again with `sotto safety-number {user}`)"
                );
            }
        }
        TrustWhat::LastShown => {
            let shown = profile.contacts.get(user).and_then(|c| c.shown_key.clone());
            match shown {
                None => bail!(
                    "compare safety numbers first: `sotto safety-number {user}`, then `sotto trust {user}` \
                     (or `sotto trust {user} DIGITS` with the 60 digits you compared)"
                ),
                Some(shown) if shown != hex::encode(current) => bail!(
                    "the relay now presents another key for {user} than the one whose safety number \
                     you were shown: nothing was trusted. Compare again with `sotto safety-number {user}`"
                ),
                Some(_) => {}
            }
        }
    }
    profile
        .contacts
        .insert(user.to_owned(), Contact::trusted(hex::encode(current)));
    // Sessions made with another key must not be used again.
    let keep = profile
        .sessions
        .get_mut(user)
        .is_some_and(|s| s.retain_identity(&current));
    if !keep {
        profile.sessions.remove(user);
    }
    let shown = release_held(profile, user, warnings);
    if !shown.is_empty() {
        warnings.push(format!(
            "{} held message(s) from {user} can be read now",
            shown.len()
        ));
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

    // The review: the notice for a kept message named the first invitation
    // to its group id, maybe a hijacker's under another name. It names the
    // invitations whose members include the sender, with who sent each.
    #[test]
    fn a_kept_group_message_names_only_the_invitations_its_sender_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut profile = crate::profile::test_profile(dir.path(), "frank");
        let id =
            crate::secret_group::invited_by_alice(&mut profile.secret_groups, &["frank", "bob"]);
        crate::secret_group::hijacked_by_mallory(&mut profile.secret_groups, id);
        let notice = |profile: &mut Profile, from: &str, envelope: u64| {
            let envelope = v1::SecretEnvelope {
                id: envelope,
                from: from.into(),
                ciphertext: vec![1, 2, 3].into(),
                group: id.as_bytes().to_vec().into(),
                ..Default::default()
            };
            match group_message_for_no_group(profile, &envelope, id) {
                Received::Group {
                    notice: Some(notice),
                    ..
                } => notice,
                _ => panic!("not kept"),
            }
        };
        let from_bob = notice(&mut profile, "bob", 1);
        assert!(from_bob.contains("climbers (from alice)"), "{from_bob}");
        assert!(!from_bob.contains("mallory"), "{from_bob}");
        let from_mallory = notice(&mut profile, "mallory", 2);
        assert!(
            from_mallory.contains("climbers-club (from mallory)")
                && !from_mallory.contains("alice"),
            "{from_mallory}"
        );
    }

    // A hostile admin's invitation names the largest timer there is, and a
    // member's message a short one: accepting takes the group's timer
    // without overflow, a message disappears after the shorter of the two
    // (a member cannot lengthen it), and the history's expiry arithmetic
    // holds at the extremes.
    #[test]
    fn hostile_admin_with_an_extreme_group_timer_cannot_overflow_or_lengthen_expiry() {
        use sotto_proto::v1::group_control;

        let dir = tempfile::tempdir().unwrap();
        let mut profile = crate::profile::test_profile(dir.path(), "frank");
        let id = crate::secret_group::GroupId::from_bytes(&[7; 16]).unwrap();
        let mut state = crate::secret_group::forged_state(
            id,
            1,
            "climbers",
            &["frank", "mallory"],
            &["mallory"],
        );
        if let Some(group_control::Kind::State(s)) = &mut state.kind {
            s.timer_secs = u32::MAX;
        }
        profile
            .secret_groups
            .receive_control("mallory", &state)
            .unwrap();
        profile.secret_groups.accept(&id, "mallory").unwrap();
        assert_eq!(profile.secret_groups.timer(&id), Some(u32::MAX));
        let said = |text: &str, expire_secs: u32| {
            v1::SecretContent {
                text: text.into(),
                expire_secs,
                client_id: text.as_bytes().to_vec().into(),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let mut expiries = Vec::new();
        for (n, (text, secs)) in [("no timer of its own", 0), ("thirty", 30)]
            .iter()
            .enumerate()
        {
            match read_group_plaintext(
                &mut profile,
                &id,
                "climbers",
                "mallory",
                n as u64 + 1,
                &said(text, *secs),
            ) {
                Received::Message(entry) => expiries.push(entry.expire_secs),
                _ => panic!("not read"),
            }
        }
        assert_eq!(expiries, [Some(u32::MAX), Some(30)]);
        let mut entry = profile.history().last().unwrap().clone();
        entry.expire_secs = Some(u32::MAX);
        entry.shown_at = Some(i64::MAX - 1);
        assert!(!entry.expired(i64::MAX - 2));
        assert!(entry.expired(i64::MAX));
    }
}
