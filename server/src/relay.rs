//! Starting and stopping a relay: the QUIC endpoint, the accept loop, and the
//! shared [`RelayState`] every connection works on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::accounts::Accounts;
use crate::archive::NormalArchive;
use crate::audit::AuditLog;
use crate::config::RelayConfig;
use crate::grants::Grants;
use crate::groups::Groups;
use crate::hub::Hub;
use crate::prekeys::Prekeys;
use crate::ratelimit::RateLimiter;
use crate::seal::Sealer;
use crate::secret_queue::SecretQueue;
use crate::store::Store;
use crate::writer::Writer;
use crate::{connection, datadir};

/// What every connection shares.
pub struct RelayState {
    pub config: RelayConfig,
    pub store: Arc<dyn Store>,
    pub accounts: Accounts,
    pub groups: Groups,
    pub archive: Arc<NormalArchive>,
    pub writer: Writer,
    pub prekeys: Prekeys,
    pub(crate) secret_queue: Arc<SecretQueue>,
    pub grants: Grants,
    pub audit: AuditLog,
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) disclosure_key: SigningKey,
    pub(crate) warrant_limiter: RateLimiter,
    /// Per account: how fast others may take its prekey bundles (each uses up
    /// one of its one-time prekeys), whatever connections they use.
    pub(crate) bundle_limiters: std::sync::Mutex<std::collections::HashMap<String, RateLimiter>>,
    pub data_dir: PathBuf,
    pub hub: Hub,
    next_connection: AtomicU64,
}

impl RelayState {
    /// Secret envelopes waiting for their recipients, relay-wide.
    pub fn secret_envelopes_waiting(&self) -> Result<usize, crate::RelayError> {
        self.secret_queue.len()
    }

    /// Deletes the secret envelopes whose time-to-live ended by `now_ms`.
    pub fn expire_secret_envelopes(&self, now_ms: i64) -> Result<usize, crate::RelayError> {
        self.secret_queue.expire(now_ms)
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}

/// A relay that is accepting connections.
pub struct RunningRelay {
    pub addr: SocketAddr,
    /// `sha256:<hex>` of the relay's certificate.
    pub fingerprint: String,
    /// Hex of the relay's Ed25519 disclosure key.
    pub disclosure_key: String,
    pub warnings: Vec<String>,
    endpoint: quinn::Endpoint,
    state: Arc<RelayState>,
    accept: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
}

/// Opens (or lays out) the data directory at `root` and starts serving on `config.listen`.
pub async fn start(root: &Path, config: RelayConfig) -> Result<RunningRelay> {
    let opened = datadir::open(root, &config)?;
    let store: Arc<dyn Store> = opened.store;
    let server_config = opened
        .tls
        .server_config(config.idle_timeout_secs, config.max_concurrent_requests)?;
    let endpoint = quinn::Endpoint::server(server_config, config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = endpoint.local_addr()?;
    let archive = Arc::new(
        NormalArchive::open(store.clone(), opened.sealer.clone())
            .context("cannot open the normal archive")?,
    );
    let secret_queue = Arc::new(
        SecretQueue::open(store.clone(), opened.sealer.clone())
            .context("cannot open the secret queue")?,
    );
    let (writer, writer_thread) =
        Writer::start(store.clone(), archive.clone(), secret_queue.clone())
            .context("cannot start the writing thread")?;
    let state = Arc::new(RelayState {
        accounts: Accounts::new(store.clone(), opened.sealer.clone()),
        groups: Groups::new(store.clone(), opened.sealer.clone()),
        archive,
        writer,
        prekeys: Prekeys::new(store.clone(), opened.sealer.clone()),
        secret_queue,
        grants: Grants::new(store.clone(), opened.sealer.clone()),
        audit: AuditLog::open(&datadir::audit_path(root))?,
        sealer: opened.sealer.clone(),
        disclosure_key: opened.disclosure_key.clone(),
        warrant_limiter: RateLimiter::per_minute(config.warrant.requests_per_minute),
        bundle_limiters: Default::default(),
        data_dir: root.to_owned(),
        hub: Hub::default(),
        store,
        config,
        next_connection: AtomicU64::new(1),
    });
    let accept = tokio::spawn(accept_loop(endpoint.clone(), state.clone()));
    let sweeper = tokio::spawn(expire_secret_envelopes(Arc::downgrade(&state)));
    info!(%addr, "relay listening");
    Ok(RunningRelay {
        addr,
        fingerprint: opened.tls.fingerprint(),
        disclosure_key: hex::encode(opened.disclosure_key.verifying_key().as_bytes()),
        warnings: opened.warnings,
        endpoint,
        state,
        accept,
        sweeper,
        writer_thread,
    })
}

async fn accept_loop(endpoint: quinn::Endpoint, state: Arc<RelayState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    connections.spawn(connection::serve(state.clone(), incoming));
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// How often undelivered secret envelopes are checked for the end of their time-to-live.
const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

/// Deletes expired secret envelopes now and then, for as long as the relay runs.
async fn expire_secret_envelopes(state: std::sync::Weak<RelayState>) {
    let mut every = tokio::time::interval(EXPIRY_SWEEP);
    loop {
        every.tick().await;
        let Some(state) = state.upgrade() else { return };
        match state.secret_queue.expire(crate::now_ms()) {
            Ok(0) => {}
            Ok(n) => {
                info!(expired = n, "secret envelopes expired");
                if let Err(e) = state.writer.durable().await {
                    warn!(error = %e, "cannot flush expired envelopes");
                }
            }
            Err(e) => warn!(error = %e, "cannot expire secret envelopes"),
        }
    }
}

impl RunningRelay {
    pub fn state(&self) -> &Arc<RelayState> {
        &self.state
    }

    /// Stops accepting, closes every connection, and flushes the store.
    pub async fn shutdown(self) -> Result<()> {
        self.endpoint.close(0u32.into(), b"relay shutting down");
        if tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle())
            .await
            .is_err()
        {
            warn!("connections did not close in time; stopping anyway");
        }
        let _ = self.accept.await;
        self.sweeper.abort();
        let _ = self.sweeper.await;
        let store = self.state.store.clone();
        drop(self.state);
        // The writing and checkpoint threads end once the state (and their handles)
        // is gone; after them nothing else holds the store, so it is closed
        // when we return.
        let writer_thread = self.writer_thread;
        let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .context("the final flush did not run")?
            .context("the final flush failed")?;
        Ok(())
    }
}
