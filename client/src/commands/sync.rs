//! `sotto sync [--json]`: fetch what arrived, keep it in the vault, acknowledge
//! it, print it (one message a header line; further lines of a message are
//! indented under it, and every control character is escaped, so no message
//! can forge a line that looks like another message).
//!
//! Order matters: the vault (history and ratchet states) is saved before the
//! relay is told to drop its copy, so a crash at any point loses nothing (at
//! worst a message is fetched twice, and the history keeps it once). A
//! message is kept marked unprinted until its reader took it
//! ([`crate::output`]): `sotto sync | head -1` prints one, and the next
//! `sync` prints the rest.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;
use sotto_proto::v1::NormalMessage;
use sotto_proto::{layout, printable};

use super::rfc3339;
use crate::profile::{HistoryEntry, KeptNotice, Mode, Profile, now_ms};
use crate::relay::RelayClient;
use crate::secret::{self, Received};

#[derive(Serialize)]
struct JsonLine<'a> {
    id: u64,
    mode: Mode,
    from: &'a str,
    group: Option<&'a str>,
    text: &'a str,
    sent_at: String,
}

/// `sync` printing into `out`, every line counted as read once written.
pub async fn run(profile: &mut Profile, json: bool, out: &mut dyn Write) -> Result<()> {
    run_to(profile, json, None, out, &|| Ok(true)).await
}

/// `sync` printing into `out`; `taken` says whether what was written so far
/// reached its reader ([`crate::output::stdout_taken`] for standard output).
/// `width`: the terminal's, when `out` is one (see [`print_entry`]).
pub async fn run_to(
    profile: &mut Profile,
    json: bool,
    width: Option<usize>,
    out: &mut dyn Write,
    taken: &dyn Fn() -> std::io::Result<bool>,
) -> Result<()> {
    let client = profile.connect().await?;
    match secret::flush_outbox(profile, &client).await {
        Ok(refused) => {
            for (client_id, reason) in refused {
                eprintln!(
                    "sotto: the relay refused secret message {}: {reason} (see `sotto outbox list`)",
                    &client_id[..8]
                );
            }
        }
        Err(e) => eprintln!("sotto: the outbox could not be sent yet: {e:#}"),
    }
    let mut fetched = fetch_new(profile, &client, true).await?;
    if let Err(e) =
        secret::send_receipts(profile, &client, &fetched.entries, &mut fetched.warnings).await
    {
        fetched.warnings.push(format!(
            "the senders were not all told their secret messages arrived: {e:#}"
        ));
    }
    client.close().await;
    for warning in &fetched.warnings {
        eprintln!("sotto: {warning}");
    }
    // What this fetch brought and what an earlier `sync` could not print.
    let mut waiting: Vec<HistoryEntry> = profile
        .history()
        .iter()
        .filter(|e| e.unprinted)
        .cloned()
        .collect();
    waiting.sort_by_key(|e| e.sent_at);
    let mut failure = None;
    let notices_taken = print_notices(profile, json, width, out, taken).unwrap_or_else(|e| {
        failure = Some(e);
        false
    });
    let mut printed = Vec::with_capacity(waiting.len());
    for entry in waiting.into_iter().filter(|_| notices_taken) {
        let written = print_entry(&entry, json, width, out)
            .and_then(|()| Ok(out.flush()?))
            .and_then(|()| Ok(taken()?));
        match written {
            Ok(true) => printed.push(entry),
            Ok(false) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    profile.update_history(|entry| {
        let now_printed = entry.unprinted
            && printed.iter().any(|p| {
                p.mode == entry.mode && p.from == entry.from && p.client_id == entry.client_id
            });
        if now_printed {
            entry.unprinted = false;
        }
        now_printed
    });
    profile.save()?;
    mark_shown(profile, &printed)?;
    match failure {
        Some(e) => {
            Err(e.context("cannot print the messages (the rest wait for the next `sotto sync`)"))
        }
        None => Ok(()),
    }
}

/// Prints the relay's notices not shown yet, each marked shown once its
/// reader took it; whether the reader took them all.
fn print_notices(
    profile: &mut Profile,
    json: bool,
    width: Option<usize>,
    out: &mut dyn Write,
    taken: &dyn Fn() -> std::io::Result<bool>,
) -> Result<bool> {
    for n in profile.notices.iter_mut().filter(|n| !n.shown) {
        if json {
            writeln!(out, "{}", printable::to_json(&NoticeLine::from(&*n))?)?;
        } else {
            let header = format!("{} [notice from the relay] ", rfc3339(n.issued_at));
            writeln!(out, "{}", layout::entry(&header, &notice_text(n), width))?;
        }
        out.flush()?;
        if !taken()? {
            return Ok(false);
        }
        n.shown = true;
    }
    Ok(true)
}

/// A notice as one JSON line of `sync --json`: `"kind": "warrant_notice"`
/// (messages have no `kind`).
#[derive(Serialize)]
struct NoticeLine<'a> {
    kind: &'static str,
    authority: &'a str,
    warrant_id: &'a str,
    case: &'a str,
    legal_basis: &'a str,
    window_from: String,
    window_until: String,
    records_disclosed: u64,
    target: bool,
    secret_disclosed: bool,
    issued_at: String,
}

impl<'a> From<&'a KeptNotice> for NoticeLine<'a> {
    fn from(n: &'a KeptNotice) -> Self {
        NoticeLine {
            kind: "warrant_notice",
            authority: &n.authority,
            warrant_id: &n.warrant_id,
            case: &n.case_reference,
            legal_basis: &n.legal_basis,
            window_from: rfc3339(n.window_from.saturating_mul(1000)),
            window_until: rfc3339(n.window_until.saturating_mul(1000)),
            records_disclosed: n.records,
            target: n.target,
            secret_disclosed: false,
            issued_at: rfc3339(n.issued_at),
        }
    }
}

/// What a warrant notice says, for a person.
pub fn notice_text(n: &KeptNotice) -> String {
    let p = |s: &str| printable::printable(s).into_owned();
    let why = if n.target {
        "you were a target of a warrant".to_owned()
    } else {
        "you were not a target, but took part in a target's conversations, and the authority \
         asked for your name"
            .to_owned()
    };
    format!(
        "{why}: authority {}, warrant {}, case {}, legal basis {}. It disclosed {} of your \
         normal messages sent from {} until {}. Secret chats were not disclosed, and cannot be: \
         the relay holds nothing readable of them.",
        p(&n.authority),
        p(&n.warrant_id),
        p(&n.case_reference),
        p(&n.legal_basis),
        n.records,
        rfc3339(n.window_from.saturating_mul(1000)),
        rfc3339(n.window_until.saturating_mul(1000)),
    )
}

/// What a fetch brought: new messages, oldest first, and warnings for the user
/// (a changed identity key, a secret message that could not be read).
pub struct Fetched {
    pub entries: Vec<HistoryEntry>,
    pub warnings: Vec<String>,
    /// Secret chats whose disappearing timer the peer set: (peer, seconds).
    pub timers: Vec<(String, Option<u32>)>,
    /// Secret groups whose timer a member set: (group name, seconds).
    pub group_timers: Vec<(String, Option<u32>)>,
    /// Client ids (hex) of our secret messages the recipient's client said
    /// it decrypted and kept.
    pub delivered: Vec<String>,
}

/// Fetches everything waiting at the relay, keeps it in the vault (marked
/// unprinted when `to_print`: `sotto sync` prints it next), then
/// acknowledges it. Tops up prekeys when the relay says they run low.
pub async fn fetch_new(
    profile: &mut Profile,
    client: &RelayClient,
    to_print: bool,
) -> Result<Fetched> {
    let mut arrived = Vec::new();
    let mut timers = Vec::new();
    let mut group_timers = Vec::new();
    let mut warnings = Vec::new();
    let mut delivered = Vec::new();
    let mut group_answers = Vec::new();
    loop {
        let batch = client.fetch(sotto_proto::MAX_FETCH).await?;
        let upto = batch.normal.iter().map(|m| m.seq).max().unwrap_or(0);
        let batch_start = arrived.len();
        for message in &batch.normal {
            let mut entry = normal_entry(message);
            entry.unprinted = to_print;
            if profile.remember(entry.clone()) {
                arrived.push(entry);
            }
        }
        let mut secret_ids = Vec::with_capacity(batch.secret.len());
        for envelope in &batch.secret {
            match secret::receive(profile, envelope, &mut warnings) {
                Received::Message(entry) => arrived.push(entry),
                Received::Again => {}
                Received::Held(reason) | Received::Dropped(reason) => warnings.push(reason),
                Received::Receipt { client_ids, .. } => delivered.extend(client_ids),
                Received::Timer { peer, secs, notice } => {
                    warnings.push(notice);
                    timers.push((peer, secs));
                }
                Received::GroupTimer {
                    group,
                    secs,
                    notice,
                } => {
                    warnings.push(notice);
                    group_timers.push((group, secs));
                }
                Received::Group { notice, send } => {
                    warnings.extend(notice);
                    group_answers.extend(send);
                }
            }
            secret_ids.push(envelope.id);
        }
        if to_print {
            // Secret messages went into the history as they were decrypted.
            let new = &arrived[batch_start..];
            profile.update_history(|entry| {
                let mark = !entry.unprinted
                    && entry.mode == Mode::Secret
                    && new.iter().any(|n| {
                        n.mode == Mode::Secret
                            && n.from == entry.from
                            && n.client_id == entry.client_id
                    });
                entry.unprinted |= mark;
                mark
            });
        }
        let notice_ids: Vec<u64> = batch.notices.iter().map(|n| n.id).collect();
        for notice in &batch.notices {
            profile.remember_notice(notice);
        }
        profile.save()?;
        // A group's answers (sender keys, state for a newcomer) go out
        // before the relay drops what asked for them.
        for answer in std::mem::take(&mut group_answers) {
            if let Err(e) = secret::send_group_control(profile, client, answer).await {
                warnings.push(format!("a secret group answer was not sent: {e:#}"));
            }
        }
        if upto > 0 || !secret_ids.is_empty() {
            client.ack(upto, secret_ids).await?;
        }
        if !notice_ids.is_empty() {
            client.ack_notices(notice_ids).await?;
        }
        // Top up one-time prekeys when the relay says they run low, and
        // replace the signed prekey once it is a week old.
        if let Some(low) = &batch.prekeys_low {
            secret::publish_prekeys(profile, client, Some(low.into())).await?;
        } else if profile.prekeys.signed_prekey_due(now_ms()) {
            secret::publish_prekeys(profile, client, Some(secret::RelayHolds::FULL)).await?;
        }
        if !batch.more {
            break;
        }
    }
    arrived.sort_by_key(|e| e.sent_at);
    Ok(Fetched {
        entries: arrived,
        warnings,
        timers,
        group_timers,
        delivered,
    })
}

/// Disappearing messages start their timer once shown.
pub fn mark_shown(profile: &mut Profile, shown: &[HistoryEntry]) -> Result<()> {
    if !shown.iter().any(|e| e.expire_secs.is_some()) {
        return Ok(());
    }
    let now = now_ms();
    profile.update_history(|entry| {
        let now_shown = entry.expire_secs.is_some()
            && entry.shown_at.is_none()
            && shown
                .iter()
                .any(|s| s.from == entry.from && s.client_id == entry.client_id);
        if now_shown {
            entry.shown_at = Some(now);
        }
        now_shown
    });
    profile.save()
}

fn normal_entry(m: &NormalMessage) -> HistoryEntry {
    HistoryEntry {
        id: m.id,
        mode: Mode::Normal,
        from: m.from.clone(),
        peer: (!m.to.is_empty()).then(|| m.from.clone()),
        group: (!m.group.is_empty()).then(|| m.group.clone()),
        text: m.text.clone(),
        sent_at: m.sent_at,
        client_id: hex::encode(&m.client_id),
        expire_secs: None,
        shown_at: None,
        unprinted: false,
        delivered: false,
    }
}

/// Prints one message, as a JSON object or for a person: a header line
/// (time, sender, the text's first line), then its further lines indented.
/// With the terminal's `width`, lines are also wrapped here, indented,
/// before the terminal would wrap them itself: its own wrapping would start a
/// row at the left edge, where a message could line up a forged header.
pub fn print_entry(
    entry: &HistoryEntry,
    json: bool,
    width: Option<usize>,
    out: &mut dyn Write,
) -> Result<()> {
    if json {
        let line = JsonLine {
            id: entry.id,
            mode: entry.mode,
            from: &entry.from,
            group: entry.group.as_deref(),
            text: &entry.text,
            sent_at: rfc3339(entry.sent_at),
        };
        writeln!(out, "{}", printable::to_json(&line)?)?;
        return Ok(());
    }
    let when = rfc3339(entry.sent_at);
    let lock = if entry.mode == Mode::Secret {
        "[secret] "
    } else {
        ""
    };
    let from = printable::printable(&entry.from);
    let header = match &entry.group {
        Some(group) => format!("{when} {lock}[{}] {from}: ", printable::printable(group)),
        None => format!("{when} {lock}{from}: "),
    };
    writeln!(out, "{}", layout::entry(&header, &entry.text, width))?;
    Ok(())
}
