//! `sotto outbox list | retry ID | drop ID`: the messages the relay has not
//! taken yet, and what to do with one it refused (see [`crate::outbox`]).

use std::io::Write;

use anyhow::{Result, bail};

use crate::outbox::{self, Outcome};
use crate::profile::Profile;

/// A field of a message as one safe line: control characters escaped (see
/// [`sotto_proto::printable`]), cut after `most` characters.
fn shown(text: &str, most: usize) -> String {
    let escaped = sotto_proto::printable::printable(text);
    if escaped.chars().count() > most {
        format!("{}…", escaped.chars().take(most).collect::<String>())
    } else {
        escaped.into_owned()
    }
}

pub fn list(profile: &Profile, out: &mut dyn Write) -> Result<()> {
    let waiting = outbox::list(profile);
    if waiting.is_empty() {
        writeln!(
            out,
            "the outbox is empty: the relay has every message you sent"
        )?;
        return Ok(());
    }
    for w in waiting {
        let mode = if w.secret { "secret" } else { "normal" };
        let status = match &w.failed {
            None => "waiting".to_owned(),
            Some(reason) => format!("FAILED: {}", shown(reason, 120)),
        };
        writeln!(
            out,
            "{}  {mode}  to {}  {status}  {}",
            w.id,
            shown(&w.to, 40),
            shown(&w.text, 60)
        )?;
    }
    Ok(())
}

pub async fn retry(profile: &mut Profile, id: &str, out: &mut dyn Write) -> Result<()> {
    let client = profile.connect().await?;
    let outcome = outbox::retry(profile, &client, id).await;
    client.close().await;
    match outcome? {
        Outcome::Stored => writeln!(out, "sent: the relay has it now")?,
        Outcome::Failed(reason) => bail!(
            "the relay refused it again: {reason}; it stays in the outbox (`sotto outbox drop {id}` removes it)"
        ),
    }
    Ok(())
}

pub fn drop(profile: &mut Profile, id: &str, out: &mut dyn Write) -> Result<()> {
    let client_id = outbox::drop(profile, id)?;
    writeln!(out, "dropped {}: it will not be sent", &client_id[..8])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_waiting_message_is_one_escaped_line_cut_at_its_width() {
        assert_eq!(
            shown("hi\n\x1b[2J\u{202e}bye", 60),
            "hi\\n\\u{1b}[2J\\u{202e}bye"
        );
        assert_eq!(shown("abcdef", 3), "abc…");
    }
}
