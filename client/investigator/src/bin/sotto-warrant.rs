//! `sotto-warrant`: the investigator's tool. Make keys, issue a signed
//! warrant, show it, serve it on a relay, open the disclosure it returns, and
//! ask for pseudonyms to be unmasked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use prost::Message;
use sotto_investigator::display::{printable, rfc3339_secs};
use sotto_investigator::issue::{self, IssueArgs};
use sotto_investigator::requests::audit_proof;
use sotto_investigator::show::{self, WarrantView};
use sotto_investigator::{Answered, collect_delivery};
use sotto_investigator::{
    InvestigatorKeys, RelayConnection, WarrantFile, extend_notice, files, new_extension,
    new_unmask_request, receipts, relay_key_of, submit_warrant, unmask,
};
use sotto_proto::{Fingerprint, v1};
use sotto_warrant::transparency::SignedTreeHead;
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
        /// When the relay tells the targets (and anyone unmasked) of the warrant (RFC 3339; not
        /// before --until; default the relay's delay, 180 days after --until unless it says).
        #[arg(long, value_name = "RFC3339")]
        notify_after: Option<String>,
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
    ///
    /// A relay whose operators review warrants holds one that passes every check: submit
    /// then says "pending review" (exit 0) and saves nothing; fetch the disclosure with
    /// `collect` once they approved it.
    Submit(WarrantArgs),
    /// Fetch the next delivery of a warrant submitted before.
    ///
    /// The first is its disclosure; a warrant whose window reaches into the future is
    /// served in deliveries, each with the records stored since the last, until one
    /// marked final (the window ended). --delivery N fetches delivery N again, the same
    /// bytes, so a lost file is not lost evidence. Exits 3 while the warrant is pending
    /// review.
    Collect {
        #[command(flatten)]
        args: WarrantArgs,
        /// Fetch delivery N again (numbered from 1) instead of the next one.
        #[arg(long, value_name = "N")]
        delivery: Option<u64>,
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
        #[command(flatten)]
        at: RelayArgs,
        /// The warrant the pseudonyms were disclosed under.
        #[arg(long, value_name = "FILE")]
        warrant: PathBuf,
        /// A pseudonym from that warrant's disclosure (repeat for several).
        #[arg(long = "pseudonym", value_name = "P", required = true)]
        pseudonyms: Vec<String>,
        /// Why it is needed (recorded in the relay's audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Take the answer even if the relay gives no receipt that checks (nothing then
        /// proves it logged the request, as every answer must be).
        #[arg(long)]
        accept_unlogged: bool,
    },
    /// Postpone the notice the relay gives the people a warrant disclosed (at most twice per
    /// warrant, each time by at most the relay's maximum delay; not once it is due).
    Extend {
        #[command(flatten)]
        at: RelayArgs,
        /// The warrant whose notice to postpone.
        #[arg(long, value_name = "FILE")]
        warrant: PathBuf,
        /// The new time of the notice (RFC 3339).
        #[arg(long, value_name = "RFC3339")]
        notify_after: String,
        /// Why (recorded in the relay's audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Take the answer even if the relay gives no receipt that checks.
        #[arg(long)]
        accept_unlogged: bool,
    },
    /// The relay's receipts kept in the key folder (one for every answer, refusals too).
    Receipts {
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
}

/// Whose keys, and which relay.
#[derive(clap::Args)]
struct RelayArgs {
    /// The folder whose delivery key the warrant names.
    #[arg(long, value_name = "DIR")]
    key: PathBuf,
    /// The relay's address (host:port).
    #[arg(long, value_name = "ADDR")]
    relay: String,
    /// The relay's certificate fingerprint (sha256:HEX), as its operator published it.
    #[arg(long, value_name = "sha256:HEX")]
    fingerprint: String,
}

#[derive(clap::Args)]
struct WarrantArgs {
    #[command(flatten)]
    at: RelayArgs,
    /// Where to save the bundle (a new file: an existing one is never overwritten).
    #[arg(long, value_name = "BUNDLE")]
    out: PathBuf,
    /// Take the answer even if the relay gives no receipt that checks (nothing then
    /// proves it logged the request, as every answer must be).
    #[arg(long)]
    accept_unlogged: bool,
    #[arg(value_name = "WARRANT")]
    warrant: PathBuf,
}

#[derive(Subcommand)]
enum ReceiptsCommand {
    /// Check that every kept receipt is still in a tree head the relay published later.
    ///
    /// HEAD_FILE is the JSON line `sotto-relay audit head` printed (as the operator
    /// published it). A receipt whose head is older needs the relay's consistency proof,
    /// asked of the relay at --relay (the proof is checked against both signed roots, so
    /// the relay cannot fake it). Exits non-zero if any receipt is not in that head: the
    /// relay rewrote, truncated or forked its log.
    Verify {
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        /// A signed tree head the relay published.
        #[arg(long, value_name = "HEAD_FILE")]
        head: PathBuf,
        /// The relay's address (host:port), to fetch consistency proofs.
        #[arg(long, value_name = "ADDR", requires = "fingerprint")]
        relay: Option<String>,
        /// The relay's certificate fingerprint (sha256:HEX).
        #[arg(long, value_name = "sha256:HEX")]
        fingerprint: Option<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing is wrong.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<StillPending>().is_some() => {
            println!("{e}");
            ExitCode::from(EXIT_PENDING)
        }
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
            notify_after,
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
                notify_after: notify_after.as_deref(),
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
        Command::Submit(args) => serve_warrant(&args, Asked::Submit).await,
        Command::Collect { args, delivery } => serve_warrant(&args, Asked::Collect(delivery)).await,
        Command::Open {
            key,
            relay_key,
            json,
            bundle,
        } => open(&key, relay_key.as_deref(), json, &bundle),
        Command::Unmask {
            at:
                RelayArgs {
                    key,
                    relay,
                    fingerprint: pin,
                },
            warrant,
            pseudonyms,
            reason,
            accept_unlogged,
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
            let request = new_unmask_request(&keys, &warrant.id, pseudonyms, &reason, now_secs());
            let signed = keys.sign_unmask(&request);
            let sent = signed.encode_to_vec();
            let at = Logging {
                key: &key,
                relay_key: &relay_key,
                kind: "unmask",
                warrant_id: &warrant.id,
                accept_unlogged,
            };
            let answer = at
                .ask(&relay, &pin, &sent, async |conn| unmask(conn, signed).await)
                .await?;
            let names = keys.open_unmasked(&answer, &relay_key, &request)?;
            for u in names {
                outln!("{}\t{}", printable(&u.pseudonym), printable(&u.username));
            }
            Ok(())
        }
        Command::Extend {
            at:
                RelayArgs {
                    key,
                    relay,
                    fingerprint: pin,
                },
            warrant,
            notify_after,
            reason,
            accept_unlogged,
        } => {
            let keys = InvestigatorKeys::load(&key)?;
            let warrant = WarrantFile::load(&warrant)?.warrant()?;
            let relay_key = relay_key_of(&warrant)?;
            let notify_after = issue::seconds(&notify_after, "notify-after")?;
            let request = new_extension(&keys, &warrant.id, notify_after, &reason, now_secs());
            let signed = keys.sign_extension(&request);
            let sent = signed.encode_to_vec();
            let at = Logging {
                key: &key,
                relay_key: &relay_key,
                kind: "extension",
                warrant_id: &warrant.id,
                accept_unlogged,
            };
            let extended = at
                .ask(&relay, &pin, &sent, async |conn| {
                    extend_notice(conn, signed).await
                })
                .await?;
            outln!(
                "the notice of warrant {} is now due at {} ({} of {} extensions used)",
                printable(&extended.warrant_id),
                rfc3339_secs(extended.notify_after),
                extended.extensions,
                sotto_warrant::MAX_EXTENSIONS
            );
            Ok(())
        }
        Command::Receipts {
            command:
                ReceiptsCommand::Verify {
                    key,
                    head,
                    relay,
                    fingerprint: pin,
                },
        } => verify_receipts(&key, &head, relay.as_deref(), pin.as_deref()).await,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    Submit,
    /// The next delivery, or the one numbered.
    Collect(Option<u64>),
}

/// A warrant still waiting for the relay's operators, when collected: exit 3.
#[derive(Debug)]
struct StillPending(String);

impl std::fmt::Display for StillPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StillPending {}

/// The exit code of a `collect` whose warrant is still pending review.
const EXIT_PENDING: u8 = 3;

async fn serve_warrant(args: &WarrantArgs, asked: Asked) -> Result<()> {
    let key = args.at.key.as_path();
    let out = args.out.as_path();
    let keys = InvestigatorKeys::load(key)?;
    let file = WarrantFile::load(&args.warrant)?;
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
    let pin = fingerprint(&args.at.fingerprint)?;
    let conn = RelayConnection::connect(&args.at.relay, pin).await?;
    let signed = file.signed()?;
    let sent = signed.encode_to_vec();
    let (answer, kind) = match asked {
        Asked::Submit => (submit_warrant(&conn, signed).await, "warrant"),
        Asked::Collect(delivery) => (collect_delivery(&conn, signed, delivery).await, "collect"),
    };
    let receipts = conn.take_receipts();
    conn.close().await;
    let (decision, encoded) = match &answer {
        Ok(Answered::Disclosure(b)) => ("granted", Some(b.encode_to_vec())),
        Ok(Answered::PendingReview(_)) => ("pending", None),
        Err(_) => ("refused", None),
    };
    let logged = keep_receipts(
        key,
        receipts,
        &relay_key,
        kind,
        &sent,
        &warrant.id,
        decision,
        encoded.as_deref(),
    );
    let answer = with_note(answer, &logged.note)?;
    logged.required(args.accept_unlogged)?;
    eprintln!("{}", logged.note);
    let bundle = match answer {
        Answered::Disclosure(bundle) => bundle,
        Answered::PendingReview(p) => {
            let said = format!(
                "warrant {} is pending review by the relay's operators ({} of {} approvals): \
                 nothing is disclosed yet; fetch it with `sotto-warrant collect` once approved",
                printable(&warrant.id),
                p.approvals,
                p.approvals_needed
            );
            if asked != Asked::Submit {
                return Err(StillPending(said).into());
            }
            outln!("{said}");
            return Ok(());
        }
    };
    files::write_new(out, &bundle.encode_to_vec())?;
    // Saved first (it is the evidence as the relay handed it), then checked.
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
    let d = &opened.disclosure;
    let delivery = match (d.delivery, d.is_final) {
        (0, _) => "disclosure".to_owned(),
        (1, true) => "disclosure (delivery 1, final)".to_owned(),
        (n, true) => format!("delivery {n} (final)"),
        (n, false) => format!("delivery {n} (more follow: collect again)"),
    };
    outln!(
        "{delivery} saved to {} ({} records); open it with `sotto-warrant open`",
        out.display(),
        d.records.len()
    );
    Ok(())
}

/// What became of an answer's receipts: one note for the person, and how
/// many checked and were kept.
struct Logged {
    note: String,
    kept: usize,
}

impl Logged {
    /// An answer no kept receipt stands for is not taken, unless the
    /// investigator says so: nothing proves the relay logged it.
    fn required(&self, accept_unlogged: bool) -> Result<()> {
        if self.kept == 0 && !accept_unlogged {
            bail!(
                "the relay answered, but no receipt proves it logged the answer ({}); it is not taken. \
                 Report it to the relay's overseers; --accept-unlogged takes such an answer anyway",
                self.note
            );
        }
        if self.kept == 0 {
            eprintln!("warning: an unlogged answer taken (--accept-unlogged)");
        }
        Ok(())
    }
}

/// Checks the receipts the relay's answers carried and keeps them in the key
/// folder; says what was kept, or what did not check.
#[allow(clippy::too_many_arguments)]
fn keep_receipts(
    key: &Path,
    receipts: Vec<v1::Receipt>,
    relay_key: &ed25519_dalek::VerifyingKey,
    kind: &str,
    request: &[u8],
    warrant_id: &str,
    decision: &str,
    bundle: Option<&[u8]>,
) -> Logged {
    if receipts.is_empty() {
        return Logged {
            note: "the relay gave no receipt: it cannot be held to having logged this".into(),
            kept: 0,
        };
    }
    let expected = receipts::Expected {
        relay_key: relay_key.as_bytes(),
        kind,
        request,
        warrant_id,
        decision,
        bundle,
    };
    let mut kept_count = 0;
    let notes: Vec<String> = receipts
        .iter()
        .map(|receipt| match receipts::keep(key, receipt, &expected) {
            Ok(kept) => {
                kept_count += 1;
                format!(
                "receipt: entry {} of the relay's log, in its signed head of {} entries, kept in {}{}",
                kept.receipt.index() + 1,
                kept.receipt.head().size(),
                kept.path.display(),
                if kept.warrants_relay {
                    ""
                } else {
                    " (vouched for by this relay's disclosure key, not the one the warrant names)"
                }
            )
            }
            Err(e) => e.to_string(),
        })
        .collect();
    Logged {
        note: notes.join("; "),
        kept: kept_count,
    }
}

/// An answer's error with its receipt note on the same line (a refusal is
/// one line on stderr, receipt and all).
/// One signed request under a warrant whose answer must carry a receipt.
struct Logging<'a> {
    key: &'a Path,
    relay_key: &'a ed25519_dalek::VerifyingKey,
    /// The audit entry's kind the receipt must be of.
    kind: &'a str,
    warrant_id: &'a str,
    accept_unlogged: bool,
}

impl Logging<'_> {
    /// Sends `sent` (the signed request) with `ask` to the relay at `relay`
    /// pinned to `pin`, keeps the receipts of the answer, and takes the
    /// answer only if one checks (or the investigator accepts it unlogged).
    async fn ask<T>(
        &self,
        relay: &str,
        pin: &str,
        sent: &[u8],
        ask: impl AsyncFnOnce(&RelayConnection) -> Result<T, sotto_investigator::InvestigatorError>,
    ) -> Result<T> {
        let conn = RelayConnection::connect(relay, fingerprint(pin)?).await?;
        let answer = ask(&conn).await;
        let receipts = conn.take_receipts();
        conn.close().await;
        let logged = keep_receipts(
            self.key,
            receipts,
            self.relay_key,
            self.kind,
            sent,
            self.warrant_id,
            if answer.is_ok() { "granted" } else { "refused" },
            None,
        );
        let answer = with_note(answer, &logged.note)?;
        logged.required(self.accept_unlogged)?;
        eprintln!("{}", logged.note);
        Ok(answer)
    }
}

fn with_note<T>(answer: Result<T, sotto_investigator::InvestigatorError>, note: &str) -> Result<T> {
    answer.map_err(|e| anyhow::anyhow!("{e} [{note}]"))
}

async fn verify_receipts(
    key: &Path,
    head_file: &Path,
    relay: Option<&str>,
    pin: Option<&str>,
) -> Result<()> {
    let text = std::fs::read_to_string(head_file)
        .with_context(|| format!("cannot read {}", head_file.display()))?;
    let head = SignedTreeHead::parse(&text)
        .with_context(|| format!("{} is not a valid signed tree head", head_file.display()))?;
    let kept = receipts::kept(key)?;
    if kept.is_empty() {
        outln!("no receipts kept in {}", key.display());
        return Ok(());
    }
    let conn = match (relay, pin) {
        (Some(relay), Some(pin)) => Some(RelayConnection::connect(relay, fingerprint(pin)?).await?),
        _ => None,
    };
    let mut broken = 0;
    let mut checked = 0;
    // The disclosure keys that vouch for the head's audit key, as kept
    // receipts show: a receipt of one of them under another audit key means
    // the relay changed its audit key, which may not hide what it logged.
    let vouching: Vec<_> = kept
        .iter()
        .filter(|(_, r)| r.head().key() == head.key())
        .map(|(_, r)| *r.disclosure_key())
        .collect();
    for (path, receipt) in &kept {
        let proof = if receipt.head().size() == head.size() {
            Some(Vec::new())
        } else if receipt.head().size() < head.size()
            && let Some(conn) = &conn
        {
            let answer = proof_within_limit(conn, receipt.head().size(), head.size()).await?;
            Some(
                answer
                    .proof
                    .iter()
                    .map(|h| h.as_ref().try_into())
                    .collect::<Result<Vec<[u8; 32]>, _>>()
                    .map_err(|_| {
                        anyhow::anyhow!("the relay's proof holds a hash that is not 32 bytes")
                    })?,
            )
        } else if receipt.head().size() < head.size() {
            bail!(
                "{} needs the relay's consistency proof to the head: give --relay and --fingerprint",
                path.display()
            );
        } else {
            Some(Vec::new())
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let against = match receipts::check_against(receipt, &head, proof.as_deref()) {
            receipts::Against::OtherRelay if vouching.contains(receipt.disclosure_key()) => {
                receipts::Against::Broken(
                    "the relay has since logged under another audit key: this receipt's log is not in the head"
                        .into(),
                )
            }
            against => against,
        };
        if against != receipts::Against::OtherRelay {
            checked += 1;
        }
        match against {
            receipts::Against::Included => outln!(
                "{name}: entry {} is in the published head of {} entries",
                receipt.index() + 1,
                head.size()
            ),
            receipts::Against::OtherRelay => {
                outln!("{name}: another relay's receipt (another audit key); not checked")
            }
            receipts::Against::Broken(why) => {
                broken += 1;
                outln!(
                    "{name}: entry {} NOT in the published head: {why}",
                    receipt.index() + 1
                );
            }
        }
    }
    if let Some(conn) = conn {
        conn.close().await;
    }
    if broken > 0 {
        bail!(
            "{broken} receipt(s) are not in the published head: the relay's log was rewritten, truncated or forked"
        );
    }
    if checked == 0 {
        bail!(
            "none of the {} kept receipts is of this head's log (audit key {}): nothing was checked",
            kept.len(),
            hex::encode(head.key().as_bytes())
        );
    }
    Ok(())
}

/// The relay's consistency proof from `from` to `to`; a relay limits how
/// many it gives a minute, so many kept receipts are checked at its pace.
async fn proof_within_limit(conn: &RelayConnection, from: u64, to: u64) -> Result<v1::Consistency> {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(2);
    const TRIES: u32 = 60;
    for _ in 1..TRIES {
        match audit_proof(conn, from, to).await {
            Err(sotto_investigator::InvestigatorError::Failed {
                code: v1::ErrorCode::RateLimited,
                ..
            }) => tokio::time::sleep(WAIT).await,
            answer => return Ok(answer?),
        }
    }
    Ok(audit_proof(conn, from, to).await?)
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
