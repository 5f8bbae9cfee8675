//! `sotto sync [--json]`: fetch what arrived, keep it in the vault, acknowledge
//! it, print it (one message a line).
//!
//! Order matters: the vault is saved before the relay is told to drop its copy,
//! so a crash at any point loses nothing (at worst a message is fetched twice,
//! and the history keeps it once).

use std::io::Write;

use anyhow::Result;
use serde::Serialize;
use sotto_proto::v1::NormalMessage;

use super::rfc3339;
use crate::profile::{HistoryEntry, Mode, Profile};

#[derive(Serialize)]
struct JsonLine<'a> {
    id: u64,
    mode: Mode,
    from: &'a str,
    group: Option<&'a str>,
    text: &'a str,
    sent_at: String,
}

pub async fn run(profile: &mut Profile, json: bool, out: &mut dyn Write) -> Result<()> {
    let client = profile.connect().await?;
    let mut arrived = Vec::new();
    loop {
        let batch = client.fetch(sotto_proto::MAX_FETCH).await?;
        let upto = batch.normal.iter().map(|m| m.seq).max();
        for message in &batch.normal {
            let entry = normal_entry(message);
            if profile.remember(entry.clone()) {
                arrived.push(entry);
            }
        }
        profile.save()?;
        if let Some(upto) = upto {
            client.ack(upto, Vec::new()).await?;
        }
        if !batch.more {
            break;
        }
    }
    client.close().await;
    for entry in &arrived {
        print_entry(entry, json, out)?;
    }
    Ok(())
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
    }
}

/// Prints one message, as a JSON object or a line for a person.
pub fn print_entry(entry: &HistoryEntry, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        let line = JsonLine {
            id: entry.id,
            mode: entry.mode,
            from: &entry.from,
            group: entry.group.as_deref(),
            text: &entry.text,
            sent_at: rfc3339(entry.sent_at),
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    } else {
        let when = rfc3339(entry.sent_at);
        let lock = if entry.mode == Mode::Secret {
            "🔒 "
        } else {
            ""
        };
        match &entry.group {
            Some(group) => writeln!(out, "{when} {lock}[{group}] {}: {}", entry.from, entry.text)?,
            None => writeln!(out, "{when} {lock}{}: {}", entry.from, entry.text)?,
        }
    }
    Ok(())
}
