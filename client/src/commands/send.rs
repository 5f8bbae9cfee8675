//! `sotto send USER TEXT` and `sotto send --group GROUP TEXT`: returns only once
//! the relay has stored the message durably. While `sotto chat` holds the
//! profile, the message goes through it ([`through_chat`]).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{new_client_id, with_retries};
use crate::control::{self, Answer, Request};
use crate::profile::Profile;
use crate::relay::Recipient;
use crate::tui::app::ConvKey;

/// The message text: the argument, or for `-` standard input (at most
/// [`sotto_proto::MAX_TEXT`] bytes of UTF-8, without its final newline).
pub fn text_from(arg: String, stdin: impl Read) -> Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut bytes = Vec::new();
    stdin
        .take(sotto_proto::MAX_TEXT as u64 + 2)
        .read_to_end(&mut bytes)
        .context("cannot read the message from standard input")?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.len() > sotto_proto::MAX_TEXT {
        bail!(
            "the message on standard input is longer than {} bytes, the most a message holds",
            sotto_proto::MAX_TEXT
        );
    }
    String::from_utf8(bytes).context("the message on standard input is not UTF-8 text")
}

/// Hands the message to the `sotto chat` serving this profile, if one does,
/// and prints what it answered. `Ok(false)`: no chat client serves it.
pub async fn through_chat(dir: &Path, request: &Request, out: &mut dyn Write) -> Result<bool> {
    let Request::Send(send) = request;
    if let Err(reason) = send.check() {
        bail!("{reason}");
    }
    match control::forward(dir, request).await? {
        None => Ok(false),
        Some(Answer::Stored(line)) => {
            writeln!(out, "{line}")?;
            Ok(true)
        }
        Some(Answer::NotStored(why)) => bail!("{why}"),
    }
}

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
    profile.remember_sent_normal(&stored, peer, group, text, &hex::encode(client_id));
    profile.save()?;
    let to = match to {
        Recipient::User(user) => ConvKey::Direct(user.to_owned()),
        Recipient::Group(group) => ConvKey::Group(group.to_owned()),
    };
    writeln!(out, "{}", control::sent_line(&to))?;
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
    crate::secret::check_size(text)?;
    let client = with_retries(|| profile.connect()).await?;
    // What waits from before goes first (what was refused for good stays
    // marked in the outbox and blocks nothing).
    for (client_id, reason) in crate::secret::flush_outbox(profile, &client).await? {
        eprintln!(
            "sotto: the relay refused an earlier secret message {}: {reason} (see `sotto outbox list`)",
            &client_id[..8]
        );
    }
    let outgoing = crate::secret::Outgoing::message(text, expire_secs, new_client_id());
    let entry = crate::secret::prepare(profile, &client, to, outgoing).await?;
    let mut result = crate::secret::deliver(profile, &client, &entry).await;
    if result.is_err() {
        // One more try on a fresh connection (same client id: queued once).
        if let Ok(again) = profile.connect().await {
            result = crate::secret::deliver(profile, &again, &entry).await;
            again.close().await;
        }
    }
    client.close().await;
    let delivered = result.map_err(|e| {
        e.context(format!(
            "the secret message to {to} is encrypted and kept in the outbox, but the relay has not stored it yet; \
             `sotto sync` or the next send retries it"
        ))
    })?;
    if let crate::secret::Delivered::Failed(reason) = delivered {
        bail!(
            "the relay refused the secret message to {to}: {reason}. It is kept in the outbox, \
             marked failed: `sotto outbox retry {}` or `sotto outbox drop {}`",
            &entry.client_id[..8],
            &entry.client_id[..8]
        );
    }
    writeln!(
        out,
        "{}",
        control::sent_line(&ConvKey::Secret(to.to_owned()))
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dash_reads_standard_input_without_its_final_newline() {
        let text = |arg: &str, input: &[u8]| text_from(arg.into(), input);
        assert_eq!(text("hi", b"ignored".as_slice()).unwrap(), "hi");
        assert_eq!(text("-", b"two\nlines\n".as_slice()).unwrap(), "two\nlines");
        assert_eq!(text("-", b"crlf\r\n".as_slice()).unwrap(), "crlf");
        let most = vec![b'a'; sotto_proto::MAX_TEXT];
        assert_eq!(
            text("-", &[most.as_slice(), b"\n"].concat()).unwrap().len(),
            most.len()
        );
        let err = text("-", &[most.as_slice(), b"a"].concat()).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
        let err = text("-", b"\xff\xfe".as_slice()).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
