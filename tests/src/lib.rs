//! Helpers for sotto's end-to-end tests: a real relay on 127.0.0.1:0 over a
//! temporary data directory (in-process, or the `sotto-relay` binary as a child
//! process), registered users with real keys, and the built binaries.
//!
//! Nothing here sleeps and hopes: a relay is ready when it said so (the
//! in-process start returns after binding; a child process is ready once it
//! printed its address and fingerprint).

pub mod chat;
pub mod echo;
pub mod loadgen;
pub mod nats;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use sotto_client::identity::Identity;
use sotto_client::pinning::Fingerprint;
use sotto_client::relay::RelayClient;
use sotto_server::{RelayConfig, RunningRelay};
use tempfile::TempDir;

/// A relay running inside the test process.
pub struct TestRelay {
    pub dir: TempDir,
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    running: Option<RunningRelay>,
}

impl TestRelay {
    pub async fn start() -> Self {
        Self::start_with(RelayConfig::default()).await
    }

    pub async fn start_with(config: RelayConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (running, fingerprint) = Self::launch(dir.path(), config).await;
        TestRelay {
            dir,
            addr: running.addr,
            fingerprint,
            running: Some(running),
        }
    }

    /// Starts a relay on a port below the kernel's range of ephemeral ports
    /// (32768 and up by default), for tests that restart it on the same
    /// port: while it is stopped, no client socket bound to port 0 can be
    /// given its port. A port some other process holds is passed over.
    pub async fn start_on_own_port() -> Self {
        use rand::RngExt;
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..100 {
            let port = rand::rng().random_range(20_000..32_000);
            let config = RelayConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], port)),
                ..RelayConfig::default()
            };
            match sotto_server::start(&dir.path().join("relay"), config).await {
                Ok(running) => {
                    let fingerprint = Fingerprint::parse(&running.fingerprint)
                        .expect("relay prints a fingerprint");
                    return TestRelay {
                        dir,
                        addr: running.addr,
                        fingerprint,
                        running: Some(running),
                    };
                }
                Err(e) if format!("{e:#}").contains("cannot listen") => continue,
                Err(e) => panic!("relay starts: {e:#}"),
            }
        }
        panic!("no free port between 20000 and 32000 in 100 tries");
    }

    async fn launch(dir: &Path, mut config: RelayConfig) -> (RunningRelay, Fingerprint) {
        config.listen = "127.0.0.1:0".parse().expect("loopback address");
        let running = sotto_server::start(&dir.join("relay"), config)
            .await
            .expect("relay starts");
        let fingerprint =
            Fingerprint::parse(&running.fingerprint).expect("relay prints a fingerprint");
        (running, fingerprint)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("relay")
    }

    pub fn running(&self) -> &RunningRelay {
        self.running.as_ref().expect("relay is running")
    }

    /// Stops the relay cleanly (flushing the store).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("relay shuts down cleanly");
        }
    }

    /// Stops and starts again over the same data directory and the same port,
    /// as an operator restarting the relay would (start it with
    /// [`TestRelay::start_on_own_port`], so no other socket takes the port).
    pub async fn restart_on_same_port(&mut self) {
        self.stop().await;
        let dir = self.data_dir();
        let config = RelayConfig {
            listen: self.addr,
            ..RelayConfig::default()
        };
        // The old endpoint may still be draining its connections (longer on a
        // loaded machine): wait for the port to be free, up to a bound.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let running = loop {
            match sotto_server::start(&dir, config.clone()).await {
                Ok(running) => break running,
                Err(e)
                    if format!("{e:#}").contains("cannot listen")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("relay restarts on its port: {e:#}"),
            }
        };
        assert_eq!(running.addr, self.addr);
        self.running = Some(running);
    }

    /// What a hostile operator does: stops the relay, writes `batch` (made
    /// by `edit` from the opened data directory) straight into its store,
    /// and starts it again (on a new port).
    pub async fn tamper(
        &mut self,
        edit: impl FnOnce(&sotto_server::datadir::OpenedDir) -> sotto_server::store::Batch,
    ) {
        self.stop().await;
        {
            let opened = sotto_server::datadir::open(&self.data_dir(), &Default::default())
                .expect("the relay's data directory opens");
            let batch = edit(&opened);
            opened
                .store
                .apply(batch)
                .expect("the tampered batch is written");
            opened.store.flush().expect("and flushed");
        }
        self.restart().await;
    }

    /// Stops and starts again over the same data directory (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let (running, fingerprint) = Self::launch(self.dir.path(), RelayConfig::default()).await;
        assert_eq!(
            fingerprint, self.fingerprint,
            "the certificate survives a restart"
        );
        self.addr = running.addr;
        self.running = Some(running);
    }

    /// Registers the authority of `keys` (its name and public key), as the
    /// operator's `sotto-relay authority add` does; the running relay reads
    /// the list at its next warrant.
    pub fn register_authority(&self, keys: &sotto_investigator::InvestigatorKeys) {
        use sotto_server::warrant::authorities;
        let path = self.data_dir().join("authorities.toml");
        let mut file = authorities::load(&path).expect("the authority list reads");
        file.add(&keys.name, &keys.public_key_hex())
            .expect("the authority is added");
        authorities::save(&path, &file).expect("the authority list is saved");
    }

    /// Asks the running relay as its operator does (`sotto-relay warrant …`),
    /// through its admin socket (from a blocking thread: the relay answers
    /// on this runtime meanwhile).
    pub async fn admin(
        &self,
        request: sotto_server::admin::AdminRequest,
    ) -> anyhow::Result<sotto_server::admin::AdminAnswer> {
        let dir = self.data_dir();
        tokio::task::spawn_blocking(move || sotto_server::admin::ask(&dir, &request))
            .await
            .expect("the admin request runs")
    }

    /// Approves the held warrant `id` of `authority` as operator `by`; panics
    /// if the relay refuses.
    pub async fn approve(
        &self,
        authority: &str,
        id: &str,
        by: &str,
    ) -> sotto_server::admin::AdminAnswer {
        let answer = self
            .admin(sotto_server::admin::AdminRequest::Approve {
                id: id.to_owned(),
                authority: Some(authority.to_owned()),
                by: by.to_owned(),
            })
            .await
            .expect("the relay answers its operator");
        if let sotto_server::admin::AdminAnswer::Refused(why) = &answer {
            panic!("the approval of {id} was refused: {why}");
        }
        answer
    }

    /// A pinned connection, not logged in.
    pub async fn connect(&self) -> RelayClient {
        RelayClient::connect(&self.addr.to_string(), Some(self.fingerprint))
            .await
            .expect("connect to the test relay")
    }

    /// An investigator's pinned connection (`sotto-warrant`'s).
    pub async fn investigator(&self) -> sotto_investigator::RelayConnection {
        sotto_investigator::RelayConnection::connect(&self.addr.to_string(), self.fingerprint)
            .await
            .expect("an investigator connects to the test relay")
    }

    /// Registers `name` with fresh keys and returns the logged-in user.
    pub async fn register(&self, name: &str) -> TestUser {
        let identity = Identity::generate();
        let client = self.connect().await;
        client
            .register(name, &identity)
            .await
            .expect("registration succeeds");
        TestUser {
            name: name.to_owned(),
            identity,
            client,
        }
    }

    /// A logged-in connection for `name` with `identity` (a profile's, say).
    pub async fn login_as(&self, name: &str, identity: &Identity) -> RelayClient {
        let client = self.connect().await;
        client.login(name, identity).await.expect("login succeeds");
        client
    }

    /// A second, logged-in connection for an existing user.
    pub async fn login(&self, user: &TestUser) -> RelayClient {
        let client = self.connect().await;
        client
            .login(&user.name, &user.identity)
            .await
            .expect("login succeeds");
        client
    }
}

pub struct TestUser {
    pub name: String,
    pub identity: Identity,
    pub client: RelayClient,
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir").flatten() {
                stack.push(entry.path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path);
        }
    }
    hits
}

/// The path of a workspace binary, built once per test process if needed.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps")
        .to_owned();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "sotto-server",
            "-p",
            "sotto-client",
            "-p",
            "sotto-investigator",
            "--bins",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the binaries");
        assert!(status.success(), "building the binaries failed");
    });
    profile_dir.join(name)
}

/// `sotto-relay` running as a child process over a data directory.
pub struct RelayProcess {
    pub child: Child,
    pub addr: String,
    pub fingerprint: String,
    pub disclosure_key: String,
    /// The key that signs its transparency log's heads (`audit key:`).
    pub audit_key: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl RelayProcess {
    /// Starts `sotto-relay --data DIR serve --listen 127.0.0.1:0` and waits
    /// until it has printed its address, fingerprint and disclosure key.
    pub fn start(data: &Path, envs: &[(&str, &str)]) -> Self {
        Self::start_on(data, "127.0.0.1:0", envs)
    }

    /// Like [`RelayProcess::start`], listening on `listen`.
    pub fn start_on(data: &Path, listen: &str, envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin("sotto-relay"))
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", listen])
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sotto-relay");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut addr, mut fingerprint, mut disclosure_key, mut audit_key) =
            (None, None, None, None);
        while addr.is_none()
            || fingerprint.is_none()
            || disclosure_key.is_none()
            || audit_key.is_none()
        {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("sotto-relay prints its address, fingerprint, disclosure and audit keys");
            if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(a.trim().to_owned());
            } else if let Some(f) = line.strip_prefix("fingerprint ") {
                fingerprint = Some(f.trim().to_owned());
            } else if let Some(k) = line.strip_prefix("disclosure key: ") {
                disclosure_key = Some(k.trim().to_owned());
            } else if let Some(k) = line.strip_prefix("audit key: ") {
                audit_key = Some(k.trim().to_owned());
            }
        }
        RelayProcess {
            child,
            addr: addr.unwrap_or_default(),
            fingerprint: fingerprint.unwrap_or_default(),
            disclosure_key: disclosure_key.unwrap_or_default(),
            audit_key: audit_key.unwrap_or_default(),
            stderr: Some(stderr),
        }
    }

    /// Sends SIGKILL: no flush, no goodbye.
    pub fn kill_9(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit; returns what it logged.
    pub fn terminate(&mut self) -> String {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait for sotto-relay");
        assert!(
            status.success(),
            "sotto-relay exits 0 on SIGTERM, got {status}"
        );
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sotto --profile PROFILE ARGS...` with a passphrase and returns its output.
pub fn sotto(profile: &Path, args: &[&str]) -> Output {
    Command::new(bin("sotto"))
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("SOTTO_PASSPHRASE", PASSPHRASE)
        .stdin(Stdio::null())
        .output()
        .expect("run sotto")
}

/// Like [`sotto`], but asserts success and returns stdout.
pub fn sotto_ok(profile: &Path, args: &[&str]) -> String {
    let out = sotto(profile, args);
    assert!(
        out.status.success(),
        "sotto {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

impl RelayProcess {
    /// `sotto init` of `user` in `profile`, pinned to this relay.
    pub fn init_user(&self, profile: &Path, user: &str) {
        sotto_ok(
            profile,
            &[
                "init",
                "--relay",
                &self.addr,
                "--fingerprint",
                &self.fingerprint,
                "--user",
                user,
            ],
        );
    }
}

/// Points a profile at a relay that came back on another address (same certificate pin).
pub fn repoint(profile: &Path, addr: &str) {
    let path = profile.join("profile.toml");
    let config: String = std::fs::read_to_string(&path)
        .expect("read profile.toml")
        .lines()
        .map(|l| {
            if l.starts_with("relay = ") {
                format!("relay = \"{addr}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(path, config).expect("write profile.toml");
}

/// The passphrase test profiles are made with.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Makes a profile for `user` in `dir` against an in-process relay (keys,
/// registration, published prekeys), as `sotto init` does.
pub async fn init_profile(relay: &TestRelay, dir: &Path, user: &str) {
    let args = sotto_client::commands::init::InitArgs {
        relay: &relay.addr.to_string(),
        fingerprint: Some(&relay.fingerprint.to_string()),
        user,
    };
    sotto_client::commands::init::run(dir, args, PASSPHRASE, &mut Vec::new())
        .await
        .expect("init succeeds");
}

/// `sotto sync --json` of the profile in `dir`, in process: one JSON value a line.
pub async fn sync_json(dir: &Path) -> Vec<serde_json::Value> {
    let mut profile =
        sotto_client::profile::Profile::open(dir, PASSPHRASE).expect("the profile opens");
    let mut out = Vec::new();
    sotto_client::commands::sync::run(&mut profile, true, &mut out)
        .await
        .expect("sync succeeds");
    String::from_utf8(out)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON value a line"))
        .collect()
}

/// Runs heavy tests of one test binary one at a time (each holds the guard):
/// a relay under load, or a NATS cluster with relay nodes, beside another
/// on 2 cores starves both of keep-alives, and connections time out.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// See [`HEAVY`]: for an async test.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// See [`HEAVY`]: for a test outside any runtime.
pub fn one_at_a_time_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.blocking_lock()
}
