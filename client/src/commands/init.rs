//! `sotto init`: make an identity, register it with the relay, pin the relay.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::identity::Identity;
use crate::pinning::Fingerprint;
use crate::profile::{Profile, ProfileConfig};
use crate::relay::RelayClient;

pub struct InitArgs<'a> {
    pub relay: &'a str,
    pub fingerprint: Option<&'a str>,
    pub user: &'a str,
}

pub async fn run(
    dir: &Path,
    args: InitArgs<'_>,
    passphrase: &str,
    out: &mut dyn Write,
) -> Result<()> {
    sotto_proto::names::validate_new_username(args.user).context("invalid username")?;
    if Profile::exists(dir) {
        anyhow::bail!(
            "a profile exists already in {}; use --profile DIR for another one",
            dir.display()
        );
    }
    let pin = args
        .fingerprint
        .map(Fingerprint::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let client = RelayClient::connect(args.relay, pin).await?;
    let fingerprint = client.fingerprint();
    if pin.is_none() {
        writeln!(
            out,
            "warning: no --fingerprint given; trusting the relay's certificate {fingerprint} on first use.\n\
             Compare it with the one the relay's operator published; it is pinned from now on."
        )?;
    }
    // The vault is written before registering, so a registered name always has its keys.
    let identity = Identity::generate();
    let config = ProfileConfig {
        relay: args.relay.to_owned(),
        fingerprint: fingerprint.to_string(),
        username: args.user.to_owned(),
    };
    let mut profile = Profile::create(dir, config, identity, passphrase)?;
    if let Err(e) = client.register(args.user, profile.identity()).await {
        let _ = std::fs::remove_dir_all(dir);
        return Err(e).with_context(|| format!("cannot register {}", args.user));
    }
    crate::secret::publish_prekeys(&mut profile, &client, None)
        .await
        .context("registered, but the keys for secret chats could not be published; `sotto sync` retries")?;
    client.close().await;
    writeln!(
        out,
        "registered {} at {} ({fingerprint})",
        args.user, args.relay
    )?;
    writeln!(out, "profile: {}", dir.display())?;
    Ok(())
}
