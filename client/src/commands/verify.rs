//! `sotto safety-number USER` and `sotto trust USER`: key verification.

use std::io::Write;

use anyhow::Result;

use crate::e2e::safety;
use crate::profile::Profile;

/// The key we hold for `user` (trusted, or as first seen now), as bytes.
async fn contact_key(profile: &mut Profile, user: &str) -> Result<[u8; 32]> {
    if let Some(c) = profile.contacts.get(user) {
        let mut key = [0u8; 32];
        hex::decode_to_slice(&c.identity_key, &mut key)?;
        return Ok(key);
    }
    let client = profile.connect().await?;
    let key = client.fetch_identity(user).await?;
    client.close().await;
    profile.contacts.insert(
        user.to_owned(),
        crate::profile::Contact::trusted(hex::encode(key)),
    );
    profile.save()?;
    Ok(key)
}

fn number(profile: &Profile, user: &str, key: &[u8; 32]) -> String {
    let mine = profile.identity().public_key().to_bytes();
    safety::safety_number((&profile.config.username, &mine), (user, key))
}

pub async fn safety_number(profile: &mut Profile, user: &str, out: &mut dyn Write) -> Result<()> {
    let key = contact_key(profile, user).await?;
    crate::secret::mark_shown(profile, user);
    profile.save()?;
    writeln!(out, "safety number with {user}:\n")?;
    writeln!(out, "{}\n", safety::display(&number(profile, user, &key)))?;
    writeln!(
        out,
        "Compare it with what {user}'s `sotto safety-number {}` shows, in person or on a call.\n\
         If all 60 digits match, nobody sits between you.",
        profile.config.username
    )?;
    if let Some(changed) = profile
        .contacts
        .get(user)
        .and_then(|c| c.changed_to.clone())
    {
        let mut new = [0u8; 32];
        hex::decode_to_slice(&changed, &mut new)?;
        writeln!(
            out,
            "\nWARNING: {user} now presents a different identity key. With it the number would be:\n\n{}\n\n\
             If that is the one {user} reads to you, accept exactly that key with `sotto trust {user}`.",
            safety::display(&number(profile, user, &new))
        )?;
    }
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
