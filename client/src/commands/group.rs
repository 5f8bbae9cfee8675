//! `sotto group create GROUP USER...`: a normal-mode group with these members.

use std::io::Write;

use anyhow::Result;

use crate::profile::Profile;

pub async fn create(
    profile: &Profile,
    name: &str,
    members: &[String],
    out: &mut dyn Write,
) -> Result<()> {
    let client = profile.connect().await?;
    let created = client.create_group(name, members).await?;
    client.close().await;
    writeln!(
        out,
        "created group {} with {}",
        created.name,
        created.members.join(", ")
    )?;
    Ok(())
}
