//! A user's profile directory: `profile.toml` (which relay, its pinned
//! fingerprint, the username: nothing secret) and `vault` (everything else,
//! sealed under the passphrase: identity keys, contacts, local history).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::Identity;
use crate::pinning::Fingerprint;
use crate::relay::RelayClient;
use crate::vault::{Vault, write_atomically};

/// Environment variable with the vault passphrase (else the user is asked).
pub const PASSPHRASE_ENV: &str = "SOTTO_PASSPHRASE";

/// The profile's public settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileConfig {
    pub relay: String,
    pub fingerprint: String,
    pub username: String,
}

/// Which mode a message travelled in.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Normal,
    Secret,
}

/// One message in the local history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The relay's id (0 for a message not yet stored by the relay).
    pub id: u64,
    pub mode: Mode,
    pub from: String,
    /// The other person of a 1:1 conversation (the recipient when we sent it).
    pub peer: Option<String>,
    pub group: Option<String>,
    pub text: String,
    /// Milliseconds since the epoch, as the relay stamped it.
    pub sent_at: i64,
    /// Hex of the sender's client id.
    pub client_id: String,
}

/// What the vault holds.
#[derive(Serialize, Deserialize)]
struct VaultContent {
    identity_signing: String,
    identity_dh: String,
    #[serde(default)]
    history: Vec<HistoryEntry>,
    #[serde(default)]
    contacts: BTreeMap<String, Contact>,
}

#[derive(Serialize)]
struct VaultContentRef<'a> {
    identity_signing: &'a str,
    identity_dh: &'a str,
    history: &'a [HistoryEntry],
    contacts: &'a BTreeMap<String, Contact>,
}

/// What we know of another user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    /// Hex of the Ed25519 identity key we trust for them.
    pub identity_key: String,
}

pub struct Profile {
    pub dir: PathBuf,
    pub config: ProfileConfig,
    pub history: Vec<HistoryEntry>,
    pub contacts: BTreeMap<String, Contact>,
    identity: Identity,
    vault: Vault,
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("profile.toml")
}

fn vault_path(dir: &Path) -> PathBuf {
    dir.join("vault")
}

/// The default profile folder: `$XDG_DATA_HOME/sotto`, else `~/.local/share/sotto`.
pub fn default_dir() -> PathBuf {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(data).join("sotto");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/sotto"),
        None => PathBuf::from(".sotto"),
    }
}

impl Profile {
    pub fn exists(dir: &Path) -> bool {
        vault_path(dir).exists()
    }

    /// Writes a new profile. Refuses to replace an existing one.
    pub fn create(
        dir: &Path,
        config: ProfileConfig,
        identity: Identity,
        passphrase: &str,
    ) -> Result<Self> {
        if Self::exists(dir) {
            bail!("a profile exists already in {}", dir.display());
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let toml = toml::to_string(&config).context("cannot encode the profile settings")?;
        write_atomically(&config_path(dir), toml.as_bytes())?;
        let profile = Profile {
            dir: dir.to_owned(),
            config,
            history: Vec::new(),
            contacts: BTreeMap::new(),
            vault: Vault::create(&vault_path(dir), passphrase, b"")?,
            identity,
        };
        profile.save()?;
        Ok(profile)
    }

    pub fn open(dir: &Path, passphrase: &str) -> Result<Self> {
        if !Self::exists(dir) {
            bail!(
                "no profile in {}: create one with `sotto init --relay ADDR --user NAME`",
                dir.display()
            );
        }
        let text = std::fs::read_to_string(config_path(dir))
            .with_context(|| format!("cannot read {}", config_path(dir).display()))?;
        let config: ProfileConfig = toml::from_str(&text)
            .with_context(|| format!("{} is damaged", config_path(dir).display()))?;
        let (vault, content) = Vault::open(&vault_path(dir), passphrase)?;
        let content: VaultContent =
            serde_json::from_slice(&content).context("the vault content is damaged")?;
        let signing = secret_from_hex(&content.identity_signing)?;
        let dh = secret_from_hex(&content.identity_dh)?;
        Ok(Profile {
            dir: dir.to_owned(),
            config,
            history: content.history,
            contacts: content.contacts,
            identity: Identity::from_secrets(&signing, &dh),
            vault,
        })
    }

    /// Seals the whole profile state into the vault, atomically.
    pub fn save(&self) -> Result<()> {
        let (signing, dh) = self.identity.secrets();
        let signing = Zeroizing::new(hex::encode(*signing));
        let dh = Zeroizing::new(hex::encode(*dh));
        let content = VaultContentRef {
            identity_signing: &signing,
            identity_dh: &dh,
            history: &self.history,
            contacts: &self.contacts,
        };
        let bytes =
            Zeroizing::new(serde_json::to_vec(&content).context("cannot encode the vault")?);
        self.vault.save(&bytes)?;
        Ok(())
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn fingerprint(&self) -> Result<Fingerprint> {
        Fingerprint::parse(&self.config.fingerprint).map_err(anyhow::Error::msg)
    }

    /// Connects to the profile's relay with its pinned certificate and logs in.
    pub async fn connect(&self) -> Result<RelayClient> {
        let client = RelayClient::connect(&self.config.relay, Some(self.fingerprint()?)).await?;
        client
            .login(&self.config.username, &self.identity)
            .await
            .with_context(|| format!("cannot log in as {}", self.config.username))?;
        Ok(client)
    }

    /// Adds `entry` unless the same message is in the history already.
    pub fn remember(&mut self, entry: HistoryEntry) -> bool {
        let duplicate = self.history.iter().any(|e| {
            e.from == entry.from && e.client_id == entry.client_id && e.mode == entry.mode
        });
        if !duplicate {
            self.history.push(entry);
        }
        !duplicate
    }
}

fn secret_from_hex(text: &str) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, out.as_mut()).context("the vault holds a damaged key")?;
    Ok(out)
}
