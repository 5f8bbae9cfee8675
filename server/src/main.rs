//! `sotto-relay`: run and administer a sotto relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
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
    Init,
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
        Command::Init => init(cli.data, config),
    }
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
    Ok(())
}

fn serve(data: PathBuf, mut config: RelayConfig, listen: Option<SocketAddr>) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SOTTO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let relay = sotto_server::start(&data, config).await?;
        for warning in &relay.warnings {
            eprintln!("warning: {warning}");
        }
        println!("listening on {}", relay.addr);
        println!("fingerprint {}", relay.fingerprint);
        println!("disclosure key: {}", relay.disclosure_key);
        use std::io::Write;
        std::io::stdout().flush()?;
        shutdown_signal().await?;
        eprintln!("shutting down");
        relay.shutdown().await
    })
}

async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}
