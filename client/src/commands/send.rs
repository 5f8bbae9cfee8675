//! `sotto send USER TEXT` and `sotto send --group GROUP TEXT`: returns only once
//! the relay has stored the message durably.

use std::io::Write;

use anyhow::Result;

use super::{new_client_id, with_retries};
use crate::profile::{HistoryEntry, Mode, Profile};
use crate::relay::Recipient;

pub async fn run(
    profile: &mut Profile,
    to: Recipient<'_>,
    text: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let client_id = new_client_id();
    let stored = with_retries(|| async {
        let client = profile.connect().await?;
        let stored = client
            .send_normal(clone_recipient(&to), text, client_id)
            .await?;
        client.close().await;
        Ok(stored)
    })
    .await?;
    let (peer, group) = match to {
        Recipient::User(u) => (Some(u.to_owned()), None),
        Recipient::Group(g) => (None, Some(g.to_owned())),
    };
    profile.remember(HistoryEntry {
        id: stored.id,
        mode: Mode::Normal,
        from: profile.config.username.clone(),
        peer: peer.clone(),
        group: group.clone(),
        text: text.to_owned(),
        sent_at: stored.sent_at,
        client_id: hex::encode(client_id),
    });
    profile.save()?;
    match (peer, group) {
        (Some(peer), _) => writeln!(out, "sent to {peer}")?,
        (_, Some(group)) => writeln!(out, "sent to group {group}")?,
        _ => {}
    }
    Ok(())
}

fn clone_recipient<'a>(to: &Recipient<'a>) -> Recipient<'a> {
    match to {
        Recipient::User(u) => Recipient::User(u),
        Recipient::Group(g) => Recipient::Group(g),
    }
}
