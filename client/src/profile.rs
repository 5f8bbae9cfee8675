//! A user's profile directory: `profile.toml` (which relay, its pinned
//! fingerprint, the username: nothing secret) and `vault.db` (everything
//! else, sealed under the passphrase: identity keys, contacts, sessions,
//! local history; see [`crate::vault`]).
//!
//! Invariants: one process holds a profile at a time (the vault is locked
//! while open, and `owner` says by whom); saving a new message writes that
//! message and the small parts that changed, never the whole history.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::e2e::{LocalPrekeys, PeerSessions, SeenBaseKeys, Session};
use crate::identity::Identity;
use crate::pinning::Fingerprint;
use crate::relay::RelayClient;
use crate::secret_group::SecretGroups;
use crate::vault::{Table, Vault, VaultError, legacy, write_atomically};

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
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
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
    /// Fetched by `sotto sync` but not printed yet (its reader went away):
    /// the next `sync` prints it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unprinted: bool,
    /// A secret message we sent whose recipient's client said it decrypted
    /// and kept it (a receipt).
    #[serde(default, skip_serializing_if = "is_false")]
    pub delivered: bool,
}

fn is_false(b: &bool) -> bool {
    !b
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
    /// Set when the relay refused it for good: it is kept (`sotto outbox
    /// retry|drop`), and never blocks the messages after it.
    #[serde(default)]
    pub failed: Option<String>,
}

/// A message typed while the relay was away (normal, or secret and not yet
/// encrypted), kept until the relay has it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingMessage {
    /// Hex of the client id; every retry uses it, so the relay stores it once.
    pub client_id: String,
    pub user: Option<String>,
    pub group: Option<String>,
    pub text: String,
    pub typed_at: i64,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub expire_secs: Option<u32>,
    /// Set when it cannot be sent as it is (a changed identity key, an
    /// unknown user): kept for `sotto outbox retry|drop`.
    #[serde(default)]
    pub failed: Option<String>,
}

/// How many delivered envelope ids are remembered, to ignore a redelivery.
const SEEN_ENVELOPES: usize = 4096;

/// What the first vault format held, as one JSON document (read to migrate).
#[derive(Deserialize)]
struct LegacyContent {
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
    pending: Vec<PendingMessage>,
    #[serde(default)]
    seen_envelopes: VecDeque<u64>,
}

/// Why a secret envelope is kept unread.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HeldBecause {
    /// Its first message came with an identity key we do not trust (yet).
    ChangedIdentity,
    /// No session with its sender could decrypt it.
    Undecryptable,
}

/// A secret envelope kept encrypted, as the relay delivered it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeldEnvelope {
    pub from: String,
    /// The relay's envelope id.
    pub id: u64,
    /// Hex of the envelope's ciphertext (the `SecretPayload`).
    pub ciphertext: String,
    pub because: HeldBecause,
    pub received_at: i64,
}

/// A notice from the relay that a warrant disclosed some of this account's
/// normal records (see `v1::WarrantNotice`), kept until shown and after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeptNotice {
    pub id: u64,
    pub authority: String,
    pub warrant_id: String,
    pub case_reference: String,
    pub legal_basis: String,
    /// The warrant's window, seconds since the epoch.
    pub window_from: i64,
    pub window_until: i64,
    pub records: u64,
    /// A target of the warrant (else someone revealed under a pseudonym).
    pub target: bool,
    /// When the relay issued it (milliseconds).
    pub issued_at: i64,
    /// Shown to the user (`sync` printed it, or the chat client said it).
    pub shown: bool,
}

impl From<&sotto_proto::v1::WarrantNotice> for KeptNotice {
    fn from(n: &sotto_proto::v1::WarrantNotice) -> Self {
        KeptNotice {
            id: n.id,
            authority: n.authority.clone(),
            warrant_id: n.warrant_id.clone(),
            case_reference: n.case_reference.clone(),
            legal_basis: n.legal_basis.clone(),
            window_from: n.window_from,
            window_until: n.window_until,
            records: n.records,
            target: n.target,
            issued_at: n.issued_at,
            shown: false,
        }
    }
}

/// The most envelopes kept unread; the oldest goes first.
pub const MAX_HELD: usize = 200;
/// The most kept unread from one sender.
pub const MAX_HELD_PER_SENDER: usize = 20;

/// What we know of another user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    /// Hex of the Ed25519 identity key we trust for them.
    pub identity_key: String,
    /// A different key seen since, not trusted yet (`sotto trust`): while it is
    /// set, secret messages to this contact are refused.
    #[serde(default)]
    pub changed_to: Option<String>,
    /// Hex of the key whose safety number was last shown (`safety-number`):
    /// `trust` accepts exactly that key.
    #[serde(default)]
    pub shown_key: Option<String>,
}

impl Contact {
    /// A contact whose key (hex) is trusted.
    pub fn trusted(identity_key: String) -> Self {
        Contact {
            identity_key,
            changed_to: None,
            shown_key: None,
        }
    }
}

pub struct Profile {
    pub dir: PathBuf,
    pub config: ProfileConfig,
    /// The local history, oldest first; changed only through methods, so
    /// that a save writes only what changed.
    history: Vec<HistoryEntry>,
    /// The vault key of each history entry (same order).
    history_keys: Vec<u64>,
    next_history_key: u64,
    /// (mode, sender, client id) of every message in the history: a duplicate
    /// is found without reading the history.
    history_ids: std::collections::HashSet<(Mode, String, String)>,
    /// History keys written or changed since the last save, and removed ones.
    history_dirty: BTreeSet<u64>,
    history_removed: Vec<u64>,
    /// SHA-256 of each state part as last written, to skip unchanged parts.
    written: BTreeMap<&'static str, [u8; 32]>,
    pub contacts: BTreeMap<String, Contact>,
    pub prekeys: LocalPrekeys,
    /// Every session with each peer (current and previous).
    pub sessions: BTreeMap<String, PeerSessions>,
    /// Base keys of first messages accepted: a replayed one is refused.
    pub seen_base_keys: SeenBaseKeys,
    /// Secret envelopes kept encrypted: from a changed identity key (until
    /// `trust`), or that no session could decrypt.
    pub held: Vec<HeldEnvelope>,
    /// Peers to start a fresh session with at the next secret send (a
    /// message from them could not be decrypted).
    pub resets: BTreeSet<String>,
    /// Each secret chat's disappearing timer, in seconds, as last set by
    /// either side (a control message carries it across).
    pub timers: BTreeMap<String, u32>,
    pub outbox: Vec<OutboxEntry>,
    /// Normal messages typed in `sotto chat` that the relay has not stored yet.
    pub pending: Vec<PendingMessage>,
    /// The relay's notices of warrants that disclosed this account's records.
    pub notices: Vec<KeptNotice>,
    /// Secret groups: membership and sender keys, on this device only.
    pub secret_groups: SecretGroups,
    seen_envelopes: VecDeque<u64>,
    identity: Identity,
    vault: Vault,
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("profile.toml")
}

fn vault_path(dir: &Path) -> PathBuf {
    dir.join("vault.db")
}

/// Where the first vault format kept the whole profile, as one file.
fn legacy_vault_path(dir: &Path) -> PathBuf {
    dir.join("vault")
}

/// A migration under way (removed and redone if a crash interrupted it).
fn migrating_path(dir: &Path) -> PathBuf {
    dir.join("vault.db.migrating")
}

/// Who holds the profile: written by the process that opened it.
fn owner_path(dir: &Path) -> PathBuf {
    dir.join("owner")
}

/// How long opening waits for a profile another process holds.
const OPEN_WAIT: Duration = Duration::from_secs(3);

/// The profile is held by another `sotto` process.
#[derive(Debug, thiserror::Error)]
#[error(
    "the profile {dir} is in use by {owner}: one process holds a profile at a time. \
     Wait for it to finish, or quit it, and try again (while `sotto chat` runs, `sotto send` \
     goes through it; other commands wait until it quits, or use its /group, /verify and /trust)"
)]
pub struct ProfileInUse {
    pub dir: String,
    pub owner: String,
}

// The names of the state parts in the vault.
const IDENTITY: &str = "identity";
const CONTACTS: &str = "contacts";
const PREKEYS: &str = "prekeys";
const SESSIONS: &str = "sessions";
const OUTBOX: &str = "outbox";
const PENDING: &str = "pending";
const SEEN: &str = "seen";
const BASE_KEYS: &str = "base_keys";
const HELD: &str = "held";
const RESETS: &str = "resets";
const TIMERS: &str = "timers";
const NOTICES: &str = "notices";
const SECRET_GROUPS: &str = "secret_groups";
/// The SHA-256 of every part as last saved, sealed like them.
const MANIFEST: &str = "manifest";
const PARTS: [&str; 13] = [
    IDENTITY,
    CONTACTS,
    PREKEYS,
    SESSIONS,
    OUTBOX,
    PENDING,
    SEEN,
    BASE_KEYS,
    HELD,
    RESETS,
    TIMERS,
    NOTICES,
    SECRET_GROUPS,
];

#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct IdentitySecrets {
    signing: String,
    dh: String,
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
        Vault::exists(&vault_path(dir)) || legacy_vault_path(dir).exists()
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
        owner_only(dir)?;
        let toml = toml::to_string(&config).context("cannot encode the profile settings")?;
        write_atomically(&config_path(dir), toml.as_bytes())?;
        let mut profile = Profile::empty(
            dir,
            config,
            identity,
            Vault::create(&vault_path(dir), passphrase)?,
        );
        profile.write_identity()?;
        profile.save()?;
        profile.claim();
        Ok(profile)
    }

    fn empty(dir: &Path, config: ProfileConfig, identity: Identity, vault: Vault) -> Self {
        let secret_groups = SecretGroups::new(&config.username);
        Profile {
            dir: dir.to_owned(),
            config,
            history: Vec::new(),
            history_keys: Vec::new(),
            history_ids: Default::default(),
            next_history_key: 1,
            history_dirty: BTreeSet::new(),
            history_removed: Vec::new(),
            written: BTreeMap::new(),
            contacts: BTreeMap::new(),
            prekeys: LocalPrekeys::default(),
            sessions: BTreeMap::new(),
            seen_base_keys: SeenBaseKeys::default(),
            held: Vec::new(),
            resets: BTreeSet::new(),
            timers: BTreeMap::new(),
            outbox: Vec::new(),
            pending: Vec::new(),
            notices: Vec::new(),
            secret_groups,
            seen_envelopes: VecDeque::new(),
            identity,
            vault,
        }
    }

    /// Says in `owner` which process holds the profile, for whoever finds it
    /// in use: its pid and command name only (never arguments: they may hold
    /// a message or a name). Removed when the profile is closed.
    fn claim(&self) {
        const COMMANDS: [&str; 8] = [
            "chat",
            "send",
            "sync",
            "group",
            "outbox",
            "trust",
            "safety-number",
            "init",
        ];
        let command = std::env::args()
            .skip(1)
            .find(|a| COMMANDS.contains(&a.as_str()))
            .unwrap_or_default();
        let owner = format!("pid {} (sotto {command})", std::process::id());
        let _ = write_atomically(&owner_path(&self.dir), owner.as_bytes());
    }

    fn write_identity(&mut self) -> Result<()> {
        let (signing, dh) = self.identity.secrets();
        let secrets = IdentitySecrets {
            signing: hex::encode(*signing),
            dh: hex::encode(*dh),
        };
        write_part(&self.vault, &mut self.written, IDENTITY, &secrets)
    }

    /// Opens the profile, moving a first-format vault into the store first.
    /// If another process holds it, waits a little, then says who does.
    pub fn open(dir: &Path, passphrase: &str) -> Result<Self> {
        if !Self::exists(dir) {
            bail!(
                "no profile in {}: create one with `sotto init --relay ADDR --user NAME`",
                dir.display()
            );
        }
        owner_only(dir)?;
        let text = std::fs::read_to_string(config_path(dir))
            .with_context(|| format!("cannot read {}", config_path(dir).display()))?;
        let config: ProfileConfig = toml::from_str(&text)
            .with_context(|| format!("{} is damaged", config_path(dir).display()))?;
        if !Vault::exists(&vault_path(dir)) {
            migrate(dir, passphrase)?;
        } else if legacy_vault_path(dir).exists() {
            // A migration finished but was stopped before the old file went.
            std::fs::remove_file(legacy_vault_path(dir))
                .with_context(|| format!("cannot remove {}", legacy_vault_path(dir).display()))?;
        }
        let deadline = Instant::now() + OPEN_WAIT;
        let vault = loop {
            match Vault::open(&vault_path(dir), passphrase) {
                Err(VaultError::InUse(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(VaultError::InUse(_)) => {
                    return Err(ProfileInUse {
                        dir: dir.display().to_string(),
                        owner: Self::owner(dir),
                    }
                    .into());
                }
                other => break other?,
            }
        };
        // Every part as the manifest says it was last saved: a part removed
        // or put back from an older copy (a rolled-back session would reuse
        // message keys) is refused, not quietly used.
        let manifest: BTreeMap<String, String> =
            read_part(&vault, MANIFEST)?.context("the vault has no manifest: it was altered")?;
        let mut parts: BTreeMap<&'static str, Zeroizing<Vec<u8>>> = BTreeMap::new();
        let mut written = BTreeMap::new();
        for name in PARTS {
            let raw = vault.get(Table::State, name.as_bytes())?;
            let digest: Option<[u8; 32]> =
                raw.as_ref().map(|r| Sha256::digest(r.as_slice()).into());
            if digest.map(hex::encode).as_ref() != manifest.get(name) {
                bail!(
                    "the vault was altered: its {name} is not what was last saved (restore a whole backup, or start a new profile)"
                );
            }
            if let (Some(raw), Some(digest)) = (raw, digest) {
                parts.insert(name, raw);
                written.insert(name, digest);
            }
        }
        fn part<T: DeserializeOwned + Default>(
            parts: &BTreeMap<&'static str, Zeroizing<Vec<u8>>>,
            name: &str,
        ) -> Result<T> {
            parts
                .get(name)
                .map(|raw| serde_json::from_slice(raw))
                .transpose()
                .with_context(|| format!("the vault's {name} is damaged"))
                .map(Option::unwrap_or_default)
        }
        let secrets: IdentitySecrets = parts
            .get(IDENTITY)
            .map(|raw| serde_json::from_slice(raw))
            .transpose()?
            .context("the vault holds no identity")?;
        let signing = secret_from_hex(&secrets.signing)?;
        let dh = secret_from_hex(&secrets.dh)?;
        let mut profile = Profile::empty(dir, config, Identity::from_secrets(&signing, &dh), vault);
        profile.written = written;
        profile.contacts = part(&parts, CONTACTS)?;
        profile.prekeys = part(&parts, PREKEYS)?;
        profile.sessions = part(&parts, SESSIONS)?;
        profile.outbox = part(&parts, OUTBOX)?;
        profile.pending = part(&parts, PENDING)?;
        profile.seen_envelopes = part(&parts, SEEN)?;
        profile.seen_base_keys = part(&parts, BASE_KEYS)?;
        profile.held = part(&parts, HELD)?;
        profile.resets = part(&parts, RESETS)?;
        profile.timers = part(&parts, TIMERS)?;
        profile.notices = part(&parts, NOTICES)?;
        if let Some(groups) = part::<Option<SecretGroups>>(&parts, SECRET_GROUPS)? {
            if groups.me() != profile.config.username {
                bail!("the vault's secret groups belong to another user: it was altered");
            }
            profile.secret_groups = groups;
        }
        for (key, value) in profile.vault.entries(Table::History)? {
            let key = u64::from_be_bytes(
                key.as_slice()
                    .try_into()
                    .context("the vault holds a damaged history key")?,
            );
            let entry: HistoryEntry =
                serde_json::from_slice(&value).context("the vault holds a damaged message")?;
            profile
                .history_ids
                .insert((entry.mode, entry.from.clone(), entry.client_id.clone()));
            profile.history.push(entry);
            profile.history_keys.push(key);
            profile.next_history_key = key + 1;
        }
        profile.claim();
        if profile.purge_expired(now_ms()) > 0 {
            profile.save()?;
        }
        Ok(profile)
    }

    /// Who holds the profile, as its `owner` file says.
    pub fn owner(dir: &Path) -> String {
        std::fs::read_to_string(owner_path(dir))
            .ok()
            .map(|o| o.chars().filter(|c| !c.is_control()).take(200).collect())
            .unwrap_or_else(|| "another process".into())
    }

    /// Writes what changed since the last save (new and changed messages,
    /// the small parts that differ) and flushes it to disk.
    pub fn save(&mut self) -> Result<()> {
        let (vault, written) = (&self.vault, &mut self.written);
        write_part(vault, written, CONTACTS, &self.contacts)?;
        write_part(vault, written, PREKEYS, &self.prekeys)?;
        write_part(vault, written, SESSIONS, &self.sessions)?;
        write_part(vault, written, OUTBOX, &self.outbox)?;
        write_part(vault, written, PENDING, &self.pending)?;
        write_part(vault, written, SEEN, &self.seen_envelopes)?;
        write_part(vault, written, BASE_KEYS, &self.seen_base_keys)?;
        write_part(vault, written, HELD, &self.held)?;
        write_part(vault, written, RESETS, &self.resets)?;
        write_part(vault, written, TIMERS, &self.timers)?;
        write_part(vault, written, NOTICES, &self.notices)?;
        write_part(vault, written, SECRET_GROUPS, &self.secret_groups)?;
        let manifest: BTreeMap<&str, String> = written
            .iter()
            .map(|(name, d)| (*name, hex::encode(d)))
            .collect();
        self.vault.put(
            Table::State,
            MANIFEST.as_bytes(),
            &serde_json::to_vec(&manifest)?,
        )?;
        for key in std::mem::take(&mut self.history_removed) {
            self.vault.remove(Table::History, &key.to_be_bytes())?;
        }
        for key in std::mem::take(&mut self.history_dirty) {
            // Keys grow in history order: found without a scan.
            let Ok(at) = self.history_keys.binary_search(&key) else {
                continue;
            };
            let bytes = Zeroizing::new(serde_json::to_vec(&self.history[at])?);
            self.vault.put(Table::History, &key.to_be_bytes(), &bytes)?;
        }
        self.vault.flush()?;
        Ok(())
    }

    /// The local history, oldest first.
    pub fn history(&self) -> &[HistoryEntry] {
        &self.history
    }

    /// Changes history entries in place: `change` returns whether it changed
    /// the entry, and only those are written at the next save.
    pub fn update_history(&mut self, mut change: impl FnMut(&mut HistoryEntry) -> bool) {
        for (entry, key) in self.history.iter_mut().zip(&self.history_keys) {
            if change(entry) {
                self.history_dirty.insert(*key);
            }
        }
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
        let duplicate =
            !self
                .history_ids
                .insert((entry.mode, entry.from.clone(), entry.client_id.clone()));
        if !duplicate {
            let key = self.next_history_key;
            self.next_history_key += 1;
            self.history.push(entry);
            self.history_keys.push(key);
            self.history_dirty.insert(key);
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

    /// Makes a new signed prekey and last-resort PQ prekey (the previous ones are kept a while).
    pub fn rotate_signed_prekey(&mut self, now_ms: i64) {
        self.prekeys.rotate_signed(&self.identity, now_ms);
    }

    /// Makes `count` signed one-time ML-KEM-1024 prekeys; returns their public halves.
    pub fn generate_pq_one_time(&mut self, count: usize) -> Vec<sotto_proto::v1::PqPrekey> {
        self.prekeys.generate_pq_one_time(&self.identity, count)
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
            unprinted: false,
            delivered: false,
        });
    }

    /// Deletes disappearing messages whose timer ran out; returns how many.
    pub fn purge_expired(&mut self, now_ms: i64) -> usize {
        self.remove_history(|e| e.expired(now_ms))
    }

    /// Removes the history entries `gone` picks (from the vault at the next
    /// save); returns how many.
    fn remove_history(&mut self, gone: impl Fn(&HistoryEntry) -> bool) -> usize {
        let mut kept = Vec::with_capacity(self.history.len());
        let mut kept_keys = Vec::with_capacity(self.history.len());
        let mut removed = 0;
        for (entry, key) in std::mem::take(&mut self.history)
            .into_iter()
            .zip(std::mem::take(&mut self.history_keys))
        {
            if gone(&entry) {
                self.history_ids
                    .remove(&(entry.mode, entry.from.clone(), entry.client_id.clone()));
                self.history_removed.push(key);
                self.history_dirty.remove(&key);
                removed += 1;
            } else {
                kept.push(entry);
                kept_keys.push(key);
            }
        }
        self.history = kept;
        self.history_keys = kept_keys;
        removed
    }

    /// True if this secret envelope was handled before (a redelivery).
    /// Keeps a notice from the relay, unless it was kept before (it comes
    /// again until acknowledged); whether it is new.
    pub fn remember_notice(&mut self, notice: &sotto_proto::v1::WarrantNotice) -> bool {
        if self.notices.iter().any(|n| n.id == notice.id) {
            return false;
        }
        self.notices.push(notice.into());
        true
    }

    pub fn seen_envelope(&self, id: u64) -> bool {
        self.seen_envelopes.contains(&id)
    }

    /// Removes from the history a message of ours that was never sent (dropped
    /// from the outbox).
    pub fn forget_unsent(&mut self, client_id: &str) {
        let me = self.config.username.clone();
        self.remove_history(|e| e.from == me && e.client_id == client_id && e.id == 0);
    }

    /// Forgets that an envelope was handled (to read a held one again).
    pub fn forget_envelope(&mut self, id: u64) {
        self.seen_envelopes.retain(|e| *e != id);
    }

    pub fn mark_envelope_seen(&mut self, id: u64) {
        self.seen_envelopes.push_back(id);
        while self.seen_envelopes.len() > SEEN_ENVELOPES {
            self.seen_envelopes.pop_front();
        }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        // Only our own claim: another process may hold the profile by now.
        let ours = format!("pid {} ", std::process::id());
        if std::fs::read_to_string(owner_path(&self.dir)).is_ok_and(|o| o.starts_with(&ours)) {
            let _ = std::fs::remove_file(owner_path(&self.dir));
        }
    }
}

/// Milliseconds since the Unix epoch.
/// A new profile of `username` in `dir`, for tests.
#[cfg(test)]
pub(crate) fn test_profile(dir: &Path, username: &str) -> Profile {
    let config = ProfileConfig {
        relay: "127.0.0.1:4433".into(),
        fingerprint: format!("sha256:{}", "ab".repeat(32)),
        username: username.into(),
    };
    Profile::create(
        &dir.join(username),
        config,
        crate::identity::Identity::generate(),
        "pass",
    )
    .unwrap()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Writes one state part, unless it is what was written last time.
fn write_part<T: Serialize>(
    vault: &Vault,
    written: &mut BTreeMap<&'static str, [u8; 32]>,
    name: &'static str,
    value: &T,
) -> Result<()> {
    let bytes = Zeroizing::new(serde_json::to_vec(value)?);
    let digest: [u8; 32] = Sha256::digest(bytes.as_slice()).into();
    if written.get(name) == Some(&digest) {
        return Ok(());
    }
    vault.put(Table::State, name.as_bytes(), &bytes)?;
    written.insert(name, digest);
    Ok(())
}

/// Makes the profile folder readable by its owner only (whatever mode it was
/// made with); refuses a folder this user does not own.
fn owner_only(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "cannot make {} private to you (is it another user's folder?)",
                    dir.display()
                )
            },
        )?;
    }
    Ok(())
}

fn read_part<T: DeserializeOwned>(vault: &Vault, name: &str) -> Result<Option<T>> {
    vault
        .get(Table::State, name.as_bytes())?
        .map(|bytes| serde_json::from_slice(&bytes))
        .transpose()
        .with_context(|| format!("the vault's {name} is damaged"))
}

/// Moves a first-format profile (one sealed file) into the store. The old
/// file is removed only once the new store is complete and on disk; a
/// migration a crash interrupted is started again from the old file.
fn migrate(dir: &Path, passphrase: &str) -> Result<()> {
    let old = legacy_vault_path(dir);
    let content = legacy::open(&old, passphrase)?;
    let content: LegacyContent =
        serde_json::from_slice(&content).context("the old vault's content is damaged")?;
    let staging = migrating_path(dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    {
        let vault = Vault::create(&staging, passphrase)?;
        let signing = secret_from_hex(&content.identity_signing)?;
        let dh = secret_from_hex(&content.identity_dh)?;
        let text = std::fs::read_to_string(config_path(dir))?;
        let mut profile = Profile::empty(
            dir,
            toml::from_str(&text)?,
            Identity::from_secrets(&signing, &dh),
            vault,
        );
        profile.write_identity()?;
        for entry in content.history {
            profile.remember(entry);
        }
        profile.contacts = content.contacts;
        profile.prekeys = content.prekeys;
        profile.sessions = content
            .sessions
            .into_iter()
            .map(|(peer, session)| (peer, PeerSessions::new(session)))
            .collect();
        profile.outbox = content.outbox;
        profile.pending = content.pending;
        profile.seen_envelopes = content.seen_envelopes;
        profile.save()?;
    }
    std::fs::rename(&staging, vault_path(dir))
        .with_context(|| format!("cannot move the migrated vault into {}", dir.display()))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    std::fs::remove_file(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    Ok(())
}

fn secret_from_hex(text: &str) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, out.as_mut()).context("the vault holds a damaged key")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "correct horse battery";

    fn config() -> ProfileConfig {
        ProfileConfig {
            relay: "127.0.0.1:4433".into(),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            username: "alice".into(),
        }
    }

    fn message(n: usize) -> HistoryEntry {
        HistoryEntry {
            id: n as u64,
            mode: Mode::Normal,
            from: "bob".into(),
            peer: Some("bob".into()),
            group: None,
            text: format!("canary message {n}"),
            sent_at: 1_000 + n as i64,
            client_id: format!("{n:032x}"),
            expire_secs: None,
            shown_at: None,
            unprinted: false,
            delivered: false,
        }
    }

    #[test]
    fn a_first_format_profile_is_migrated_and_its_old_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        let profile_dir = dir.path().join("alice");
        std::fs::create_dir_all(&profile_dir).unwrap();
        write_atomically(
            &config_path(&profile_dir),
            toml::to_string(&config()).unwrap().as_bytes(),
        )
        .unwrap();
        let identity = Identity::generate();
        let (signing, dh) = identity.secrets();
        let old = serde_json::json!({
            "identity_signing": hex::encode(*signing),
            "identity_dh": hex::encode(*dh),
            "history": [message(1), message(2)],
            "contacts": {"bob": {"identity_key": "00".repeat(32)}},
        });
        legacy::write(
            &legacy_vault_path(&profile_dir),
            PASS,
            &serde_json::to_vec(&old).unwrap(),
        );
        // A migration a crash interrupted is started again.
        std::fs::create_dir_all(migrating_path(&profile_dir)).unwrap();

        let profile = Profile::open(&profile_dir, PASS).unwrap();
        assert_eq!(profile.history().len(), 2);
        assert_eq!(profile.history()[1].text, "canary message 2");
        assert!(profile.contacts.contains_key("bob"));
        assert_eq!(profile.identity().public_key(), identity.public_key());
        assert!(!legacy_vault_path(&profile_dir).exists());
        assert!(!migrating_path(&profile_dir).exists());
        drop(profile);
        let again = Profile::open(&profile_dir, PASS).unwrap();
        assert_eq!(again.history().len(), 2);
    }

    #[test]
    fn saving_a_message_writes_that_message_not_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let profile_dir = dir.path().join("alice");
        let mut profile =
            Profile::create(&profile_dir, config(), Identity::generate(), PASS).unwrap();
        for n in 0..300 {
            profile.remember(message(n));
        }
        profile.save().unwrap();
        profile.remember(message(300));
        assert_eq!(
            profile.history_dirty.len(),
            1,
            "only the new message is written"
        );
        profile.save().unwrap();
        assert!(profile.history_dirty.is_empty());
        // Duplicates are found without reading the history, and not kept.
        assert!(!profile.remember(message(7)));
        // An expired message is removed from the store too.
        profile.update_history(|e| {
            let timed = e.text == "canary message 5";
            if timed {
                e.expire_secs = Some(1);
                e.shown_at = Some(0);
            }
            timed
        });
        assert_eq!(profile.purge_expired(10_000), 1);
        profile.save().unwrap();
        drop(profile);
        let reopened = Profile::open(&profile_dir, PASS).unwrap();
        assert_eq!(reopened.history().len(), 300);
        assert!(
            reopened
                .history()
                .iter()
                .all(|e| e.text != "canary message 5")
        );
    }

    #[test]
    fn second_process_on_the_same_profile_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let profile_dir = dir.path().join("alice");
        let held = Profile::create(&profile_dir, config(), Identity::generate(), PASS).unwrap();
        let err = Profile::open(&profile_dir, PASS).err().unwrap();
        let in_use = err.downcast_ref::<ProfileInUse>().expect("in use");
        assert!(
            in_use
                .owner
                .contains(&format!("pid {}", std::process::id())),
            "{}",
            in_use.owner
        );
        drop(held);
        Profile::open(&profile_dir, PASS).unwrap();
    }
}

#[cfg(test)]
mod tampering {
    use super::*;

    const PASS: &str = "correct horse battery";

    /// The vault's state tree, opened with sled directly (no passphrase).
    /// A vault just closed in this process may hold its lock a moment longer.
    fn raw_state(dir: &Path) -> sled::Tree {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match sled::open(vault_path(dir)) {
                Ok(db) => return db.open_tree("state").unwrap(),
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("cannot open the vault: {e}"),
            }
        }
    }

    #[test]
    fn curious_operator_cannot_roll_a_part_back_or_remove_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("alice");
        let config = ProfileConfig {
            relay: "127.0.0.1:4433".into(),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            username: "alice".into(),
        };
        let mut p = Profile::create(&dir, config, Identity::generate(), PASS).unwrap();
        p.contacts
            .insert("bob".into(), Contact::trusted("11".repeat(32)));
        p.save().unwrap();
        drop(p);
        // An older copy of one part, taken without the passphrase...
        let old = raw_state(&dir).get(CONTACTS).unwrap().unwrap();
        let mut p = Profile::open(&dir, PASS).unwrap();
        p.contacts
            .insert("bob".into(), Contact::trusted("22".repeat(32)));
        p.save().unwrap();
        drop(p);
        // ...put back: refused.
        {
            let state = raw_state(&dir);
            state.insert(CONTACTS, old).unwrap();
            state.flush().unwrap();
        }
        let err = Profile::open(&dir, PASS).err().unwrap();
        assert!(err.to_string().contains("altered"), "{err}");
        // A part removed: refused too.
        {
            let state = raw_state(&dir);
            state.remove(SESSIONS).unwrap();
            state.flush().unwrap();
        }
        assert!(Profile::open(&dir, PASS).is_err());
    }
}
