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
    /// their JetStream has a leader.
    pub fn start() -> NatsCluster {
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
                     max_file_store: 1GB }}\n\
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
        let cluster = NatsCluster { nodes, _dir: dir };
        cluster.wait_for_leader();
        cluster
    }

    /// Waits until a node's monitoring endpoint names a JetStream meta
    /// leader and three peers; panics, with the nodes' logs, after
    /// [`LEADER_WAIT`].
    pub fn wait_for_leader(&self) {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                if let Some(jsz) = http_get(node.monitor_port, "/jsz")
                    && let Ok(json) = serde_json::from_str::<serde_json::Value>(&jsz)
                {
                    let meta = &json["meta_cluster"];
                    let leader = meta["leader"].as_str().unwrap_or("");
                    let peers = meta["cluster_size"].as_u64().unwrap_or(0);
                    if !leader.is_empty() && peers == 3 {
                        return;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("the NATS cluster elected no JetStream leader in {LEADER_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
