//! `sotto-warrant`: the investigator's tool. Issue a signed warrant, serve it on
//! a relay, open the disclosure it returns, and ask for pseudonyms to be unmasked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use prost::Message;
use serde::Serialize;
use sotto_client::commands::rfc3339;
use sotto_client::investigator::{InvestigatorKeys, WarrantFile};
use sotto_client::pinning::Fingerprint;
use sotto_client::relay::RelayClient;
use sotto_proto::v1::{self, request, response};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Parser)]
#[command(
    name = "sotto-warrant",
    version,
    about = "Serve a lawful warrant on a sotto relay: issue it, submit it, open the disclosure, unmask pseudonyms.",
    long_about = "Serve a lawful warrant on a sotto relay.\n\n\
                  A relay discloses only the targets' normal-mode records in the warrant's window; \
                  everyone else appears as a pseudonym, revealed only by a separate signed unmask \
                  request. Secret chats are never disclosed: the relay cannot read them. Every \
                  request is recorded in the relay's audit log."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make an authority signing key and a delivery key in DIR; prints the public key to register.
    Keygen {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The authority's name, as the relay's operator registers it.
        #[arg(long, default_value = "authority")]
        name: String,
    },
    /// Write and sign a warrant.
    Issue {
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        /// A unique warrant id (a relay serves each id once).
        #[arg(long)]
        id: String,
        /// The case reference.
        #[arg(long)]
        case: String,
        /// An account under investigation (repeat for several).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Start of the disclosure window (RFC 3339).
        #[arg(long)]
        from: String,
        /// End of the disclosure window (RFC 3339).
        #[arg(long)]
        until: String,
        /// When the warrant stops being valid (RFC 3339).
        #[arg(long)]
        expires: String,
        /// When the warrant starts being valid (RFC 3339; default now).
        #[arg(long)]
        not_before: Option<String>,
        /// The legal basis, in words.
        #[arg(long)]
        legal_basis: String,
        /// Who approved it (the chief investigator; default the authority's name).
        #[arg(long)]
        approver: Option<String>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Serve a warrant on a relay and save the encrypted disclosure it returns.
    Submit {
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        #[arg(long)]
        relay: String,
        /// The relay's certificate fingerprint (sha256:HEX).
        #[arg(long)]
        fingerprint: String,
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
        warrant: PathBuf,
    },
    /// Verify the relay's signature on a disclosure bundle, decrypt it, print its records.
    Open {
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        /// The relay's disclosure key (hex) to pin, as its operator published it.
        #[arg(long)]
        relay_key: Option<String>,
        /// One JSON object with the whole disclosure.
        #[arg(long)]
        json: bool,
        bundle: PathBuf,
    },
    /// Ask the relay, under a granted warrant, who stands behind pseudonyms.
    Unmask {
        #[arg(long, value_name = "DIR")]
        key: PathBuf,
        #[arg(long)]
        relay: String,
        #[arg(long)]
        fingerprint: String,
        #[arg(long, value_name = "FILE")]
        warrant: PathBuf,
        /// A pseudonym from that warrant's disclosure (repeat for several).
        #[arg(long = "pseudonym", required = true)]
        pseudonyms: Vec<String>,
        /// Why it is needed (recorded in the relay's audit log).
        #[arg(long)]
        reason: String,
    },
}

fn main() {
    sotto_client::commands::run_main("sotto-warrant", run(Cli::parse()));
}

fn seconds(text: &str, what: &str) -> Result<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .with_context(|| {
            format!("--{what} {text:?} is not an RFC 3339 time (like 2026-11-30T12:00:00Z)")
        })
}

async fn connect(relay: &str, fingerprint: &str) -> Result<RelayClient> {
    let pin = Fingerprint::parse(fingerprint).map_err(anyhow::Error::msg)?;
    Ok(RelayClient::connect(relay, Some(pin)).await?)
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out, name } => {
            let keys = InvestigatorKeys::generate(&out, &name)?;
            println!("public key: {}", keys.public_key_hex());
            println!("delivery key: {}", hex::encode(keys.delivery_public()));
            println!(
                "keys written to {} (keep authority.key and delivery.key secret)",
                out.display()
            );
            Ok(())
        }
        Command::Issue {
            key,
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
            for t in &targets {
                sotto_proto::names::validate(t).with_context(|| format!("--target {t:?}"))?;
            }
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let warrant = v1::Warrant {
                id,
                case_reference: case,
                authority: keys.name.clone(),
                legal_basis,
                approver: approver.unwrap_or_else(|| keys.name.clone()),
                targets,
                window_from: seconds(&from, "from")?,
                window_until: seconds(&until, "until")?,
                not_before: not_before
                    .as_deref()
                    .map(|t| seconds(t, "not-before"))
                    .transpose()?
                    .unwrap_or(now),
                expires: seconds(&expires, "expires")?,
                delivery_key: keys.delivery_public().to_vec().into(),
            };
            if warrant.window_until <= warrant.window_from {
                bail!("--until must be after --from");
            }
            WarrantFile::new(&keys.sign_warrant(&warrant)).save(&out)?;
            println!(
                "warrant {} (case {}) for {} signed by {}; written to {}",
                warrant.id,
                warrant.case_reference,
                warrant.targets.join(", "),
                keys.name,
                out.display()
            );
            Ok(())
        }
        Command::Submit {
            key,
            relay,
            fingerprint,
            out,
            warrant,
        } => {
            // The keys are loaded to check they are there to open the answer.
            let keys = InvestigatorKeys::load(&key)?;
            let file = WarrantFile::load(&warrant)?;
            if file.warrant()?.delivery_key.as_ref() != keys.delivery_public() {
                bail!(
                    "this warrant's delivery key is not in {}: its bundle could not be opened",
                    key.display()
                );
            }
            let client = connect(&relay, &fingerprint).await?;
            let answer = client
                .request(request::Kind::SubmitWarrant(v1::SubmitWarrant {
                    warrant: Some(file.signed()?),
                }))
                .await?;
            client.close().await;
            let response::Kind::Disclosure(sealed) = answer else {
                bail!("the relay answered something other than a disclosure");
            };
            sotto_client::vault::write_atomically(&out, &sealed.encode_to_vec())?;
            println!(
                "disclosure saved to {}; open it with `sotto-warrant open`",
                out.display()
            );
            Ok(())
        }
        Command::Open {
            key,
            relay_key,
            json,
            bundle,
        } => open(&key, relay_key.as_deref(), json, &bundle),
        Command::Unmask {
            key,
            relay,
            fingerprint,
            warrant,
            pseudonyms,
            reason,
        } => {
            let keys = InvestigatorKeys::load(&key)?;
            let warrant = WarrantFile::load(&warrant)?.warrant()?;
            let request = v1::UnmaskRequest {
                warrant_id: warrant.id,
                authority: keys.name.clone(),
                pseudonyms,
                reason,
                issued_at: OffsetDateTime::now_utc().unix_timestamp(),
            };
            let client = connect(&relay, &fingerprint).await?;
            let answer = client
                .request(request::Kind::Unmask(v1::Unmask {
                    request: Some(keys.sign_unmask(&request)),
                }))
                .await?;
            client.close().await;
            let response::Kind::Unmasked(unmasked) = answer else {
                bail!("the relay answered something other than an unmasking");
            };
            for u in unmasked.unmasked {
                println!("{}\t{}", u.pseudonym, u.username);
            }
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    conversation: &'a str,
    from: &'a str,
    participants: &'a [String],
    sent_at: String,
    text: &'a str,
}

#[derive(Serialize)]
struct JsonDisclosure<'a> {
    warrant_id: &'a str,
    case: &'a str,
    relay_key: &'a str,
    generated_at: String,
    targets: &'a [String],
    records: Vec<JsonRecord<'a>>,
    pseudonyms: &'a [String],
}

fn open(key: &Path, relay_key: Option<&str>, json: bool, bundle: &Path) -> Result<()> {
    let keys = InvestigatorKeys::load(key)?;
    let bytes =
        std::fs::read(bundle).with_context(|| format!("cannot read {}", bundle.display()))?;
    let sealed =
        v1::SealedDisclosure::decode(bytes.as_slice()).context("not a disclosure bundle")?;
    let pin = relay_key
        .map(|k| -> Result<ed25519_dalek::VerifyingKey> {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(k.trim(), &mut bytes).context("--relay-key is 64 hex digits")?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .context("--relay-key is not an Ed25519 key")
        })
        .transpose()?;
    let opened = keys.open(&sealed, pin.as_ref())?;
    if pin.is_none() {
        eprintln!(
            "note: signed by relay key {} (not pinned: compare it with the relay's published disclosure key, or pass --relay-key)",
            opened.relay_key
        );
    }
    let d = &opened.disclosure;
    if json {
        let out = JsonDisclosure {
            warrant_id: &d.warrant_id,
            case: &d.case_reference,
            relay_key: &opened.relay_key,
            generated_at: rfc3339(d.generated_at),
            targets: &d.targets,
            records: d
                .records
                .iter()
                .map(|r| JsonRecord {
                    conversation: &r.conversation,
                    from: &r.from,
                    participants: &r.participants,
                    sent_at: rfc3339(r.sent_at),
                    text: &r.text,
                })
                .collect(),
            pseudonyms: &d.pseudonyms,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    println!("warrant {}  case {}", d.warrant_id, d.case_reference);
    println!(
        "relay key {}  generated {}",
        opened.relay_key,
        rfc3339(d.generated_at)
    );
    println!("targets: {}", d.targets.join(", "));
    println!(
        "{} records, {} pseudonyms\n",
        d.records.len(),
        d.pseudonyms.len()
    );
    for r in &d.records {
        println!(
            "{} {} [{}] {}: {}",
            rfc3339(r.sent_at),
            r.conversation,
            r.participants.join(", "),
            r.from,
            r.text
        );
    }
    Ok(())
}
