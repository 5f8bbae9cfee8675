//! `sotto safety-number USER` and `sotto trust USER`: key verification.

use std::io::Write;

use anyhow::Result;

use crate::e2e::safety;
use crate::profile::Profile;

fn number(profile: &Profile, user: &str, key: &[u8; 32]) -> String {
    let mine = profile.identity().public_key().to_bytes();
    safety::safety_number((&profile.config.username, &mine), (user, key))
}

pub async fn safety_number(profile: &mut Profile, user: &str, out: &mut dyn Write) -> Result<()> {
    let fetched = if profile.contacts.contains_key(user) {
        None
    } else {
        let client = profile.connect().await?;
        let key = client.fetch_identity(user).await?;
        client.close().await;
        Some(key)
    };
    let text =
        crate::secret::safety_text(profile, user, fetched, &format!("`sotto trust {user}`"))?;
    profile.save()?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// `sotto trust USER [DIGITS]`: accepts the key whose safety number was
/// last shown (or whose number is DIGITS), if the relay presents it now.
pub async fn trust(
    profile: &mut Profile,
    user: &str,
    digits: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let client = profile.connect().await?;
    let what = match digits {
        Some(d) => crate::secret::TrustWhat::Digits(d),
        None => crate::secret::TrustWhat::LastShown,
    };
    let mut warnings = Vec::new();
    let key = crate::secret::trust(profile, &client, user, what, &mut warnings).await?;
    client.close().await;
    for warning in &warnings {
        writeln!(out, "{warning}")?;
    }
    writeln!(
        out,
        "trusting {user}'s identity key now; the safety number is:\n"
    )?;
    writeln!(out, "{}", safety::display(&number(profile, user, &key)))?;
    Ok(())
}
