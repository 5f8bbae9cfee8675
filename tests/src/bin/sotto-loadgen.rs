//! `sotto-loadgen`: throughput, latency and connections of a sotto relay,
//! measured against the bare-QUIC ceiling (`--mode echo`) in the same way.

use anyhow::Result;
use clap::Parser;
use sotto_server::config::StoreKind;
use sotto_tests::loadgen::{self, Mode, Options};

#[derive(Parser)]
#[command(
    name = "sotto-loadgen",
    version,
    about = "Load a sotto relay: N clients send M messages to each other; reports msgs/s and latency.",
    long_about = "Load a sotto relay: N connected clients send M messages in total, each to the next \
                  client (or, in the group modes, to the rest of its group: every delivery counts), \
                  and the time from send to delivery at the recipient is measured per message.\n\n\
                  Without --relay it starts its own relay (the release sotto-relay beside this binary, \
                  a temporary data directory, port 0). --mode echo measures the ceiling: a bare QUIC \
                  server with the same TLS, transport settings and frame codec, but no accounts, \
                  storage or flush. --cluster N starts a local 3-node NATS JetStream cluster \
                  (nats-server on the path, or NATS_SERVER) and N relay nodes on it, the clients \
                  spread over them."
)]
struct Cli {
    #[arg(long, value_enum, default_value = "normal")]
    mode: Mode,
    /// Connected clients sending and receiving.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Messages in total.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Bytes of text per message (at least 20).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// More authenticated connections held open, idle, during the run.
    #[arg(long, default_value_t = 0)]
    idle_clients: usize,
    /// Messages per second for the whole run; default: as fast as it goes.
    #[arg(long)]
    rate: Option<f64>,
    /// Members of each group in --mode normal-group and secret-group (the clients split
    /// into groups; each message goes to the rest of its sender's group).
    #[arg(long, default_value_t = 10)]
    group_size: usize,
    /// The store of the relay it starts (ignored with --relay, --cluster and --mode echo).
    #[arg(long, value_enum, default_value = "fjall")]
    store: StoreKind,
    /// An existing relay instead of a child process (needs --fingerprint); repeat it for the
    /// nodes of a cluster (one fingerprint): clients are spread over them in turn.
    #[arg(long, requires = "fingerprint", conflicts_with = "cluster")]
    relay: Vec<String>,
    #[arg(long, requires = "relay")]
    fingerprint: Option<String>,
    /// Start a local 3-node NATS JetStream cluster and this many relay nodes on it.
    #[arg(long, value_name = "NODES")]
    cluster: Option<usize>,
    /// One JSON line: mode, store, relays, clients, idle_clients, messages, size, seconds,
    /// msgs_per_sec, p50_us, p99_us, relay_rss_mib.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    internal: Option<Internal>,
}

#[derive(clap::Subcommand)]
enum Internal {
    /// The echo server of `--mode echo` (started by sotto-loadgen itself).
    #[command(hide = true)]
    EchoServer,
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    if let Err(e) = result {
        eprintln!("sotto-loadgen: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(Internal::EchoServer) = cli.internal {
        let (addr, fingerprint) = sotto_tests::echo::start("127.0.0.1:0".parse()?).await?;
        println!("listening on {addr}");
        println!("fingerprint {fingerprint}");
        use std::io::Write;
        std::io::stdout().flush()?;
        std::future::pending::<()>().await;
    }
    let opts = Options {
        mode: cli.mode,
        clients: cli.clients,
        messages: cli.messages,
        size: cli.size,
        idle_clients: cli.idle_clients,
        relay: cli.fingerprint.map(|f| (cli.relay, f)),
        cluster: cli.cluster,
        rate: cli.rate,
        store: cli.store,
        group_size: cli.group_size,
    };
    let report = loadgen::run(&opts, !cli.json).await?;
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{:?} mode{}{}: {} clients (+{} idle), {} messages of {} bytes in {:.2} s",
            report.mode,
            report.store.map(|s| format!(" on {s}")).unwrap_or_default(),
            match report.relays {
                1 => String::new(),
                n => format!(", {n} relay nodes"),
            },
            report.clients,
            report.idle_clients,
            report.messages,
            report.size,
            report.seconds
        );
        println!("  throughput   {:.0} msgs/s", report.msgs_per_sec);
        println!(
            "  latency      p50 {} µs, p99 {} µs",
            report.p50_us, report.p99_us
        );
        if let Some(rss) = report.relay_rss_mib {
            println!("  relay memory {rss:.1} MiB peak");
        }
        if let Some(kib) = report.idle_kib_per_conn {
            println!("  idle conns   {kib:.1} KiB each");
        }
    }
    Ok(())
}
