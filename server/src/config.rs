//! `relay.toml`: the operator's configuration. Every field has a default, so an
//! empty file (or none) is a working relay; command-line flags override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Fjall => "fjall",
            StoreKind::Sled => "sled",
            StoreKind::Nats => "nats",
        })
    }
}

/// Which embedded store a new data directory gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// fjall 3: its journal persisted with fdatasync at each flush.
    Fjall,
    /// sled 0.34: flushed, then its files fdatasynced.
    Sled,
    /// A NATS JetStream cluster shared by several relay nodes (`nats_urls`):
    /// users' records live there; the node keeps its own keys in a local
    /// fjall store.
    Nats,
}

impl StoreKind {
    /// The embedded store a data directory of this kind holds.
    pub fn local(self) -> StoreKind {
        match self {
            StoreKind::Nats => StoreKind::Fjall,
            kind => kind,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// The embedded store of a new data directory (an existing one keeps its own).
    pub store: StoreKind,
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
    /// Where to serve Prometheus metrics (`GET /metrics`); off when unset.
    /// They carry no names, but keep them on loopback or behind a proxy.
    pub metrics_listen: Option<SocketAddr>,
    /// With `store = "nats"`: the cluster's client URLs (any number of them;
    /// the node moves to another when one goes away).
    pub nats_urls: Vec<String>,
    /// The NATS user relay nodes connect as.
    pub nats_user: String,
    /// Its password, in a file (relative paths are inside the data
    /// directory); `SOTTO_NATS_PASSWORD` overrides the file.
    pub nats_password_file: PathBuf,
    /// The warrant desk's NATS user's password (it reads the history and
    /// nothing else); `SOTTO_NATS_WARRANT_PASSWORD` overrides the file.
    pub nats_warrant_password_file: PathBuf,
    /// On how many cluster nodes each stream is kept (a majority holds
    /// every acknowledged write).
    pub nats_replicas: usize,
    /// With `store = "nats"`: this node is the cluster's warrant desk, the
    /// one node that serves warrant and unmask requests and keeps the
    /// transparency log (one log, one head). A second node that says so is
    /// refused at start; the others answer investigators with where to go.
    pub nats_warrant_desk: bool,
    pub limits: Limits,
    pub warrant: WarrantConfig,
}

/// What one peer may use of the relay: each bound keeps memory and work
/// bounded under a flood while honest clients go on being served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections held at once, from everyone.
    pub connections: u32,
    /// Connections held at once from one IPv4 address or IPv6 /64.
    pub connections_per_address: u32,
    /// Streams a connection may have open before it logs in.
    pub streams_before_login: u32,
    /// Bytes a connection may have in flight before it logs in (its receive
    /// window), which also bounds one frame before login.
    pub bytes_before_login: u32,
    /// A frame must have arrived whole this many seconds after its stream opened.
    pub frame_read_secs: u64,
    /// A connection nobody has logged in on is closed after this many seconds.
    pub login_deadline_secs: u64,
    /// Messages (normal and secret) one account may send per minute.
    pub sends_per_minute: u32,
    /// New accounts per hour from one IPv4 address or IPv6 /64.
    pub registrations_per_address_per_hour: u32,
    /// Identity and prekey-bundle lookups one account may make per day.
    pub lookups_per_account_per_day: u32,
    /// Connections of one account that receive pushes at once (its devices).
    pub subscriptions_per_account: u32,
    /// Secret envelopes waiting for one recipient.
    pub secret_queue_envelopes: u32,
    /// Bytes of secret envelopes waiting for one recipient.
    pub secret_queue_bytes: u64,
    /// Secret envelopes, and their bytes, waiting from one sender for one
    /// recipient (so that one sender cannot fill someone's queue).
    pub secret_queue_per_sender_envelopes: u32,
    pub secret_queue_per_sender_bytes: u64,
    /// Secret envelopes, and their bytes, waiting in the whole relay.
    pub secret_queue_total_envelopes: u64,
    pub secret_queue_total_bytes: u64,
}

impl Limits {
    /// The secret queue's quotas.
    pub fn secret_quota(&self) -> crate::secret_queue::Quota {
        use crate::secret_queue::{Quota, Usage};
        Quota {
            recipient: Usage {
                envelopes: self.secret_queue_envelopes.into(),
                bytes: self.secret_queue_bytes,
            },
            pair: Usage {
                envelopes: self.secret_queue_per_sender_envelopes.into(),
                bytes: self.secret_queue_per_sender_bytes,
            },
            total: Usage {
                envelopes: self.secret_queue_total_envelopes,
                bytes: self.secret_queue_total_bytes,
            },
        }
    }
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
    /// Hold a warrant that passed every automatic check until the operators
    /// approve it (`sotto-relay warrant approve`); nothing is disclosed before.
    pub review: bool,
    /// How many different operators must approve a held warrant: 1 or 2.
    pub approvals: u32,
    /// How long after a warrant's window ends the people it disclosed are
    /// told of it, in days, when the warrant does not say (`notify_after`).
    pub notice_days: u32,
    /// The longest a warrant (or each of its two extensions) may keep them
    /// from being told, in days after the window's end.
    pub max_notice_days: u32,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            store: StoreKind::Fjall,
            max_frame_bytes: sotto_proto::DEFAULT_MAX_FRAME,
            master_key_file: PathBuf::from("master.key"),
            secret_ttl_secs: 30 * 24 * 3600,
            idle_timeout_secs: 60,
            max_concurrent_requests: 64,
            prekey_bundles_per_minute: 120,
            metrics_listen: None,
            nats_urls: Vec::new(),
            nats_user: crate::cluster::RELAY_USER.to_owned(),
            nats_password_file: PathBuf::from("nats.password"),
            nats_warrant_password_file: PathBuf::from("nats-warrant.password"),
            nats_replicas: 3,
            nats_warrant_desk: false,
            limits: Limits::default(),
            warrant: WarrantConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 20_000,
            connections_per_address: 64,
            streams_before_login: 4,
            bytes_before_login: 64 * 1024,
            frame_read_secs: 10,
            login_deadline_secs: 60,
            sends_per_minute: 3_000,
            registrations_per_address_per_hour: 20,
            lookups_per_account_per_day: 1_000,
            subscriptions_per_account: 16,
            secret_queue_envelopes: 10_000,
            secret_queue_bytes: 256 << 20,
            secret_queue_per_sender_envelopes: 1_000,
            secret_queue_per_sender_bytes: 32 << 20,
            secret_queue_total_envelopes: 5_000_000,
            secret_queue_total_bytes: 32 << 30,
        }
    }
}

impl Default for WarrantConfig {
    fn default() -> Self {
        WarrantConfig {
            max_window_days: 90,
            max_targets: 16,
            requests_per_minute: 30,
            review: true,
            approvals: 1,
            notice_days: sotto_warrant::notice::DEFAULT_NOTICE_DAYS,
            max_notice_days: sotto_warrant::notice::MAX_NOTICE_DAYS,
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
        let config: RelayConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid relay configuration", path.display()))?;
        config
            .validate()
            .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
        Ok(config)
    }

    /// Checks every number against the range the relay can honour; the
    /// sentence names the key and the range.
    pub fn validate(&self) -> Result<(), String> {
        fn within(key: &str, value: u64, lo: u64, hi: u64) -> Result<(), String> {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(format!(
                    "{key} = {value} is out of range: it must be {lo} to {hi}"
                ))
            }
        }
        // A frame must hold a full-size message and its envelope.
        let min_frame = (sotto_proto::MAX_SECRET_CIPHERTEXT + 64 * 1024) as u64;
        within(
            "max_frame_bytes",
            self.max_frame_bytes as u64,
            min_frame,
            64 << 20,
        )?;
        within("secret_ttl_secs", self.secret_ttl_secs, 60, 365 * 86_400)?;
        if self.store == StoreKind::Nats && self.nats_urls.is_empty() {
            return Err("store = \"nats\" needs nats_urls, the cluster's client URLs".into());
        }
        if self.nats_warrant_desk && self.store != StoreKind::Nats {
            return Err(
                "nats_warrant_desk is for a cluster's node (store = \"nats\"): a single relay \
                 always serves its own warrants"
                    .into(),
            );
        }
        within("nats_replicas", self.nats_replicas as u64, 1, 5)?;
        within("idle_timeout_secs", self.idle_timeout_secs, 5, 3_600)?;
        within(
            "max_concurrent_requests",
            self.max_concurrent_requests.into(),
            1,
            1_024,
        )?;
        within(
            "prekey_bundles_per_minute",
            self.prekey_bundles_per_minute.into(),
            1,
            100_000,
        )?;
        let l = &self.limits;
        within("limits.connections", l.connections.into(), 1, 1_000_000)?;
        within(
            "limits.connections_per_address",
            l.connections_per_address.into(),
            1,
            l.connections.into(),
        )?;
        within(
            "limits.streams_before_login",
            l.streams_before_login.into(),
            1,
            64,
        )?;
        within(
            "limits.bytes_before_login",
            l.bytes_before_login.into(),
            4 * 1024,
            4 << 20,
        )?;
        within("limits.frame_read_secs", l.frame_read_secs, 1, 600)?;
        within(
            "limits.login_deadline_secs",
            l.login_deadline_secs,
            1,
            3_600,
        )?;
        within(
            "limits.sends_per_minute",
            l.sends_per_minute.into(),
            1,
            1_000_000,
        )?;
        within(
            "limits.registrations_per_address_per_hour",
            l.registrations_per_address_per_hour.into(),
            1,
            1_000_000,
        )?;
        within(
            "limits.lookups_per_account_per_day",
            l.lookups_per_account_per_day.into(),
            1,
            10_000_000,
        )?;
        within(
            "limits.subscriptions_per_account",
            l.subscriptions_per_account.into(),
            1,
            1_024,
        )?;
        within(
            "limits.secret_queue_envelopes",
            l.secret_queue_envelopes.into(),
            1,
            10_000_000,
        )?;
        // One envelope of the largest size must fit.
        within(
            "limits.secret_queue_bytes",
            l.secret_queue_bytes,
            sotto_proto::MAX_SECRET_CIPHERTEXT as u64,
            1 << 40,
        )?;
        within(
            "limits.secret_queue_per_sender_envelopes",
            l.secret_queue_per_sender_envelopes.into(),
            1,
            10_000_000,
        )?;
        within(
            "limits.secret_queue_per_sender_bytes",
            l.secret_queue_per_sender_bytes,
            sotto_proto::MAX_SECRET_CIPHERTEXT as u64,
            1 << 40,
        )?;
        within(
            "limits.secret_queue_total_envelopes",
            l.secret_queue_total_envelopes,
            1,
            1 << 40,
        )?;
        within(
            "limits.secret_queue_total_bytes",
            l.secret_queue_total_bytes,
            sotto_proto::MAX_SECRET_CIPHERTEXT as u64,
            1 << 50,
        )?;
        within(
            "warrant.max_window_days",
            self.warrant.max_window_days.into(),
            1,
            3_650,
        )?;
        within(
            "warrant.max_targets",
            self.warrant.max_targets.into(),
            1,
            1_000,
        )?;
        within(
            "warrant.requests_per_minute",
            self.warrant.requests_per_minute.into(),
            1,
            10_000,
        )?;
        within("warrant.approvals", self.warrant.approvals.into(), 1, 2)?;
        within(
            "warrant.max_notice_days",
            self.warrant.max_notice_days.into(),
            1,
            3_650,
        )?;
        within(
            "warrant.notice_days",
            self.warrant.notice_days.into(),
            0,
            self.warrant.max_notice_days.into(),
        )?;
        Ok(())
    }

    /// The file `init` writes: every setting with its default and what it means.
    /// `text` (a `relay.toml`) with its `store` setting set to `kind`: the
    /// line that sets it replaced, or one added before the first section.
    /// Everything else, comments included, is kept as it was.
    pub fn with_store(text: &str, kind: StoreKind) -> String {
        let setting = format!("store = \"{kind}\"");
        let mut out = Vec::new();
        let mut done = false;
        for line in text.lines() {
            let trimmed = line.trim_start();
            let sets_store = trimmed
                .strip_prefix("store")
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if !done && trimmed.starts_with('[') {
                out.push(setting.clone());
                done = true;
            }
            if sets_store && !done {
                out.push(setting.clone());
                done = true;
            } else {
                out.push(line.to_owned());
            }
        }
        if !done {
            out.push(setting);
        }
        out.join("\n") + "\n"
    }

    pub fn commented_default() -> String {
        let d = RelayConfig::default();
        format!(
            "# sotto relay configuration. Every setting is optional; these are the defaults.\n\
             \n\
             # Address the QUIC endpoint binds (flag: serve --listen).\n\
             listen = \"{listen}\"\n\
             # The embedded store of a new data directory: \"fjall\" or \"sled\".\n\
             # A data directory keeps the store it was made with.\n\
             store = \"fjall\"\n\
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
             # One-time prekeys of one account that others may take per minute; past it,\n\
             # bundles go out without one (nobody is refused a secret chat).\n\
             prekey_bundles_per_minute = {bundles}\n\
             # Prometheus metrics (GET /metrics), off unless set; keep them on loopback.\n\
             # metrics_listen = \"127.0.0.1:9464\"\n\
             # Several relay nodes on one NATS JetStream cluster (see the README's\n\
             # \"Operating a cluster\"): store = \"nats\", and\n\
             # nats_urls = [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\n\
             # nats_user = \"relay\"\n\
             # nats_password_file = \"nats.password\"                  # or SOTTO_NATS_PASSWORD\n\
             # nats_warrant_password_file = \"nats-warrant.password\"  # or SOTTO_NATS_WARRANT_PASSWORD\n\
             # nats_replicas = 3\n\
             # nats_warrant_desk = false  # true on the one node that serves warrants\n\
             \n\
             [limits]\n\
             # Connections held at once, from everyone, and from one IPv4 address or IPv6 /64.\n\
             connections = {conns}\n\
             connections_per_address = {per_addr}\n\
             # Before login: streams open at once, and bytes in flight (this also bounds one frame).\n\
             streams_before_login = {pre_streams}\n\
             bytes_before_login = {pre_bytes}\n\
             # A frame must have arrived whole this many seconds after its stream opened.\n\
             frame_read_secs = {frame_secs}\n\
             # A connection nobody has logged in on is closed after this many seconds.\n\
             login_deadline_secs = {login_secs}\n\
             # Messages (normal and secret) one account may send per minute.\n\
             sends_per_minute = {sends}\n\
             # New accounts per hour from one IPv4 address or IPv6 /64.\n\
             registrations_per_address_per_hour = {regs}\n\
             # Identity and prekey-bundle lookups one account may make per day.\n\
             lookups_per_account_per_day = {lookups}\n\
             # Connections of one account that receive pushes at once (its devices).\n\
             subscriptions_per_account = {subs}\n\
             # Secret envelopes, and their bytes, waiting for one recipient; past either the\n\
             # sender is told the recipient's queue is full.\n\
             secret_queue_envelopes = {q_count}\n\
             secret_queue_bytes = {q_bytes}\n\
             # The same, from one sender to one recipient (one sender cannot fill someone's queue),\n\
             # and in the whole relay.\n\
             secret_queue_per_sender_envelopes = {qp_count}\n\
             secret_queue_per_sender_bytes = {qp_bytes}\n\
             secret_queue_total_envelopes = {qt_count}\n\
             secret_queue_total_bytes = {qt_bytes}\n\
             \n\
             [warrant]\n\
             # The longest disclosure window a warrant may ask for, in days.\n\
             max_window_days = {window}\n\
             # The most targets one warrant may name.\n\
             max_targets = {targets}\n\
             # Warrant and unmask requests accepted per minute from each registered authority.\n\
             requests_per_minute = {rate}\n\
             # Hold a warrant that passed every automatic check until the operators approve it\n\
             # (sotto-relay warrant list|show|approve|reject, against the running relay).\n\
             review = {review}\n\
             # How many different operators must approve it: 1, or 2 (the two-person rule).\n\
             approvals = {approvals}\n\
             # The people a warrant disclosed are told of it this many days after its window\n\
             # ends, unless the warrant says when (at most max_notice_days after; an authority\n\
             # may postpone it twice, each time by at most max_notice_days).\n\
             notice_days = {notice}\n\
             max_notice_days = {max_notice}\n",
            listen = d.listen,
            frame = d.max_frame_bytes,
            key = d.master_key_file.display(),
            ttl = d.secret_ttl_secs,
            idle = d.idle_timeout_secs,
            streams = d.max_concurrent_requests,
            bundles = d.prekey_bundles_per_minute,
            conns = d.limits.connections,
            per_addr = d.limits.connections_per_address,
            pre_streams = d.limits.streams_before_login,
            pre_bytes = d.limits.bytes_before_login,
            frame_secs = d.limits.frame_read_secs,
            login_secs = d.limits.login_deadline_secs,
            sends = d.limits.sends_per_minute,
            regs = d.limits.registrations_per_address_per_hour,
            lookups = d.limits.lookups_per_account_per_day,
            subs = d.limits.subscriptions_per_account,
            q_count = d.limits.secret_queue_envelopes,
            q_bytes = d.limits.secret_queue_bytes,
            qp_count = d.limits.secret_queue_per_sender_envelopes,
            qp_bytes = d.limits.secret_queue_per_sender_bytes,
            qt_count = d.limits.secret_queue_total_envelopes,
            qt_bytes = d.limits.secret_queue_total_bytes,
            window = d.warrant.max_window_days,
            targets = d.warrant.max_targets,
            rate = d.warrant.requests_per_minute,
            review = d.warrant.review,
            approvals = d.warrant.approvals,
            notice = d.warrant.notice_days,
            max_notice = d.warrant.max_notice_days,
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
        assert!(
            parsed.warrant.review,
            "warrants are reviewed unless the operator says not"
        );
        assert_eq!(parsed.warrant.approvals, 1);
        assert!(parsed.validate().is_ok());
    }

    #[test]
    fn an_unknown_setting_is_an_error() {
        assert!(toml::from_str::<RelayConfig>("lisen = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        for (text, key) in [
            ("max_frame_bytes = 0", "max_frame_bytes"),
            ("idle_timeout_secs = 0", "idle_timeout_secs"),
            ("[warrant]\nmax_window_days = 0", "warrant.max_window_days"),
            (
                "[warrant]\nrequests_per_minute = 4294967295",
                "warrant.requests_per_minute",
            ),
            ("[warrant]\napprovals = 0", "warrant.approvals"),
            ("[warrant]\napprovals = 3", "warrant.approvals"),
            ("[warrant]\nmax_notice_days = 0", "warrant.max_notice_days"),
            (
                "[warrant]\nnotice_days = 31\nmax_notice_days = 30",
                "warrant.notice_days",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", RelayConfig::load(&path).unwrap_err());
            assert!(err.contains(key) && err.contains("out of range"), "{err}");
        }
    }

    #[test]
    fn the_store_setting_is_changed_in_place_and_nothing_else() {
        let default = RelayConfig::commented_default();
        let changed = RelayConfig::with_store(&default, StoreKind::Sled);
        let parsed: RelayConfig = toml::from_str(&changed).unwrap();
        assert_eq!(parsed.store, StoreKind::Sled);
        assert_eq!(changed.lines().count(), default.lines().count());
        assert!(changed.contains("# A data directory keeps the store it was made with."));
        // No store line: one is added before the first section, not inside it.
        let text = "listen = \"127.0.0.1:9\"\n[warrant]\nmax_targets = 3\n";
        let parsed: RelayConfig =
            toml::from_str(&RelayConfig::with_store(text, StoreKind::Sled)).unwrap();
        assert_eq!(parsed.store, StoreKind::Sled);
        assert_eq!(parsed.warrant.max_targets, 3);
        let parsed: RelayConfig =
            toml::from_str(&RelayConfig::with_store("", StoreKind::Sled)).unwrap();
        assert_eq!(parsed.store, StoreKind::Sled);
    }
}
