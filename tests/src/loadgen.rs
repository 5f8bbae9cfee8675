//! The load generator behind `sotto-loadgen`: N connected clients send M
//! messages in total, each to the next client, and every message's time from
//! send to delivery at its recipient is measured.
//!
//! Modes: `echo` (the ceiling: [`crate::echo`], no accounts, no storage),
//! `normal` (the relay, every message flushed before it is acknowledged) and
//! `secret` (the relay, with real Double Ratchet sessions set up before the
//! clock starts). The text of each message starts with its send time, so the
//! recipient can compute the latency itself.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use prost::Message;
use serde::Serialize;
use std::collections::HashMap;

use sotto_client::e2e::{LocalPrekeys, OwnSenderKey, SenderKeyRecord, Session, verify_bundle};
use sotto_client::identity::Identity;
use sotto_client::pinning::Fingerprint;
use sotto_client::relay::{Pushes, Recipient, RelayClient, client_endpoint};
use sotto_proto::v1::{push, secret_payload};
use sotto_server::config::StoreKind;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Echo,
    Normal,
    Secret,
    /// Each client sends to its group of `--group-size` (a normal group).
    NormalGroup,
    /// Each client sends to its secret group of `--group-size`: one
    /// sender-key ciphertext, fanned out by the relay.
    SecretGroup,
}

impl Mode {
    fn grouped(self) -> bool {
        matches!(self, Mode::NormalGroup | Mode::SecretGroup)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub clients: usize,
    pub messages: usize,
    pub size: usize,
    pub idle_clients: usize,
    /// Existing relay nodes (addresses, and their one fingerprint) instead of
    /// a child process; clients are spread over them in turn.
    pub relay: Option<(Vec<String>, String)>,
    /// Start this many relay nodes on a local 3-node NATS JetStream cluster
    /// (`store = "nats"`) instead of one relay.
    pub cluster: Option<usize>,
    /// Messages per second for the whole run (open loop); `None` = as fast as it goes.
    pub rate: Option<f64>,
    /// The store of the relay it starts (not of one given, nor of echo).
    pub store: StoreKind,
    /// Members of each group, in the group modes (the clients split into groups).
    pub group_size: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    /// The store of the relay it started, as found in its data directory
    /// (`nats` for a cluster's nodes); `null` for echo or a relay given.
    pub store: Option<StoreKind>,
    /// Relay nodes the clients were spread over.
    pub relays: usize,
    pub clients: usize,
    pub idle_clients: usize,
    /// In the group modes: members of each group; `messages` counts deliveries.
    pub group_size: Option<usize>,
    pub messages: usize,
    pub size: usize,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Peak resident memory of the relay (or echo server) child, MiB.
    pub relay_rss_mib: Option<f64>,
    /// Relay memory the idle connections added, KiB each.
    pub idle_kib_per_conn: Option<f64>,
}

/// The server under load: child processes we started (one relay, the echo
/// server, or a cluster's nodes), or relays given.
struct Target {
    /// Where clients connect, in turn.
    addrs: Vec<String>,
    fingerprint: Fingerprint,
    children: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
    /// The store the started relay's data directory holds, as found on disk.
    store: Option<StoreKind>,
    /// The NATS cluster the nodes run on (stopped after them).
    _cluster: Option<crate::nats::NatsCluster>,
}

impl Drop for Target {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Target {
    /// The first child's process id (the relay, or a cluster's first node).
    fn pid(&self) -> Option<u32> {
        self.children.first().map(Child::id)
    }

    fn addr(&self, i: usize) -> String {
        self.addrs[i % self.addrs.len()].clone()
    }
}

/// Reads a `/proc/PID/status` field in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts `program args` and waits for its "listening on" and "fingerprint" lines.
fn spawn_server(program: PathBuf, args: &[&str], dir: Option<tempfile::TempDir>) -> Result<Target> {
    let mut child = Command::new(&program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut addr, mut fingerprint) = (None, None);
    while addr.is_none() || fingerprint.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .with_context(|| format!("{} did not say where it listens", program.display()))?;
        if let Some(a) = line.strip_prefix("listening on ") {
            addr = Some(a.trim().to_owned());
        } else if let Some(f) = line.strip_prefix("fingerprint ") {
            fingerprint = Some(Fingerprint::parse(f.trim()).map_err(anyhow::Error::msg)?);
        }
    }
    Ok(Target {
        addrs: vec![addr.unwrap_or_default()],
        fingerprint: fingerprint.context("no fingerprint")?,
        store: match &dir {
            Some(d) => sotto_server::datadir::existing_store(&d.path().join("relay/db"))?,
            None => None,
        },
        children: vec![child],
        _dirs: dir.into_iter().collect(),
        _cluster: None,
    })
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it first (cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

fn start_target(opts: &Options) -> Result<Target> {
    if let Some((addrs, fingerprint)) = &opts.relay {
        ensure!(!addrs.is_empty(), "--relay names no relay");
        return Ok(Target {
            addrs: addrs.clone(),
            fingerprint: Fingerprint::parse(fingerprint).map_err(anyhow::Error::msg)?,
            children: Vec::new(),
            _dirs: Vec::new(),
            store: None,
            _cluster: None,
        });
    }
    if let Some(nodes) = opts.cluster {
        ensure!(
            opts.mode != Mode::Echo,
            "--cluster starts relays: not with --mode echo"
        );
        return start_cluster(nodes);
    }
    match opts.mode {
        Mode::Echo => spawn_server(std::env::current_exe()?, &["echo-server"], None),
        Mode::Normal | Mode::Secret | Mode::NormalGroup | Mode::SecretGroup => {
            let dir = tempfile::tempdir()?;
            let root = dir.path().join("relay");
            std::fs::create_dir(&root)?;
            std::fs::write(
                root.join("relay.toml"),
                format!("store = \"{}\"\n{LOAD_LIMITS}", opts.store),
            )?;
            let data = root.to_string_lossy().into_owned();
            spawn_server(
                sibling("sotto-relay")?,
                &["--data", &data, "serve", "--listen", "127.0.0.1:0"],
                Some(dir),
            )
        }
    }
}

/// The relay's settings for the load generator: every client runs from
/// 127.0.0.1 and sends as fast as it can, so the per-address and
/// per-account limits are raised (still checked on every request) to
/// measure the relay, not the limits.
const LOAD_LIMITS: &str = "[limits]\n\
                           connections = 100000\n\
                           connections_per_address = 100000\n\
                           registrations_per_address_per_hour = 1000000\n\
                           sends_per_minute = 1000000\n";

/// A local 3-node NATS JetStream cluster and `nodes` relay nodes on it, the
/// first laid out, the others joined to it (`sotto-relay init --join`).
fn start_cluster(nodes: usize) -> Result<Target> {
    ensure!(
        (1..=8).contains(&nodes),
        "--cluster takes 1 to 8 relay nodes"
    );
    let cluster = crate::nats::NatsCluster::start();
    let dir = tempfile::tempdir()?;
    let first = dir.path().join("node0");
    std::fs::create_dir(&first)?;
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    std::fs::write(
        first.join("relay.toml"),
        format!(
            "store = \"nats\"\nnats_urls = [{}]\n{LOAD_LIMITS}",
            urls.join(", ")
        ),
    )?;
    std::fs::write(first.join("nats.password"), crate::nats::RELAY_PASSWORD)?;
    std::fs::write(
        first.join("nats-warrant.password"),
        crate::nats::WARRANT_PASSWORD,
    )?;
    let relay = sibling("sotto-relay")?;
    let serve = |data: &std::path::Path| {
        let data = data.to_string_lossy().into_owned();
        spawn_server(
            relay.clone(),
            &["--data", &data, "serve", "--listen", "127.0.0.1:0"],
            None,
        )
    };
    let mut target = serve(&first)?;
    for n in 1..nodes {
        let data = dir.path().join(format!("node{n}"));
        let joined = Command::new(&relay)
            .arg("--data")
            .arg(&data)
            .args(["init", "--join"])
            .arg(&first)
            .output()?;
        ensure!(
            joined.status.success(),
            "node {n} did not join: {}",
            String::from_utf8_lossy(&joined.stderr)
        );
        let mut node = serve(&data)?;
        target.addrs.append(&mut node.addrs);
        target.children.append(&mut node.children);
    }
    target.store = Some(StoreKind::Nats);
    target._dirs.push(dir);
    target._cluster = Some(cluster);
    Ok(target)
}

struct Client {
    name: String,
    identity: Identity,
    relay: Arc<RelayClient>,
}

/// Connects and registers `count` clients named `prefix-N`, many at a time.
async fn register_many(
    endpoint: &quinn::Endpoint,
    target: &Target,
    prefix: &str,
    count: usize,
) -> Result<Vec<Client>> {
    let mut out = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let mut set = JoinSet::new();
        for &i in chunk {
            let endpoint = endpoint.clone();
            let addr = target.addr(i);
            let pin = target.fingerprint;
            let name = format!("{prefix}-{i}");
            set.spawn(async move {
                let relay = RelayClient::connect_on(&endpoint, &addr, Some(pin)).await?;
                let identity = Identity::generate();
                relay.register(&name, &identity).await?;
                anyhow::Ok((
                    i,
                    Client {
                        name,
                        identity,
                        relay: Arc::new(relay),
                    },
                ))
            });
        }
        let mut done = Vec::new();
        while let Some(r) = set.join_next().await {
            done.push(r??);
        }
        done.sort_by_key(|(i, _)| *i);
        out.extend(done.into_iter().map(|(_, c)| c));
    }
    Ok(out)
}

/// Secret sessions for every pair (i → i+1), set up and answered once, so the
/// run sees steady-state ratchets.
async fn secret_sessions(clients: &[Client]) -> Result<(Vec<Session>, Vec<Session>)> {
    let n = clients.len();
    let mut prekeys = Vec::with_capacity(n);
    for c in clients {
        let mut p = LocalPrekeys::default();
        p.rotate_signed(&c.identity, sotto_server::now_ms());
        let otk = p.generate_one_time(1);
        let pq_otk = p.generate_pq_one_time(&c.identity, 1);
        c.relay
            .upload_prekeys(
                p.upload(&c.identity, otk, pq_otk)
                    .context("a signed prekey")?,
            )
            .await?;
        prekeys.push(p);
    }
    let mut sending = Vec::with_capacity(n);
    for (i, c) in clients.iter().enumerate() {
        let peer = &clients[(i + 1) % n];
        let bundle = verify_bundle(&c.relay.fetch_bundle(&peer.name).await?)?;
        let mut session = Session::initiate(&c.identity, &bundle)?;
        let first = session.encrypt(b"hello")?;
        c.relay
            .send_secret(&peer.name, first.encode_to_vec(), rand_id())
            .await?;
        sending.push(session);
    }
    let mut receiving = Vec::with_capacity(n);
    for (j, c) in clients.iter().enumerate() {
        let batch = c.relay.fetch(10).await?;
        let envelope = batch
            .secret
            .first()
            .context("the first secret message arrived")?;
        let payload = sotto_proto::v1::SecretPayload::decode(envelope.ciphertext.as_ref())?;
        let Some(secret_payload::Kind::Prekey(first)) = payload.kind else {
            bail!("a first message carries the PQXDH header");
        };
        let (mut session, _) = Session::respond(&c.identity, &mut prekeys[j], &first)?;
        c.relay.ack(0, vec![envelope.id]).await?;
        let reply = session.encrypt(b"ready")?;
        let from = &clients[(j + n - 1) % n];
        c.relay
            .send_secret(&from.name, reply.encode_to_vec(), rand_id())
            .await?;
        receiving.push(session);
    }
    for (i, c) in clients.iter().enumerate() {
        let batch = c.relay.fetch(10).await?;
        let envelope = batch.secret.first().context("the reply arrived")?;
        let payload = sotto_proto::v1::SecretPayload::decode(envelope.ciphertext.as_ref())?;
        let Some(secret_payload::Kind::Message(m)) = payload.kind else {
            bail!("a reply is a plain ratchet message");
        };
        sending[i].decrypt(&m)?;
        c.relay.ack(0, vec![envelope.id]).await?;
    }
    Ok((sending, receiving))
}

/// The groups of the group modes: clients `k * size .. (k + 1) * size`
/// make group `k`; in the secret one, each has its sender key, and every
/// member every other member's (handed over here: the relay's fan-out is
/// what is measured, not the distribution).
struct Groups {
    size: usize,
    names: Vec<String>,
    ids: Vec<Vec<u8>>,
    own: Vec<Option<OwnSenderKey>>,
    records: Vec<HashMap<String, SenderKeyRecord>>,
    member_names: Vec<String>,
}

/// What one client sends to its group with.
struct GroupSending {
    name: String,
    id: Vec<u8>,
    recipients: Vec<String>,
    own: Option<OwnSenderKey>,
}

impl Groups {
    fn members_of(&self, j: usize) -> impl Iterator<Item = usize> {
        let first = j / self.size * self.size;
        first..first + self.size
    }

    fn sending(&mut self, i: usize) -> GroupSending {
        let k = i / self.size;
        GroupSending {
            name: self.names[k].clone(),
            id: self.ids[k].clone(),
            recipients: self
                .members_of(i)
                .filter(|&m| m != i)
                .map(|m| self.member_names[m].clone())
                .collect(),
            own: self.own[i].take(),
        }
    }
}

async fn groups(opts: &Options, clients: &[Client], run_id: &str) -> Result<Option<Groups>> {
    if !opts.mode.grouped() {
        return Ok(None);
    }
    let size = opts.group_size;
    let count = clients.len() / size;
    let names: Vec<String> = (0..count).map(|k| format!("g{run_id}x{k}")).collect();
    let ids: Vec<Vec<u8>> = (0..count).map(|_| rand_id().to_vec()).collect();
    let mut groups = Groups {
        size,
        names,
        ids,
        own: (0..clients.len()).map(|_| None).collect(),
        records: (0..clients.len()).map(|_| HashMap::new()).collect(),
        member_names: clients.iter().map(|c| c.name.clone()).collect(),
    };
    for k in 0..count {
        let members: Vec<usize> = (k * size..(k + 1) * size).collect();
        if opts.mode == Mode::NormalGroup {
            let others: Vec<String> = members[1..]
                .iter()
                .map(|&m| clients[m].name.clone())
                .collect();
            clients[members[0]]
                .relay
                .create_group(&groups.names[k], &others)
                .await?;
            continue;
        }
        for &i in &members {
            let own = OwnSenderKey::create(&groups.ids[k])?;
            let distribution = own.distribution();
            for &j in members.iter().filter(|&&j| j != i) {
                let mut record = SenderKeyRecord::new(&groups.ids[k])?;
                record.process_distribution(&distribution)?;
                groups.records[j].insert(clients[i].name.clone(), record);
            }
            groups.own[i] = Some(own);
        }
    }
    Ok(Some(groups))
}

fn rand_id() -> [u8; 16] {
    use rand::Rng;
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    id
}

/// A message of `size` bytes whose text starts with its send time.
fn stamped(start: Instant, size: usize) -> String {
    let mut text = format!("{:020}", start.elapsed().as_nanos());
    text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
    text
}

fn latency_us(start: Instant, text: &[u8]) -> Option<u64> {
    let sent: u128 = std::str::from_utf8(text.get(..20)?).ok()?.parse().ok()?;
    Some((start.elapsed().as_nanos().saturating_sub(sent) / 1000) as u64)
}

/// Receives `expected` messages on `pushes`, acknowledging every 64; returns latencies.
///
/// Acknowledgements go out from a task of their own, one after the other, as
/// a client's would: the pushes that arrive meanwhile are taken at once, not
/// after the relay answered the acknowledgement.
async fn receive(
    relay: Arc<RelayClient>,
    mut pushes: Pushes,
    mut session: Option<Session>,
    mut group: HashMap<String, SenderKeyRecord>,
    expected: usize,
    start: Instant,
    progress: indicatif::ProgressBar,
) -> Result<Vec<u64>> {
    let mut latencies = Vec::with_capacity(expected);
    let (mut upto, mut ids) = (0u64, Vec::new());
    let (acks, mut to_ack) = tokio::sync::mpsc::unbounded_channel::<(u64, Vec<u64>)>();
    let acker = tokio::spawn(async move {
        while let Some((upto, ids)) = to_ack.recv().await {
            relay.ack(upto, ids).await?;
        }
        anyhow::Ok(())
    });
    while latencies.len() < expected {
        let push = pushes.next().await?.context("the push stream closed")?;
        let latency = match push.kind {
            Some(push::Kind::Normal(m)) => {
                upto = upto.max(m.seq);
                latency_us(start, m.text.as_bytes())
            }
            Some(push::Kind::Secret(env)) if !env.group.is_empty() => {
                ids.push(env.id);
                let record = group
                    .get_mut(&env.from)
                    .context("a group message from someone without a sender key")?;
                latency_us(start, &record.decrypt(&env.ciphertext)?)
            }
            Some(push::Kind::Secret(env)) => {
                ids.push(env.id);
                let payload = sotto_proto::v1::SecretPayload::decode(env.ciphertext.as_ref())?;
                let Some(secret_payload::Kind::Message(m)) = payload.kind else {
                    bail!("expected a ratchet message");
                };
                let session = session
                    .as_mut()
                    .context("no session for a secret message")?;
                latency_us(start, &session.decrypt(&m)?)
            }
            _ => continue,
        };
        latencies.push(latency.context("a message without its timestamp")?);
        progress.inc(1);
        if latencies.len() % 64 == 0 || latencies.len() == expected {
            acks.send((upto, std::mem::take(&mut ids)))
                .context("the acknowledging task stopped")?;
        }
    }
    drop(acks);
    acker.await??;
    Ok(latencies)
}

/// Runs one load test and reports what it measured.
pub async fn run(opts: &Options, show_progress: bool) -> Result<Report> {
    if opts.clients < 2 {
        bail!("--clients must be at least 2 (each sends to the next)");
    }
    if opts.size < 20 {
        bail!("--size must be at least 20 bytes (the send time rides in the text)");
    }
    if opts.mode.grouped() && (opts.group_size < 2 || !opts.clients.is_multiple_of(opts.group_size))
    {
        bail!("--clients must be a multiple of --group-size (at least 2) in the group modes");
    }
    let target = start_target(opts)?;
    let endpoint = client_endpoint(false)?;
    let run_id = hex::encode(rand_id())[..8].to_owned();
    let clients = register_many(&endpoint, &target, &format!("lg{run_id}"), opts.clients).await?;
    let (mut sending, mut receiving) = match opts.mode {
        Mode::Secret => {
            let (s, r) = secret_sessions(&clients).await?;
            (
                s.into_iter().map(Some).collect::<Vec<_>>(),
                r.into_iter().map(Some).collect::<Vec<_>>(),
            )
        }
        _ => (
            (0..clients.len()).map(|_| None).collect(),
            (0..clients.len()).map(|_| None).collect(),
        ),
    };

    let before_idle = target.pid().and_then(|p| proc_kib(p, "VmRSS:"));
    let idle = if opts.idle_clients > 0 {
        let idle_endpoint = client_endpoint(false)?;
        Some((
            register_many(
                &idle_endpoint,
                &target,
                &format!("idle{run_id}"),
                opts.idle_clients,
            )
            .await?,
            idle_endpoint,
        ))
    } else {
        None
    };
    let after_idle = target.pid().and_then(|p| proc_kib(p, "VmRSS:"));
    let idle_kib_per_conn = match (before_idle, after_idle) {
        (Some(b), Some(a)) if opts.idle_clients > 0 => {
            Some(a.saturating_sub(b) as f64 / opts.idle_clients as f64)
        }
        _ => None,
    };

    let n = clients.len();
    let per_client: Vec<usize> = (0..n)
        .map(|i| opts.messages / n + usize::from(i < opts.messages % n))
        .collect();
    let mut groups = groups(opts, &clients, &run_id).await?;
    // Who each client hears from: the one before it, or the rest of its group.
    let expected: Vec<usize> = (0..n)
        .map(|j| match &groups {
            Some(g) => g
                .members_of(j)
                .filter(|&i| i != j)
                .map(|i| per_client[i])
                .sum(),
            None => per_client[(j + n - 1) % n],
        })
        .collect();
    let progress = if show_progress {
        indicatif::ProgressBar::new(expected.iter().sum::<usize>() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut subscriptions = Vec::with_capacity(n);
    for c in &clients {
        subscriptions.push(c.relay.subscribe().await?);
    }
    let start = Instant::now();
    let mut receivers = JoinSet::new();
    for (j, pushes) in subscriptions.into_iter().enumerate() {
        let records = groups
            .as_mut()
            .map(|g| std::mem::take(&mut g.records[j]))
            .unwrap_or_default();
        receivers.spawn(receive(
            clients[j].relay.clone(),
            pushes,
            receiving[j].take(),
            records,
            expected[j],
            start,
            progress.clone(),
        ));
    }
    let mut senders = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let relay = c.relay.clone();
        let peer = clients[(i + 1) % n].name.clone();
        let count = per_client[i];
        let mut session = sending[i].take();
        let (mode, size) = (opts.mode, opts.size);
        let mut to_group = groups.as_mut().map(|g| g.sending(i));
        let interval = opts.rate.map(|r| Duration::from_secs_f64(n as f64 / r));
        // Paced clients start a fraction of the interval apart, so that the
        // sends of a paced run arrive spread out, not all at the same tick.
        let phase = interval.map(|every| every.mul_f64(i as f64 / n as f64));
        senders.spawn(async move {
            let mut pace = interval.zip(phase).map(|(every, phase)| {
                tokio::time::interval_at(tokio::time::Instant::now() + phase, every)
            });
            for _ in 0..count {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                let text = stamped(start, size);
                match (mode, session.as_mut()) {
                    _ if to_group.is_some() => {
                        let g = to_group.as_mut().context("a group to send to")?;
                        match g.own.as_mut() {
                            Some(own) => {
                                let ciphertext = own.encrypt(text.as_bytes())?;
                                relay
                                    .send_secret_group(&g.id, &g.recipients, ciphertext, rand_id())
                                    .await?;
                            }
                            None => {
                                relay
                                    .send_normal(Recipient::Group(&g.name), &text, rand_id())
                                    .await?;
                            }
                        }
                    }
                    (Mode::Secret, Some(s)) => {
                        let payload = s.encrypt(text.as_bytes())?;
                        relay
                            .send_secret(&peer, payload.encode_to_vec(), rand_id())
                            .await?;
                    }
                    _ => {
                        relay
                            .send_normal(Recipient::User(&peer), &text, rand_id())
                            .await?;
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = senders.join_next().await {
        r??;
    }
    let mut latencies = Vec::with_capacity(opts.messages);
    let deadline = Duration::from_secs(300);
    while let Some(r) = tokio::time::timeout(deadline, receivers.join_next())
        .await
        .context("deliveries stopped arriving (5 minutes without the last one)")?
    {
        latencies.extend(r??);
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let report = Report {
        mode: opts.mode,
        store: target.store,
        relays: target.addrs.len(),
        clients: opts.clients,
        idle_clients: opts.idle_clients,
        group_size: opts.mode.grouped().then_some(opts.group_size),
        messages: latencies.len(),
        size: opts.size,
        seconds,
        msgs_per_sec: latencies.len() as f64 / seconds,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        relay_rss_mib: target
            .pid()
            .and_then(|p| proc_kib(p, "VmHWM:"))
            .map(|k| k as f64 / 1024.0),
        idle_kib_per_conn,
    };
    drop(idle);
    drop(target);
    Ok(report)
}
