//! `sotto-relay`: run and administer a sotto relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sotto_server::warrant::audit::{self, Verified};
use sotto_server::warrant::authorities;
use sotto_server::{RelayConfig, datadir};

#[derive(Parser)]
#[command(
    name = "sotto-relay",
    version,
    about = "The sotto relay: carries normal and secret chats over QUIC, keeps normal history sealed at rest.",
    long_about = "The sotto relay: carries normal and secret chats over QUIC, keeps normal history \
                  sealed at rest, and serves lawful warrants through its audited warrant module.\n\n\
                  With no command it serves (like `serve`), laying out the data directory on first run."
)]
struct Cli {
    /// The relay's data directory (configuration, certificate, store, audit log).
    #[arg(
        long,
        global = true,
        default_value = "./sotto-data",
        env = "SOTTO_DATA"
    )]
    data: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve clients and investigators (the default). Prints the bound address and fingerprint.
    Serve {
        /// Address to listen on; overrides `listen` in relay.toml (default 127.0.0.1:4433).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Lay out the data directory without serving, and print the fingerprint.
    Init {
        /// Join a cluster: copy from the data directory of one of its nodes (it may be serving)
        /// what every node shares: relay.toml, the certificate, the master key and NATS
        /// passwords kept there, and the relay's keys (cluster.keys). Files are written 0600.
        #[arg(long, value_name = "DIR")]
        join: Option<PathBuf>,
    },
    /// Manage the warrant authorities whose signatures this relay accepts.
    Authority {
        #[command(subcommand)]
        command: AuthorityCommand,
    },
    /// Work with the transparency log of warrant and unmask requests.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Review the warrants the running relay holds (`[warrant] review = true`): list, show,
    /// approve, reject. Works against the running relay, through its admin socket.
    Warrant {
        #[command(subcommand)]
        command: WarrantCommand,
    },
    /// Copy the store into the other embedded kind (fjall or sled) and put the copy in place.
    ///
    /// Run it with the relay stopped. Values are copied still sealed, under the same keys:
    /// no key is needed. The copy is checked (entries per tree, and a sample of values byte
    /// for byte) before it is used; the source is never deleted: it is kept beside the new
    /// store as db.<kind>-<time>. relay.toml's `store` is set to the new kind.
    Migrate {
        /// The kind of store to copy into.
        #[arg(long, value_enum)]
        to: sotto_server::config::StoreKind,
    },
    /// Print the transparency report computed from the audit log, per half-year.
    Transparency {
        /// One JSON object: {"periods": [...]}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuthorityCommand {
    /// Register an authority (takes effect at the next warrant, also while serving).
    Add {
        #[arg(long)]
        name: String,
        /// The authority's Ed25519 public key, as `sotto-warrant keygen` printed it.
        #[arg(long)]
        public_key: String,
    },
    /// List the registered authorities.
    List,
    /// Remove an authority by name (`--name NAME`, as `add` takes it, or just NAME).
    Remove {
        #[arg(long = "name", value_name = "NAME", conflicts_with = "positional")]
        name: Option<String>,
        #[arg(value_name = "NAME", required_unless_present = "name")]
        positional: Option<String>,
    },
}

#[derive(Subcommand)]
enum WarrantCommand {
    /// The warrants the relay holds, oldest first: id, authority, case, stage, approvals.
    List {
        /// Only those waiting for a decision.
        #[arg(long)]
        pending: bool,
    },
    /// One warrant: who asks, on what basis, for whom, which window, and how much it would
    /// disclose (counts only: never a message).
    Show {
        id: String,
        /// The authority, when several used the same warrant id.
        #[arg(long)]
        authority: Option<String>,
    },
    /// Approve a held warrant. With `approvals = 2`, two different operators must; the last
    /// approval discloses it, and the investigator collects it with `sotto-warrant collect`.
    Approve {
        id: String,
        /// Who approves (an operator's name, recorded in the transparency log).
        #[arg(long, value_name = "NAME")]
        by: String,
        #[arg(long)]
        authority: Option<String>,
    },
    /// Reject a held warrant, for a reason (recorded in the log, and told the investigator). Final.
    Reject {
        id: String,
        #[arg(long, value_name = "NAME")]
        by: String,
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[arg(long)]
        authority: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole log: every entry in order and matching every tree head the relay signed.
    ///
    /// Exits 0 only if it is intact, else names the first bad entry. With --against, also
    /// checks that the log still holds, unchanged, every entry of a tree head published
    /// earlier (the JSON line `audit head` printed): the check that catches an operator who
    /// edited, removed or reordered entries and signed everything again.
    Verify {
        /// A signed tree head published earlier, as `sotto-relay audit head` printed it.
        #[arg(long, value_name = "HEAD_FILE")]
        against: Option<PathBuf>,
    },
    /// Print the latest signed tree head as one JSON line (size, root, time, signature, key):
    /// what to publish, or hand to the privacy committee. Works while the relay runs.
    Head,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("sotto-relay: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = RelayConfig::load(&datadir::config_path(&cli.data))?;
    match cli.command.unwrap_or(Command::Serve { listen: None }) {
        Command::Serve { listen } => serve(cli.data, config, listen),
        Command::Init { join: None } => init(cli.data, config),
        Command::Init { join: Some(from) } => {
            for note in datadir::join(&cli.data, &from)? {
                eprintln!("note: {note}");
            }
            println!("joined the cluster of {}", from.display());
            let config = RelayConfig::load(&datadir::config_path(&cli.data))?;
            init(cli.data, config)
        }
        Command::Authority { command } => authority(&cli.data, command),
        Command::Audit {
            command: AuditCommand::Verify { against },
        } => verify(&cli.data, against.as_deref()),
        Command::Audit {
            command: AuditCommand::Head,
        } => head(&cli.data),
        Command::Transparency { json } => transparency(&cli.data, json),
        Command::Warrant { command } => warrant(&cli.data, command),
        Command::Migrate { to } => migrate(&cli.data, to),
    }
}

fn migrate(data: &std::path::Path, to: sotto_server::config::StoreKind) -> Result<()> {
    use sotto_server::migrate::{self, Plan};
    let total = match migrate::plan(data, to)? {
        Plan::AlreadyThere => {
            println!(
                "{} already holds a {to} store: nothing to do",
                data.join("db").display()
            );
            return Ok(());
        }
        Plan::Migrate { from, total } => {
            eprintln!("copying the {from} store ({total} entries) into a new {to} store");
            total
        }
    };
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let done = migrate::migrate(data, to, |copied| bar.set_position(copied));
    bar.finish_and_clear();
    let done = done?;
    let config = datadir::config_path(data);
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    std::fs::write(&config, RelayConfig::with_store(&text, to)).with_context(|| {
        format!(
            "the store is migrated, but {} could not be updated",
            config.display()
        )
    })?;
    for (tree, n) in &done.entries {
        println!("{:<16} {n}", tree.name());
    }
    println!(
        "migrated the {} store to {}: counts match, {} values compared",
        done.from, done.to, done.sampled
    );
    println!(
        "the {} store is kept at {}: remove it once the relay has run on the new one",
        done.from,
        done.kept.display()
    );
    Ok(())
}

fn init(data: PathBuf, config: RelayConfig) -> Result<()> {
    let opened = datadir::open(&data, &config)?;
    for warning in &opened.warnings {
        eprintln!("warning: {warning}");
    }
    println!("initialized {}", data.display());
    println!("fingerprint {}", opened.tls.fingerprint());
    println!(
        "disclosure key: {}",
        hex::encode(opened.disclosure_key.verifying_key().as_bytes())
    );
    if config.store == sotto_server::config::StoreKind::Nats {
        // Only a cluster's warrant desk keeps a transparency log, and signs
        // its first head when it starts serving.
        println!(
            "audit key: {}",
            hex::encode(opened.audit_key.verifying_key().as_bytes())
        );
        return Ok(());
    }
    // Migrates a log from before the transparency log, and signs its first head.
    if let Err(why) = sotto_server::relay::open_audit_log(
        &data,
        &opened.store,
        &opened.sealer,
        &opened.audit_key,
        &sotto_server::Clock::system(),
        None,
    )? {
        bail!("{why}");
    }
    println!(
        "audit key: {}",
        hex::encode(opened.audit_key.verifying_key().as_bytes())
    );
    Ok(())
}

fn warrant(data: &std::path::Path, command: WarrantCommand) -> Result<()> {
    use sotto_proto::printable::printable;
    use sotto_server::admin::{self, AdminAnswer, AdminRequest};
    let request = match command {
        WarrantCommand::List { pending } => AdminRequest::List { pending },
        WarrantCommand::Show { id, authority } => AdminRequest::Show { id, authority },
        WarrantCommand::Approve { id, by, authority } => {
            AdminRequest::Approve { id, authority, by }
        }
        WarrantCommand::Reject {
            id,
            by,
            reason,
            authority,
        } => AdminRequest::Reject {
            id,
            authority,
            by,
            reason,
        },
    };
    let id = match &request {
        AdminRequest::Approve { id, .. } | AdminRequest::Reject { id, .. } => {
            printable(id).into_owned()
        }
        _ => String::new(),
    };
    match (&request, admin::ask(data, &request)?) {
        (_, AdminAnswer::Refused(why)) => bail!("{}", printable(&why)),
        (AdminRequest::Show { .. }, AdminAnswer::Held(views)) => {
            for view in &views {
                print!("{}", show_held(view));
            }
        }
        (_, AdminAnswer::Held(views)) => {
            if views.is_empty() {
                println!("no warrant held");
            }
            for v in &views {
                println!(
                    "{}\t{}\tcase {}\t{}\t{} of {} approvals\theld {}",
                    printable(&v.id),
                    printable(&v.authority),
                    printable(&v.case),
                    v.stage,
                    v.approved_by.len(),
                    v.approvals_needed,
                    rfc3339(v.held_at.div_euclid(1000))
                );
            }
        }
        (_, AdminAnswer::Approved { approvals, needed }) => println!(
            "{id}: approved ({approvals} of {needed}); another operator must approve it too"
        ),
        (_, AdminAnswer::Disclosed { records }) => println!(
            "{id}: approved and disclosed ({records} records); the investigator collects it with `sotto-warrant collect`"
        ),
        (_, AdminAnswer::Rejected) => println!("{id}: rejected (final)"),
    }
    Ok(())
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} (seconds since the epoch)"))
}

/// One held warrant for the operator: every field escaped (the investigator wrote them).
fn show_held(v: &sotto_server::warrant::HeldView) -> String {
    use sotto_proto::printable::{printable, printable_list};
    let mut out = String::new();
    let mut line = |name: &str, value: &str| out.push_str(&format!("{name:<16}{value}\n"));
    line("warrant", &printable(&v.id));
    line("authority", &printable(&v.authority));
    line("case", &printable(&v.case));
    line("legal basis", &printable(&v.legal_basis));
    line("approver", &printable(&v.approver));
    line("targets", &printable_list(&v.targets));
    line(
        "window",
        &format!("{} to {}", rfc3339(v.window_from), rfc3339(v.window_until)),
    );
    line("expires", &rfc3339(v.expires));
    line("held", &rfc3339(v.held_at.div_euclid(1000)));
    line("stage", &v.stage);
    line(
        "approvals",
        &format!(
            "{} of {}{}",
            v.approved_by.len(),
            v.approvals_needed,
            if v.approved_by.is_empty() {
                String::new()
            } else {
                format!(" (by {})", printable_list(&v.approved_by))
            }
        ),
    );
    if v.stage == "rejected" {
        line(
            "rejected",
            &format!("by {}: {}", printable(&v.rejected_by), printable(&v.reason)),
        );
    }
    let discloses = if v.counts_unknown.is_empty() {
        format!(
            "{} records in {} conversations, {} pseudonyms (secret chats: none, ever)",
            v.records, v.conversations, v.pseudonyms
        )
    } else {
        format!("cannot be told: {}", printable(&v.counts_unknown))
    };
    line(
        if v.stage == "disclosed" {
            "disclosed"
        } else {
            "would disclose"
        },
        &discloses,
    );
    out
}

fn authority(data: &std::path::Path, command: AuthorityCommand) -> Result<()> {
    if !data.exists() {
        bail!(
            "no relay data directory at {}: run `sotto-relay init` first",
            data.display()
        );
    }
    let path = datadir::authorities_path(data);
    let mut file = authorities::load(&path)?;
    match command {
        AuthorityCommand::Add { name, public_key } => {
            file.add(&name, &public_key)?;
            authorities::save(&path, &file)?;
            println!("registered authority {name:?}");
        }
        AuthorityCommand::List => {
            if file.authorities.is_empty() {
                println!("no authorities registered");
            }
            // The file may have been edited by hand: nothing in it reaches
            // the terminal unescaped.
            for a in &file.authorities {
                println!("{}\t{}", a.name.escape_debug(), a.public_key.escape_debug());
            }
            if let Err(e) = file.registry() {
                eprintln!(
                    "warning: {}: warrants are refused until it is mended",
                    e.to_string().escape_debug()
                );
            }
        }
        AuthorityCommand::Remove { name, positional } => {
            let name = name.or(positional).unwrap_or_default();
            file.remove(&name)?;
            authorities::save(&path, &file)?;
            println!("removed authority {name:?}");
        }
    }
    Ok(())
}

fn verify(data: &std::path::Path, against: Option<&std::path::Path>) -> Result<()> {
    let path = datadir::audit_path(data);
    let verified = match against {
        None => audit::verify(&path)?,
        Some(file) => audit::verify_against(&path, &read_head(file)?)?,
    };
    match verified {
        Verified::Intact {
            entries,
            root,
            heads,
        } => {
            println!(
                "audit log intact: {entries} entries, root {}, {heads} signed heads checked",
                hex::encode(root)
            );
            if heads == 0 {
                println!(
                    "(a hash-chained log from before the transparency log: the relay migrates it when it next starts)"
                );
            }
            if let Some(file) = against {
                println!("consistent with the head in {}", file.display());
            }
            Ok(())
        }
        Verified::Broken { line, why } => bail!("audit log broken at entry {line}: {why}"),
    }
}

/// A published head from a file, its signature checked.
fn read_head(file: &std::path::Path) -> Result<sotto_warrant::transparency::SignedTreeHead> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    sotto_warrant::transparency::SignedTreeHead::parse(&text)
        .with_context(|| format!("{} is not a valid signed tree head", file.display()))
}

fn head(data: &std::path::Path) -> Result<()> {
    let path = datadir::audit_path(data);
    if let Verified::Broken { line, why } = audit::verify(&path)? {
        bail!(
            "the audit log is broken at entry {line} ({why}); no head is published for a log that was altered"
        );
    }
    let head = audit::latest_head(&path)?.with_context(|| {
        format!(
            "no signed tree head in {}: run `sotto-relay init` or start the relay once to sign one",
            audit::heads_path(&path).display()
        )
    })?;
    println!("{}", head.to_json());
    Ok(())
}

fn transparency(data: &std::path::Path, json: bool) -> Result<()> {
    let path = datadir::audit_path(data);
    if let Verified::Broken { line, why } = audit::verify(&path)? {
        bail!(
            "the audit log is broken at entry {line} ({why}); no report from a log that was altered"
        );
    }
    // Computed from exactly the entries the latest signed head covers, so
    // anyone holding that head can hold the report to it.
    let head = audit::latest_head(&path)?;
    let mut entries = audit::entries(&path)?;
    if let Some(head) = &head {
        entries.truncate(usize::try_from(head.size()).unwrap_or(usize::MAX));
    }
    let periods = audit::transparency(&entries);
    let outstanding = audit::outstanding(&entries);
    let head_json = head
        .as_ref()
        .map(|h| serde_json::from_str::<serde_json::Value>(&h.to_json()).unwrap_or_default());
    if json {
        println!(
            "{}",
            serde_json::json!({ "head": head_json, "periods": periods, "outstanding": outstanding })
        );
        return Ok(());
    }
    match &head {
        Some(h) => println!(
            "computed from the {} entries of the signed tree head {}",
            h.size(),
            h.to_json()
        ),
        None => println!("(no signed tree head yet: computed from the whole log)"),
    }
    println!(
        "waiting for the operators' review now: {}; disclosed warrants whose people are not told yet: {}",
        outstanding.pending_review, outstanding.awaiting_notice
    );
    if periods.is_empty() {
        println!("no warrant or unmask requests so far; secret-mode items disclosed: 0");
    }
    for p in &periods {
        println!("{}", p.period);
        println!("  warrants received          {}", p.warrants_received);
        println!("  warrants granted           {}", p.warrants_granted);
        println!("  warrants refused           {}", p.warrants_refused);
        println!(
            "  held for review            {}",
            p.warrants_held_for_review
        );
        println!(
            "  approved in review         {}",
            p.warrants_approved_in_review
        );
        println!(
            "  rejected in review         {}",
            p.warrants_rejected_in_review
        );
        if let Some(secs) = p.median_secs_to_decision {
            println!(
                "  median time to decision    {:.1} hours",
                secs as f64 / 3600.0
            );
        }
        println!("  deliveries made            {}", p.deliveries);
        for (reason, n) in &p.refused_by_reason {
            println!("    {reason:<24} {n}");
        }
        println!("  accounts targeted          {}", p.accounts_targeted);
        println!("  records disclosed          {}", p.records_disclosed);
        println!("  pseudonyms issued          {}", p.pseudonyms_issued);
        println!(
            "  unmask requests received   {}",
            p.unmask_requests_received
        );
        println!("  unmask requests granted    {}", p.unmask_requests_granted);
        println!("  pseudonyms unmasked        {}", p.pseudonyms_unmasked);
        println!(
            "  people notified            {} (of {} warrants)",
            p.people_notified, p.warrants_notified
        );
        println!(
            "  notice extensions granted  {}",
            p.notice_extensions_granted
        );
        println!(
            "  unverifiable requests      {} (no registered authority's signature, or a replay; not counted as warrants)",
            p.unverifiable_requests
        );
        println!(
            "  secret-mode items disclosed {} (always 0: the relay cannot read them and the warrant module cannot reach them)",
            p.secret_items_disclosed
        );
    }
    Ok(())
}

/// Logs to stderr: `SOTTO_LOG` filters (default `info`); `SOTTO_LOG_FORMAT=json`
/// writes one JSON object a line for log shippers; colours only at a terminal.
fn init_logging() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOTTO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("SOTTO_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().init(),
        Ok("text") | Err(_) => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok(other) => {
            bail!("SOTTO_LOG_FORMAT={other:?}: it may be \"text\" (the default) or \"json\"")
        }
    }
    Ok(())
}

/// True when `e` says another process holds the store.
fn store_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sotto_server::store::StoreError>(),
            Some(sotto_server::store::StoreError::InUse(_))
        )
    })
}

/// How long `serve` waits for a relay that is stopping to let go of the data directory.
const WAIT_FOR_PREVIOUS: std::time::Duration = std::time::Duration::from_secs(15);

fn serve(data: PathBuf, mut config: RelayConfig, listen: Option<SocketAddr>) -> Result<()> {
    init_logging()?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = ShutdownSignal::watch()?;
        // A restart may find the previous relay still stopping: say so at
        // once, and wait for it a bounded while.
        let deadline = std::time::Instant::now() + WAIT_FOR_PREVIOUS;
        let mut told = false;
        let relay = loop {
            match sotto_server::start(&data, config.clone()).await {
                Err(e) if store_in_use(&e) && std::time::Instant::now() < deadline => {
                    if !told {
                        eprintln!(
                            "{}: in use by another process; waiting up to {} s for it to stop",
                            data.display(),
                            WAIT_FOR_PREVIOUS.as_secs()
                        );
                        told = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                started => break started?,
            }
        };
        for warning in &relay.warnings {
            eprintln!("warning: {warning}");
        }
        println!("listening on {}", relay.addr);
        println!("fingerprint {}", relay.fingerprint);
        println!("disclosure key: {}", relay.disclosure_key);
        println!("audit key: {}", relay.audit_key);
        if let Some(addr) = relay.metrics_addr {
            println!("metrics on http://{addr}/metrics");
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        shutdown.received().await?;
        eprintln!("shutting down");
        relay.shutdown().await
    })
}

/// SIGTERM and SIGINT, watched from the moment this is made: made before
/// the relay says it is ready, so a signal sent as soon as it has is not missed.
struct ShutdownSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn watch() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignal {
                term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignal {})
    }

    async fn received(mut self) -> Result<()> {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c()
            .await
            .context("cannot watch Ctrl-C")?;
        Ok(())
    }
}
