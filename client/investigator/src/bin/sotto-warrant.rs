//! `sotto-warrant`: the investigator's tool. Make keys, issue a signed
//! warrant, show it, serve it on a relay, open the disclosure it returns, and
//! ask for pseudonyms to be unmasked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use prost::Message;
use sotto_investigator::display::printable;
use sotto_investigator::issue::{self, IssueArgs};
use sotto_investigator::show::{self, WarrantView};
use sotto_investigator::{
    InvestigatorKeys, RelayConnection, WarrantFile, files, new_unmask_request, relay_key_of,
    submit_warrant, unmask,
};
use sotto_proto::{Fingerprint, v1};
use time::OffsetDateTime;

/// `println!` that hands a failed write back (`?`) instead of panicking: a
/// reader that went away (`| head`) ends the program quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` that hands a failed write back, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

#[derive(Parser)]
#[command(
    name = "sotto-warrant",
    version,
    about = "Serve a lawful warrant on a sotto relay: issue it, submit it, open the disclosure, unmask pseudonyms.",
    long_about = "Serve a lawful warrant on a sotto relay.\n\n\
                  A relay discloses only the targets' normal-mode records in the warrant's window; \
                  everyone else appears as a pseudonym, revealed only by a separate signed unmask \
                  request. Secret chats are never disclosed: the relay cannot read them. Every \
                  request, granted or refused, is recorded in the relay's audit log.\n\n\
                  A relay's operator publishes two values; keep them apart:\n  \
                  fingerprint sha256:<hex>   its TLS certificate, for --fingerprint (submit, unmask)\n  \
                  disclosure key: <hex>      the key that signs disclosures, for --relay-key (issue, open)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make an authority signing key and a delivery key in DIR; prints the public key to register.
    Keygen {
        /// A new folder for the keys (authority.key and delivery.key stay secret).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The authority's name, as the relay's operator registers it.
        #[arg(long, default_value = "authority")]
        name: String,
    },
    /// Write and sign a warrant for one relay.
    Issue {
        /// The folder `keygen` made.
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        /// The relay's disclosure key: the `disclosure key:` line `sotto-relay serve` prints
        /// (64 hex digits; not the sha256: certificate fingerprint). Any other relay refuses the warrant.
        #[arg(long, value_name = "HEX")]
        relay_key: String,
        /// A unique warrant id (a relay serves each id once).
        #[arg(long)]
        id: String,
        /// The case reference.
        #[arg(long)]
        case: String,
        /// An account under investigation (repeat for several).
        #[arg(long = "target", value_name = "USER", required = true)]
        targets: Vec<String>,
        /// Start of the disclosure window (RFC 3339, like 2026-11-01T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        from: String,
        /// End of the disclosure window (RFC 3339); relays allow 90 days by default.
        #[arg(long, value_name = "RFC3339")]
        until: String,
        /// When the warrant stops being valid (RFC 3339).
        #[arg(long, value_name = "RFC3339")]
        expires: String,
        /// When the warrant starts being valid (RFC 3339; default now).
        #[arg(long, value_name = "RFC3339")]
        not_before: Option<String>,
        /// The legal basis, in words.
        #[arg(long, value_name = "TEXT")]
        legal_basis: String,
        /// Who approved it (default the authority's name).
        #[arg(long, value_name = "NAME")]
        approver: Option<String>,
        /// Where to write the signed warrant.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print a warrant file: who issued it, for whom, which window, for which relay.
    Show {
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
        #[arg(value_name = "WARRANT")]
        warrant: PathBuf,
    },
    /// Serve a warrant on a relay and save the encrypted disclosure it returns.
    Submit {
        /// The folder whose delivery key the warrant names.
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        /// The relay's address (host:port).
        #[arg(long, value_name = "ADDR")]
        relay: String,
        /// The relay's certificate fingerprint (sha256:HEX), as its operator published it.
        #[arg(long, value_name = "sha256:HEX")]
        fingerprint: String,
        /// Where to save the bundle (a new file: an existing one is never overwritten).
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
        #[arg(value_name = "WARRANT")]
        warrant: PathBuf,
    },
    /// Verify the relay's signature on a disclosure bundle, decrypt it, print its records.
    Open {
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        /// The relay's disclosure key (hex) to pin, as its operator published it.
        #[arg(long, value_name = "HEX")]
        relay_key: Option<String>,
        /// One JSON object with the whole disclosure.
        #[arg(long)]
        json: bool,
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
    },
    /// Ask the relay, under a granted warrant, who stands behind pseudonyms.
    Unmask {
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        /// The relay's address (host:port).
        #[arg(long, value_name = "ADDR")]
        relay: String,
        /// The relay's certificate fingerprint (sha256:HEX).
        #[arg(long, value_name = "sha256:HEX")]
        fingerprint: String,
        /// The warrant the pseudonyms were disclosed under.
        #[arg(long, value_name = "FILE")]
        warrant: PathBuf,
        /// A pseudonym from that warrant's disclosure (repeat for several).
        #[arg(long = "pseudonym", value_name = "P", required = true)]
        pseudonyms: Vec<String>,
        /// Why it is needed (recorded in the relay's audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing is wrong.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever a file or the relay put in the message.
            eprintln!("error: {}", printable(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn fingerprint(text: &str) -> Result<Fingerprint> {
    Fingerprint::parse(text).context("--fingerprint is the relay's `fingerprint sha256:...` line")
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out, name } => {
            let keys = InvestigatorKeys::generate(&out, &name)?;
            outln!("public key: {}", keys.public_key_hex());
            outln!("delivery key: {}", hex::encode(keys.delivery_public()));
            outln!(
                "keys written to {} (keep authority.key and delivery.key secret)",
                out.display()
            );
            Ok(())
        }
        Command::Issue {
            key,
            relay_key,
            id,
            case,
            targets,
            from,
            until,
            expires,
            not_before,
            legal_basis,
            approver,
            out,
        } => {
            let keys = InvestigatorKeys::load(&key)?;
            let args = IssueArgs {
                relay_key: &relay_key,
                id: &id,
                case: &case,
                targets: &targets,
                from: &from,
                until: &until,
                expires: &expires,
                not_before: not_before.as_deref(),
                legal_basis: &legal_basis,
                approver: approver.as_deref(),
            };
            let drafted = issue::draft(&keys, args, now_secs())?;
            for warning in &drafted.warnings {
                eprintln!("warning: {warning}");
            }
            let warrant = drafted.warrant;
            WarrantFile::new(&keys.sign_warrant(&warrant)).save(&out)?;
            outln!(
                "warrant {} (case {}) for {} signed by {}; written to {}",
                printable(&warrant.id),
                printable(&warrant.case_reference),
                warrant.targets.join(", "),
                printable(&keys.name),
                out.display()
            );
            Ok(())
        }
        Command::Show { json, warrant } => {
            let warrant = WarrantFile::load(&warrant)?.warrant()?;
            let view = WarrantView::new(&warrant);
            if json {
                outln!("{}", view.json()?);
            } else {
                out!("{}", view.text());
            }
            Ok(())
        }
        Command::Submit {
            key,
            relay,
            fingerprint: pin,
            out,
            warrant,
        } => submit(&key, &relay, &pin, &out, &warrant).await,
        Command::Open {
            key,
            relay_key,
            json,
            bundle,
        } => open(&key, relay_key.as_deref(), json, &bundle),
        Command::Unmask {
            key,
            relay,
            fingerprint: pin,
            warrant,
            pseudonyms,
            reason,
        } => {
            let keys = InvestigatorKeys::load(&key)?;
            let warrant = WarrantFile::load(&warrant)?.warrant()?;
            let relay_key = relay_key_of(&warrant)?;
            if warrant.delivery_key.as_ref() != keys.delivery_public() {
                bail!(
                    "this warrant's delivery key is not in {}: the answer could not be opened",
                    key.display()
                );
            }
            let pin = fingerprint(&pin)?;
            let request = new_unmask_request(&keys, &warrant.id, pseudonyms, &reason, now_secs());
            let conn = RelayConnection::connect(&relay, pin).await?;
            let answer = unmask(&conn, keys.sign_unmask(&request)).await;
            conn.close().await;
            let names = keys.open_unmasked(&answer?, &relay_key, &request)?;
            for u in names {
                outln!("{}\t{}", printable(&u.pseudonym), printable(&u.username));
            }
            Ok(())
        }
    }
}

async fn submit(key: &Path, relay: &str, pin: &str, out: &Path, warrant: &Path) -> Result<()> {
    let keys = InvestigatorKeys::load(key)?;
    let file = WarrantFile::load(warrant)?;
    let warrant = file.warrant()?;
    if warrant.delivery_key.as_ref() != keys.delivery_public() {
        bail!(
            "this warrant's delivery key is not in {}: its bundle could not be opened",
            key.display()
        );
    }
    let relay_key = relay_key_of(&warrant)?;
    // Checked before the relay is asked: it serves a warrant id once.
    files::ensure_absent(out)?;
    let pin = fingerprint(pin)?;
    let conn = RelayConnection::connect(relay, pin).await?;
    let answer = submit_warrant(&conn, file.signed()?).await;
    conn.close().await;
    let bundle = answer?;
    files::write_new(out, &bundle.encode_to_vec())?;
    // Saved first (the relay will not serve this warrant again), then checked.
    let opened = keys
        .open_disclosure(&bundle, Some(&relay_key))
        .map_err(|e| {
            anyhow::anyhow!(
                "the bundle was saved to {}, but it does not check out: {e}",
                out.display()
            )
        })?;
    if opened.disclosure.warrant_id != warrant.id {
        bail!(
            "the bundle was saved to {}, but it answers warrant {:?}, not {:?}",
            out.display(),
            opened.disclosure.warrant_id,
            warrant.id
        );
    }
    outln!(
        "disclosure saved to {} ({} records); open it with `sotto-warrant open`",
        out.display(),
        opened.disclosure.records.len()
    );
    Ok(())
}

fn open(key: &Path, relay_key: Option<&str>, json: bool, bundle: &Path) -> Result<()> {
    let keys = InvestigatorKeys::load(key)?;
    let pin = relay_key.map(issue::parse_relay_key).transpose()?;
    let bytes =
        std::fs::read(bundle).with_context(|| format!("cannot read {}", bundle.display()))?;
    let parts = v1::DisclosureBundle::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a disclosure bundle", bundle.display()))?;
    let opened = keys.open_disclosure(&parts, pin.as_ref())?;
    if pin.is_none() {
        eprintln!(
            "note: signed by relay key {} (not pinned: compare it with the relay's published disclosure key, or pass --relay-key)",
            hex::encode(opened.relay_key.as_bytes())
        );
    }
    if json {
        outln!("{}", show::disclosure_json(&opened)?);
    } else {
        let width = sotto_investigator::display::terminal_width();
        out!("{}", show::disclosure_text(&opened, width));
    }
    Ok(())
}
