//! `sotto send USER TEXT` and `sotto send --group GROUP TEXT`: returns only once
//! the relay has stored the message durably.

use std::io::Write;

use anyhow::Result;

use super::{new_client_id, with_retries};
use crate::profile::Profile;
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
        let stored = client.send_normal(to, text, client_id).await?;
        client.close().await;
        Ok(stored)
    })
    .await?;
    let (peer, group) = match to {
        Recipient::User(u) => (Some(u.to_owned()), None),
        Recipient::Group(g) => (None, Some(g.to_owned())),
    };
    profile.remember_sent_normal(
        &stored,
        peer.clone(),
        group.clone(),
        text,
        &hex::encode(client_id),
    );
    profile.save()?;
    match (peer, group) {
        (Some(peer), _) => writeln!(out, "sent to {peer}")?,
        (_, Some(group)) => writeln!(out, "sent to group {group}")?,
        _ => {}
    }
    Ok(())
}

/// `sotto send --secret USER TEXT [--expire T]`: end-to-end encrypted. The
/// encrypted message and the ratchet step that made it are saved first; then
/// the relay is given the ciphertext. If that fails, the message stays in the
/// outbox and the next `send` or `sync` delivers it.
pub async fn run_secret(
    profile: &mut Profile,
    to: &str,
    text: &str,
    expire_secs: Option<u32>,
    out: &mut dyn Write,
) -> Result<()> {
    let client = with_retries(|| profile.connect()).await?;
    crate::secret::flush_outbox(profile, &client).await?;
    let entry = crate::secret::prepare(profile, &client, to, text, expire_secs).await?;
    let mut result = crate::secret::deliver(profile, &client, &entry).await;
    if result.is_err() {
        // One more try on a fresh connection (same client id: queued once).
        if let Ok(again) = profile.connect().await {
            result = crate::secret::deliver(profile, &again, &entry).await;
            again.close().await;
        }
    }
    client.close().await;
    result.map_err(|e| {
        e.context(format!(
            "the secret message to {to} is encrypted and kept in the outbox, but the relay has not stored it yet; \
             `sotto sync` or the next send retries it"
        ))
    })?;
    writeln!(out, "sent to {to} (secret)")?;
    Ok(())
}
