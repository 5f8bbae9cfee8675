//! A user's profile directory: `profile.toml` (which relay, its pinned
//! fingerprint, the username: nothing secret) and `vault` (everything else,
//! sealed under the passphrase: identity keys, contacts, local history).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::e2e::{LocalPrekeys, Session};
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
    /// Disappearing message: seconds it lives after it is first shown.
    #[serde(default)]
    pub expire_secs: Option<u32>,
    /// When it was first shown (milliseconds since the epoch).
    #[serde(default)]
    pub shown_at: Option<i64>,
}

impl HistoryEntry {
    /// True when a disappearing message's timer has run out at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        match (self.expire_secs, self.shown_at) {
            (Some(secs), Some(shown)) => now_ms >= shown.saturating_add(i64::from(secs) * 1000),
            _ => false,
        }
    }
}

/// A secret message encrypted and kept until the relay confirms it stored it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub to: String,
    /// Hex of the client id; a retry reuses it, so the relay queues it once.
    pub client_id: String,
    /// Hex of the encoded `SecretPayload`.
    pub payload: String,
}

/// A normal message typed while the relay was away, kept until the relay has it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingNormal {
    /// Hex of the client id; every retry uses it, so the relay stores it once.
    pub client_id: String,
    pub user: Option<String>,
    pub group: Option<String>,
    pub text: String,
    pub typed_at: i64,
}

/// How many delivered envelope ids are remembered, to ignore a redelivery.
const SEEN_ENVELOPES: usize = 4096;

/// What the vault holds.
#[derive(Serialize, Deserialize)]
struct VaultContent {
    identity_signing: String,
    identity_dh: String,
    #[serde(default)]
    history: Vec<HistoryEntry>,
    #[serde(default)]
    contacts: BTreeMap<String, Contact>,
    #[serde(default)]
    prekeys: LocalPrekeys,
    #[serde(default)]
    sessions: BTreeMap<String, Session>,
    #[serde(default)]
    outbox: Vec<OutboxEntry>,
    #[serde(default)]
    pending: Vec<PendingNormal>,
    #[serde(default)]
    seen_envelopes: VecDeque<u64>,
}

#[derive(Serialize)]
struct VaultContentRef<'a> {
    identity_signing: &'a str,
    identity_dh: &'a str,
    history: &'a [HistoryEntry],
    contacts: &'a BTreeMap<String, Contact>,
    prekeys: &'a LocalPrekeys,
    sessions: &'a BTreeMap<String, Session>,
    outbox: &'a [OutboxEntry],
    pending: &'a [PendingNormal],
    seen_envelopes: &'a VecDeque<u64>,
}

/// What we know of another user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    /// Hex of the Ed25519 identity key we trust for them.
    pub identity_key: String,
    /// A different key seen since, not trusted yet (`sotto trust`): while it is
    /// set, secret messages to this contact are refused.
    #[serde(default)]
    pub changed_to: Option<String>,
}

pub struct Profile {
    pub dir: PathBuf,
    pub config: ProfileConfig,
    pub history: Vec<HistoryEntry>,
    pub contacts: BTreeMap<String, Contact>,
    pub prekeys: LocalPrekeys,
    pub sessions: BTreeMap<String, Session>,
    pub outbox: Vec<OutboxEntry>,
    /// Normal messages typed in `sotto chat` that the relay has not stored yet.
    pub pending: Vec<PendingNormal>,
    seen_envelopes: VecDeque<u64>,
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
            prekeys: LocalPrekeys::default(),
            sessions: BTreeMap::new(),
            outbox: Vec::new(),
            pending: Vec::new(),
            seen_envelopes: VecDeque::new(),
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
        let mut profile = Profile {
            dir: dir.to_owned(),
            config,
            history: content.history,
            contacts: content.contacts,
            prekeys: content.prekeys,
            sessions: content.sessions,
            outbox: content.outbox,
            pending: content.pending,
            seen_envelopes: content.seen_envelopes,
            identity: Identity::from_secrets(&signing, &dh),
            vault,
        };
        if profile.purge_expired(now_ms()) > 0 {
            profile.save()?;
        }
        Ok(profile)
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
            prekeys: &self.prekeys,
            sessions: &self.sessions,
            outbox: &self.outbox,
            pending: &self.pending,
            seen_envelopes: &self.seen_envelopes,
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

impl Profile {
    /// Answers a first secret message with this device's identity and prekeys.
    pub fn respond(
        &mut self,
        first: &sotto_proto::v1::PrekeyMessage,
    ) -> Result<(Session, Zeroizing<Vec<u8>>), crate::e2e::E2eError> {
        Session::respond(&self.identity, &mut self.prekeys, first)
    }

    /// Makes a new signed prekey (the previous one is kept a while).
    pub fn rotate_signed_prekey(&mut self, now_ms: i64) {
        self.prekeys.rotate_signed(&self.identity, now_ms);
    }

    /// Remembers a normal message we sent, as the relay stored it.
    pub fn remember_sent_normal(
        &mut self,
        stored: &sotto_proto::v1::Stored,
        peer: Option<String>,
        group: Option<String>,
        text: &str,
        client_id: &str,
    ) {
        self.remember(HistoryEntry {
            id: stored.id,
            mode: Mode::Normal,
            from: self.config.username.clone(),
            peer,
            group,
            text: text.to_owned(),
            sent_at: stored.sent_at,
            client_id: client_id.to_owned(),
            expire_secs: None,
            shown_at: None,
        });
    }

    /// Deletes disappearing messages whose timer ran out; returns how many.
    pub fn purge_expired(&mut self, now_ms: i64) -> usize {
        let before = self.history.len();
        self.history.retain(|e| !e.expired(now_ms));
        before - self.history.len()
    }

    /// True if this secret envelope was handled before (a redelivery).
    pub fn seen_envelope(&self, id: u64) -> bool {
        self.seen_envelopes.contains(&id)
    }

    pub fn mark_envelope_seen(&mut self, id: u64) {
        self.seen_envelopes.push_back(id);
        while self.seen_envelopes.len() > SEEN_ENVELOPES {
            self.seen_envelopes.pop_front();
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn secret_from_hex(text: &str) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, out.as_mut()).context("the vault holds a damaged key")?;
    Ok(out)
}
