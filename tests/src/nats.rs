//! A real 3-node NATS JetStream cluster on 127.0.0.1, for the cluster tests
//! (#18): each node a `nats-server` process with its own ports and store,
//! the sotto users of [`sotto_server::cluster::nats_authorization`], started
//! and waited for until the cluster has a JetStream leader (asked of each
//! node's monitoring endpoint), and stopped by process id when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The passwords the harness gives sotto's two NATS users.
pub const RELAY_PASSWORD: &str = "relay-test-password";
pub const WARRANT_PASSWORD: &str = "warrant-test-password";

/// How long a cluster may take to elect its JetStream leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);

pub struct NatsNode {
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    child: Option<Child>,
}

impl NatsNode {
    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// Stops the node at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

/// A port free on 127.0.0.1 now (bound, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// The `nats-server` to run: `$NATS_SERVER`, or the one on the path.
fn nats_server() -> PathBuf {
    std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl NatsCluster {
    /// Three nodes, routed to each other, JetStream on, waited for until
    /// every node knows the JetStream leader. A node that could not start
    /// (another process took a port between the harness finding it free and
    /// the node binding it) means a fresh start on other ports, up to three.
    pub fn start() -> NatsCluster {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!("the NATS cluster did not start: {failures:#?}");
    }

    fn try_start() -> Result<NatsCluster, String> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster, _)| format!("\"nats-route://127.0.0.1:{cluster}\""))
            .collect();
        let auth = sotto_server::cluster::nats_authorization(RELAY_PASSWORD, WARRANT_PASSWORD);
        let mut nodes = Vec::new();
        for (n, (client, cluster, monitor)) in ports.into_iter().enumerate() {
            let name = format!("n{}", n + 1);
            let store = dir.path().join(&name);
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\n\
                     http: \"127.0.0.1:{monitor}\"\n\
                     jetstream {{ store_dir: {store:?}, max_memory_store: 64MB, \
                     max_file_store: 64GB }}\n\
                     cluster {{ name: sotto, listen: \"127.0.0.1:{cluster}\", \
                     routes: [{}] }}\n{auth}",
                    routes.join(", ")
                ),
            )
            .expect("the node's configuration is written");
            let child = spawn(&config, &dir.path().join(format!("{name}.log")));
            nodes.push(NatsNode {
                name,
                client_port: client,
                monitor_port: monitor,
                child: Some(child),
            });
        }
        let mut cluster = NatsCluster { nodes, _dir: dir };
        match cluster.settle() {
            Ok(()) => Ok(cluster),
            Err(why) => {
                let logs: Vec<String> = cluster
                    .nodes
                    .iter()
                    .map(|n| {
                        let log = cluster._dir.path().join(format!("{}.log", n.name));
                        let text = std::fs::read_to_string(log).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(5).collect();
                        format!("{}: {}", n.name, tail.join(" | "))
                    })
                    .collect();
                for node in &mut cluster.nodes {
                    node.kill();
                }
                Err(format!("{why}; logs: {logs:?}"))
            }
        }
    }

    /// Waits until every running node names the same JetStream meta leader
    /// of three peers; panics after [`LEADER_WAIT`].
    pub fn wait_for_leader(&mut self) {
        if let Err(why) = self.settle() {
            panic!("{why}");
        }
    }

    fn settle(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            for node in &mut self.nodes {
                if let Some(child) = &mut node.child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(format!("node {} exited ({status})", node.name));
                }
            }
            let leaders: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|node| {
                    http_get(node.monitor_port, "/jsz")
                        .and_then(|jsz| serde_json::from_str::<serde_json::Value>(&jsz).ok())
                        .filter(|json| json["meta_cluster"]["cluster_size"].as_u64() == Some(3))
                        .and_then(|json| json["meta_cluster"]["leader"].as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect();
            if !leaders[0].is_empty() && leaders.iter().all(|l| *l == leaders[0]) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the NATS cluster agreed on no JetStream leader in {LEADER_WAIT:?} ({leaders:?})"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What node `n`'s monitoring endpoint answers at `path` (`/connz?subs=1`).
    pub fn monitor(&self, n: usize, path: &str) -> Option<serde_json::Value> {
        http_get(self.nodes[n].monitor_port, path).and_then(|body| serde_json::from_str(&body).ok())
    }

    /// Every node's client URL, for a client that may use any of them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("a log file");
    Command::new(nats_server())
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "nats-server did not start ({e}): install it (Debian: apt-get install \
                 nats-server) or set NATS_SERVER"
            )
        })
}

/// The body of `GET path` on 127.0.0.1:`port`, if it answered 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?;
    (status == "200").then(|| body.to_owned())
}
