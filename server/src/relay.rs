//! Starting and stopping a relay: the QUIC endpoint, the accept loop, and the
//! [`RelayState`] every connection works on, put together from the opened
//! data directory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::accounts::Accounts;
use crate::admission::{Admission, Decision};
use crate::archive::{Archive, NormalArchive};
use crate::archive::{ClusterArchive, ClusterArchiveReader};
use crate::cluster::DESK_BUCKET;
use crate::cluster::{ACCOUNTS, Cluster, ClusterOptions, ClusterRecords, GROUPS};
use crate::config::RelayConfig;
use crate::config::StoreKind;
use crate::groups::Groups;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::prekeys::ClusterPrekeys;
use crate::prekeys::Prekeys;
use crate::quotas::Quotas;
use crate::secret_queue::ClusterSecretQueue;
use crate::secret_queue::{Queue, SecretQueue};
use crate::state::RelayState;
use crate::store::Store;
use crate::warrant::anchor::StoredAnchor;
use crate::warrant::audit::{AuditLog, LogRefused};
use crate::warrant::cluster::{ClusterNotices, DeskAnchor, DeskFence, claim_desk};
use crate::warrant::grants::Grants;
use crate::warrant::held::HeldWarrants;
use crate::warrant::notices::Notices;
use crate::warrant::{DeskParts, WarrantDesk};
use crate::writer::Writer;
use crate::{connection, datadir};

/// A relay that is accepting connections.
pub struct RunningRelay {
    pub addr: SocketAddr,
    /// `sha256:<hex>` of the relay's certificate.
    pub fingerprint: String,
    /// Hex of the relay's Ed25519 disclosure key.
    pub disclosure_key: String,
    /// Hex of the relay's Ed25519 audit key (signs the transparency log's heads).
    pub audit_key: String,
    pub warnings: Vec<String>,
    /// Where metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    endpoint: quinn::Endpoint,
    state: Arc<RelayState>,
    accept: tokio::task::JoinHandle<()>,
    admin: crate::admin::AdminSocket,
    sweeper: tokio::task::JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
    /// The data directory, held until the store is closed.
    dir_lock: datadir::DirLock,
    clock: crate::Clock,
}

/// Opens (or lays out) the data directory at `root` and starts serving on `config.listen`.
pub async fn start(root: &Path, config: RelayConfig) -> Result<RunningRelay> {
    config
        .validate()
        .map_err(|why| anyhow::anyhow!("the relay configuration: {why}"))?;
    let opened = datadir::open(root, &config)?;
    let store: Arc<dyn Store> = opened.store;
    let dir_lock = opened.lock;
    let server_config = opened
        .tls
        .server_config(config.idle_timeout_secs, &config.limits)?;
    let endpoint = quinn::Endpoint::server(server_config, config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = endpoint.local_addr()?;
    let clock = crate::Clock::system();
    let cluster = match config.store {
        StoreKind::Nats => {
            refuse_a_single_relays_data(root, &*store)?;
            refuse_to_drop_the_desk(root, &*store, &config)?;
            let node_id = datadir::make_node_id(&*store)?;
            Some(open_cluster(root, &config, &opened.sealer, &clock, &node_id).await?)
        }
        _ => {
            if datadir::node_id(&*store)?.is_some() {
                anyhow::bail!(
                    "{} is a cluster node's data directory: it serves with store = \"nats\" \
                     (its users' records are on the cluster, and a warrant desk's notices \
                     are written there)",
                    root.display()
                );
            }
            None
        }
    };
    let (state, writer_thread) = assemble(
        root,
        config,
        &clock,
        store,
        &opened.sealer,
        &opened.disclosure_key,
        &opened.audit_key,
        cluster,
    )?;
    let metrics = state.metrics.clone();
    let mut warnings = opened.warnings;
    match state.warrants.audit_log() {
        Err(why) if why == crate::warrant::NOT_THE_DESK => info!("{why}"),
        Err(why) => warnings.push(why.to_owned()),
        Ok(_) => {}
    }
    let metrics_server = match state.config.metrics_listen {
        None => None,
        Some(listen) => {
            if !listen.ip().is_loopback() {
                warnings.push(format!(
                    "metrics are served without authentication on {listen}, not a loopback address"
                ));
            }
            let weak = Arc::downgrade(&state);
            let refresh = move || {
                if let Some(state) = weak.upgrade() {
                    state.refresh_gauges();
                }
            };
            Some(crate::metrics::serve(listen, metrics, refresh).await?)
        }
    };
    let admin =
        crate::admin::AdminSocket::serve(&crate::admin::socket_path(root), Arc::downgrade(&state))?;
    let accept = tokio::spawn(accept_loop(endpoint.clone(), state.clone()));
    let sweeper = tokio::spawn(expire_secret_envelopes(Arc::downgrade(&state)));
    info!(%addr, "relay listening");
    Ok(RunningRelay {
        addr,
        fingerprint: opened.tls.fingerprint(),
        disclosure_key: hex::encode(opened.disclosure_key.verifying_key().as_bytes()),
        audit_key: hex::encode(opened.audit_key.verifying_key().as_bytes()),
        warnings,
        metrics_addr: metrics_server.as_ref().map(|(addr, _)| *addr),
        metrics_task: metrics_server.map(|(_, task)| task),
        endpoint,
        state,
        accept,
        admin,
        sweeper,
        writer_thread,
        dir_lock,
        clock,
    })
}

/// A data directory that served users or warrants as a single relay does not
/// become a cluster's node by a change of `store`: its accounts, history and
/// secret queue would be left behind, its owed warrant notices never sent,
/// its transparency log no longer served. (The warrant records and log of
/// a cluster's warrant desk are its data directory's own: a directory with
/// a node id has served as a node, never as a single relay.)
fn refuse_a_single_relays_data(root: &Path, store: &dyn Store) -> Result<()> {
    use crate::store::Tree;
    let node = datadir::node_id(store)?.is_some();
    let mut trees = vec![Tree::Accounts, Tree::Messages, Tree::SecretQueue];
    if !node {
        trees.push(Tree::Warrants);
    }
    let served = trees
        .into_iter()
        .map(|tree| store.count(tree))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .any(|n| n > 0);
    let logged = !node && std::fs::metadata(datadir::audit_path(root)).is_ok_and(|m| m.len() > 0);
    if served || logged {
        anyhow::bail!(
            "{} has served as a single relay (it holds accounts, messages, warrants or a \
             transparency log): a cluster's node starts from a new data directory \
             (`sotto-relay init --join`); its records are not copied onto a cluster yet",
            root.display()
        );
    }
    Ok(())
}

/// A node that served as its cluster's warrant desk stays it: its warrant
/// records and transparency log are in its data directory, and warrants it
/// disclosed owe their notices from there.
fn refuse_to_drop_the_desk(root: &Path, store: &dyn Store, config: &RelayConfig) -> Result<()> {
    if config.nats_warrant_desk {
        return Ok(());
    }
    let logged = std::fs::metadata(datadir::audit_path(root)).is_ok_and(|m| m.len() > 0);
    if logged || store.count(crate::store::Tree::Warrants)? > 0 {
        anyhow::bail!(
            "{} has served as its cluster's warrant desk (its warrant records and transparency \
             log are here): keep nats_warrant_desk = true in its relay.toml",
            root.display()
        );
    }
    Ok(())
}

/// A NATS password: from the environment variable `env` if set, else from
/// `file` (relative paths are inside the data directory `root`).
fn nats_password(root: &Path, file: &Path, env: &str) -> Result<zeroize::Zeroizing<String>> {
    if let Ok(password) = std::env::var(env) {
        return Ok(zeroize::Zeroizing::new(password));
    }
    let path = if file.is_absolute() {
        file.to_path_buf()
    } else {
        root.join(file)
    };
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).with_context(|| {
        format!(
            "store = \"nats\" needs the NATS password: set {env}, or write it to {} (0600)",
            path.display()
        )
    })?);
    Ok(zeroize::Zeroizing::new(text.trim().to_owned()))
}

/// Everything a relay node keeps on the cluster, opened (streams and
/// buckets made where missing): its connection as the relay's user, and
/// the warrant desk's view of the history through the desk's own user.
pub(crate) struct ClusterParts {
    client: async_nats::Client,
    accounts: ClusterRecords,
    groups: ClusterRecords,
    prekeys: ClusterPrekeys,
    secret_queue: ClusterSecretQueue,
    archive: ClusterArchive,
    desk_view: ClusterArchiveReader,
    notices: ClusterNotices,
    /// The notices the warrant desk writes (as the desk's user), and its
    /// fence, if this node is the cluster's warrant desk.
    desk: Option<(ClusterNotices, DeskFence)>,
}

/// Connects a relay node to its cluster and opens what it keeps there.
async fn open_cluster(
    root: &Path,
    config: &RelayConfig,
    sealer: &Arc<crate::seal::Sealer>,
    clock: &crate::Clock,
    node_id: &[u8],
) -> Result<ClusterParts> {
    let options = |user: &str, file: &Path, env: &str| -> Result<ClusterOptions> {
        Ok(ClusterOptions {
            urls: config.nats_urls.clone(),
            user: user.to_owned(),
            password: nats_password(root, file, env)?,
            replicas: config.nats_replicas,
        })
    };
    let relay = options(
        &config.nats_user,
        &config.nats_password_file,
        "SOTTO_NATS_PASSWORD",
    )?;
    let desk = options(
        crate::cluster::WARRANT_USER,
        &config.nats_warrant_password_file,
        "SOTTO_NATS_WARRANT_PASSWORD",
    )?;
    let ttl = std::time::Duration::from_secs(config.secret_ttl_secs);
    let opened = async {
        let cluster = Cluster::connect(&relay).await?;
        let desk = Cluster::connect(&desk).await?;
        // Made by the relay's user before the desk's user looks for it.
        let notices = ClusterNotices::open(&cluster, sealer.clone()).await?;
        let desk_parts = match config.nats_warrant_desk {
            true => {
                claim_desk(&cluster, sealer, node_id).await?;
                // Made by the relay's user, kept by the desk's.
                cluster.bucket(DESK_BUCKET).await?;
                Some((
                    ClusterNotices::writer(&desk, sealer.clone()),
                    DeskFence::open(&desk, sealer.clone()).await?,
                ))
            }
            false => None,
        };
        anyhow::Ok(ClusterParts {
            notices,
            desk: desk_parts,
            client: cluster.client(),
            accounts: ClusterRecords::open(&cluster, ACCOUNTS).await?,
            groups: ClusterRecords::open(&cluster, GROUPS).await?,
            prekeys: ClusterPrekeys::open(&cluster, sealer.clone()).await?,
            secret_queue: ClusterSecretQueue::open(
                &cluster,
                sealer.clone(),
                config.limits.secret_quota(),
                ttl,
            )
            .await?,
            archive: ClusterArchive::open(&cluster, sealer.clone())
                .await?
                .with_clock(clock.clone()),
            desk_view: ClusterArchive::reader(&desk, sealer.clone()).await?,
        })
    };
    opened
        .await
        .context("cannot open the relay's records on the NATS cluster")
}

/// The state every connection shares, made from the opened data directory
/// at `root` (and, on a cluster, from what the node keeps there), and the
/// writing thread's handle.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    root: &Path,
    config: RelayConfig,
    clock: &crate::Clock,
    store: Arc<dyn Store>,
    sealer: &Arc<crate::seal::Sealer>,
    disclosure_key: &ed25519_dalek::SigningKey,
    audit_key: &ed25519_dalek::SigningKey,
    cluster: Option<ClusterParts>,
) -> Result<(Arc<RelayState>, std::thread::JoinHandle<()>)> {
    let (archive, secret_queue, accounts, groups, prekeys, hub, notices) = match cluster {
        None => (
            Archive::Local(Arc::new(
                NormalArchive::open(store.clone(), sealer.clone())
                    .context("cannot open the normal archive")?
                    .with_clock(clock.clone()),
            )),
            Queue::Local(
                SecretQueue::open(store.clone(), sealer.clone(), config.limits.secret_quota())
                    .context("cannot open the secret queue")?,
            ),
            Accounts::new(store.clone(), sealer.clone()),
            Groups::new(store.clone(), sealer.clone()),
            Prekeys::new(store.clone(), sealer.clone()),
            Hub::new(config.limits.subscriptions_per_account),
            None,
        ),
        Some(parts) => (
            Archive::Cluster(Arc::new(parts.archive), parts.desk_view),
            Queue::Cluster(parts.secret_queue),
            Accounts::on_cluster(parts.accounts, sealer.clone()),
            Groups::on_cluster(parts.groups, sealer.clone()),
            Prekeys::on_cluster(parts.prekeys),
            Hub::on_cluster(
                config.limits.subscriptions_per_account,
                parts.client,
                sealer.clone(),
            ),
            Some((Notices::on_cluster(parts.notices), parts.desk)),
        ),
    };
    let (archive, secret_queue) = (Arc::new(archive), Arc::new(secret_queue));
    let metrics = Arc::new(Metrics::new());
    let (writer, writer_thread) = Writer::start(
        store.clone(),
        archive.clone(),
        secret_queue.clone(),
        metrics.clone(),
    )
    .context("cannot start the writing thread")?;
    // Where people are told of warrants (read at their node), and where
    // the desk writes it; on a cluster, only its warrant desk serves warrants.
    let (notices, desk_notices, audit) = match notices {
        None => {
            let notices = Notices::new(store.clone(), sealer.clone());
            let audit = open_audit_log(root, &store, sealer, audit_key, clock, None)?;
            (notices.clone(), notices, audit)
        }
        Some((node, Some((desk, fence)))) => {
            let audit = open_audit_log(root, &store, sealer, audit_key, clock, Some(fence))?;
            (node, Notices::on_cluster(desk), audit)
        }
        Some((node, None)) => (
            node.clone(),
            node,
            Err(crate::warrant::NOT_THE_DESK.to_owned()),
        ),
    };
    let warrants = WarrantDesk::new(DeskParts {
        archive: archive.reader(),
        accounts: accounts.names(),
        grants: Grants::new(store.clone(), sealer.clone()),
        audit,
        authorities_path: datadir::authorities_path(root),
        limits: sotto_warrant::Limits::new(
            config.warrant.max_window_days,
            config.warrant.max_targets,
        )
        .with_notice(sotto_warrant::NoticeDelay::new(
            config.warrant.notice_days,
            config.warrant.max_notice_days,
        )),
        requests_per_minute: config.warrant.requests_per_minute,
        disclosure_key: disclosure_key.clone(),
        pseudonym_key: sealer.pseudonym_key(),
        writer: writer.clone(),
        held: HeldWarrants::new(store.clone(), sealer.clone()),
        notices: desk_notices,
        review: config.warrant.review,
        approvals: config.warrant.approvals,
        clock: clock.clone(),
    });
    let state = Arc::new(RelayState {
        accounts,
        groups,
        archive,
        writer,
        prekeys,
        secret_queue,
        warrants,
        notices,
        quotas: Quotas::new(&config),
        admission: Admission::new(&config.limits),
        hub,
        metrics: metrics.clone(),
        store,
        config,
        next_connection: AtomicU64::new(1),
    });
    Ok((state, writer_thread))
}

/// The transparency log, checked against what the relay last signed (sealed
/// in the store, and on a cluster fenced by `fence`). One that was edited
/// behind its back is refused: the relay still serves its users, but no
/// warrant (it could not log it).
pub fn open_audit_log(
    root: &Path,
    store: &Arc<dyn Store>,
    sealer: &Arc<crate::seal::Sealer>,
    audit_key: &ed25519_dalek::SigningKey,
    clock: &crate::Clock,
    fence: Option<DeskFence>,
) -> Result<std::result::Result<AuditLog, String>> {
    let local = StoredAnchor::new(store.clone(), sealer.clone());
    let anchor: Box<dyn crate::warrant::audit::Anchor> = match fence.clone() {
        None => Box::new(local),
        Some(fence) => Box::new(DeskAnchor {
            local,
            fence,
            log: datadir::audit_path(root).display().to_string(),
        }),
    };
    match AuditLog::open_anchored(
        &datadir::audit_path(root),
        audit_key.clone(),
        anchor,
        clock.clone(),
    ) {
        Ok(log) => match fence.map(|f| f.take()) {
            // The log checked: this process is the desk now.
            Some(Err(e)) => {
                error!(error = %format!("{e:#}"), "cannot take the warrant desk's fence; warrant requests are refused");
                Ok(Err(format!(
                    "the warrant desk's fence on the cluster cannot be taken: {e:#}"
                )))
            }
            _ => Ok(Ok(log)),
        },
        Err(e) if e.downcast_ref::<LogRefused>().is_some() => {
            error!(error = %e, "the transparency log was altered; warrant requests are refused");
            Ok(Err(e.to_string()))
        }
        Err(e) => Err(e),
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, state: Arc<RelayState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    let from = incoming.remote_address();
                    match state.admission.decide(from.ip(), incoming.remote_address_validated()) {
                        Decision::Admit(admitted) => {
                            connections.spawn(connection::serve(state.clone(), incoming, admitted));
                        }
                        Decision::Retry => {
                            if let Err(e) = incoming.retry() {
                                e.into_incoming().refuse();
                            }
                        }
                        Decision::Refuse(why) => {
                            debug!(remote = %from, why, "connection refused");
                            Metrics::count(&state.metrics.connections_refused, "reason", why);
                            incoming.refuse();
                        }
                    }
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

/// How often due warrant notices are looked for (one comparison when none is).
const NOTICE_SWEEP: Duration = Duration::from_secs(5);

/// Deletes expired secret envelopes now and then, and issues due warrant
/// notices, for as long as the relay runs.
async fn expire_secret_envelopes(state: std::sync::Weak<RelayState>) {
    let mut every = tokio::time::interval(NOTICE_SWEEP);
    let mut last_expiry: Option<tokio::time::Instant> = None;
    loop {
        every.tick().await;
        let Some(state) = state.upgrade() else { return };
        // Notices are issued when someone fetches here, and at least once a
        // sweep: on a cluster, the people told may all fetch at other nodes.
        if state.warrants.notices_may_be_due()
            && let Err(e) = crate::handlers::off_the_workers(state.warrants.notify_due()).await
        {
            warn!(error = %format!("{e:#}"), "warrant notices are late");
        }
        if last_expiry.is_some_and(|at| at.elapsed() < EXPIRY_SWEEP) {
            continue;
        }
        last_expiry = Some(tokio::time::Instant::now());
        // It appends to the log, which on a cluster waits for the desk's fence.
        crate::handlers::off_the_workers(async { state.warrants.flush_unverifiable(false) }).await;
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

    /// The relay's clock: the archive's record times and every time the
    /// warrant desk decides by (settable only with the `test-clock` feature).
    pub fn clock(&self) -> &crate::Clock {
        &self.clock
    }

    /// Stops accepting, closes every connection, and flushes the store.
    pub async fn shutdown(self) -> Result<()> {
        self.endpoint.close(0u32.into(), b"relay shutting down");
        // Every peer has been sent its close: give the packets a moment to
        // leave, then let go of the address, so that a relay restarted on it
        // can bind at once while this one finishes draining on another socket.
        let _ = tokio::time::timeout(Duration::from_millis(100), self.endpoint.wait_idle()).await;
        let any = SocketAddr::new(
            match self.addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            },
            0,
        );
        match std::net::UdpSocket::bind(any).and_then(|s| self.endpoint.rebind(s)) {
            Ok(()) => info!(addr = %self.addr, "address released"),
            Err(e) => warn!(error = %e, "cannot release the address early"),
        }
        if tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle())
            .await
            .is_err()
        {
            warn!("connections did not close in time; stopping anyway");
        }
        let _ = self.accept.await;
        self.admin.close().await;
        if let Some(task) = self.metrics_task {
            task.abort();
        }
        self.sweeper.abort();
        let _ = self.sweeper.await;
        let store = self.state.store.clone();
        self.state.warrants.flush_unverifiable(true);
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
        // Only now may another relay, or a migration, have the directory.
        drop(self.dir_lock);
        Ok(())
    }
}
