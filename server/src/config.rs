//! `relay.toml`: the operator's configuration. Every field has a default, so an
//! empty file (or none) is a working relay; command-line flags override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// Hard limit of one frame's body, in bytes.
    pub max_frame_bytes: usize,
    /// The at-rest master key; relative paths are inside the data directory.
    /// `SOTTO_MASTER_KEY` (64 hex digits) overrides the file.
    pub master_key_file: PathBuf,
    /// How long an undelivered secret envelope is kept, in seconds.
    pub secret_ttl_secs: u64,
    /// A connection with no traffic for this long is closed, in seconds.
    pub idle_timeout_secs: u64,
    /// Requests one connection may have in flight at once.
    pub max_concurrent_requests: u32,
    /// Prekey bundles of one account that others may take per minute
    /// (each uses up one of its one-time prekeys).
    pub prekey_bundles_per_minute: u32,
    pub warrant: WarrantConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarrantConfig {
    /// The longest disclosure window a warrant may ask for, in days.
    pub max_window_days: u32,
    /// The most targets one warrant may name.
    pub max_targets: u32,
    /// Warrant and unmask requests accepted per minute from each registered
    /// authority (requests no authority signed have a small budget of their own).
    pub requests_per_minute: u32,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            max_frame_bytes: sotto_proto::DEFAULT_MAX_FRAME,
            master_key_file: PathBuf::from("master.key"),
            secret_ttl_secs: 30 * 24 * 3600,
            idle_timeout_secs: 60,
            max_concurrent_requests: 64,
            prekey_bundles_per_minute: 120,
            warrant: WarrantConfig::default(),
        }
    }
}

impl Default for WarrantConfig {
    fn default() -> Self {
        WarrantConfig {
            max_window_days: 90,
            max_targets: 16,
            requests_per_minute: 30,
        }
    }
}

impl RelayConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        if !path.exists() {
            return Ok(RelayConfig::default());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid relay configuration", path.display()))
    }

    /// The file `init` writes: every setting with its default and what it means.
    pub fn commented_default() -> String {
        let d = RelayConfig::default();
        format!(
            "# sotto relay configuration. Every setting is optional; these are the defaults.\n\
             \n\
             # Address the QUIC endpoint binds (flag: serve --listen).\n\
             listen = \"{listen}\"\n\
             # Hard limit of one frame's body, in bytes.\n\
             max_frame_bytes = {frame}\n\
             # The at-rest master key. Relative paths are inside the data directory.\n\
             # In production keep it on another disk, or pass SOTTO_MASTER_KEY instead.\n\
             master_key_file = \"{key}\"\n\
             # How long an undelivered secret envelope is kept, in seconds (30 days).\n\
             secret_ttl_secs = {ttl}\n\
             # A connection with no traffic for this long is closed, in seconds.\n\
             idle_timeout_secs = {idle}\n\
             # Requests one connection may have in flight at once.\n\
             max_concurrent_requests = {streams}\n\
             # Prekey bundles of one account that others may take per minute.\n\
             prekey_bundles_per_minute = {bundles}\n\
             \n\
             [warrant]\n\
             # The longest disclosure window a warrant may ask for, in days.\n\
             max_window_days = {window}\n\
             # The most targets one warrant may name.\n\
             max_targets = {targets}\n\
             # Warrant and unmask requests accepted per minute from each registered authority.\n\
             requests_per_minute = {rate}\n",
            listen = d.listen,
            frame = d.max_frame_bytes,
            key = d.master_key_file.display(),
            ttl = d.secret_ttl_secs,
            idle = d.idle_timeout_secs,
            streams = d.max_concurrent_requests,
            bundles = d.prekey_bundles_per_minute,
            window = d.warrant.max_window_days,
            targets = d.warrant.max_targets,
            rate = d.warrant.requests_per_minute,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_default_parses_to_the_default() {
        let parsed: RelayConfig = toml::from_str(&RelayConfig::commented_default()).unwrap();
        assert_eq!(parsed.listen, RelayConfig::default().listen);
        assert_eq!(parsed.warrant.max_window_days, 90);
    }

    #[test]
    fn an_unknown_setting_is_an_error() {
        assert!(toml::from_str::<RelayConfig>("lisen = \"127.0.0.1:1\"").is_err());
    }
}
