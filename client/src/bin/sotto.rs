//! `sotto`: the end-user client.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sotto_client::commands::{self, init::InitArgs};
use sotto_client::control::{Request, SendRequest};
use sotto_client::profile::{self, PASSPHRASE_ENV, Profile, ProfileInUse};
use sotto_client::relay::Recipient;
use sotto_client::tui::app::ConvKey;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "sotto",
    version,
    about = "sotto: a private messenger. Normal chats are kept by the relay (sealed at rest); \
             secret chats are end-to-end encrypted."
)]
struct Cli {
    /// Profile folder (default: $XDG_DATA_HOME/sotto or ~/.local/share/sotto).
    #[arg(long, global = true, env = "SOTTO_PROFILE")]
    profile: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create your keys, register USER at the relay, and pin the relay's certificate.
    Init {
        /// The relay's address, e.g. 127.0.0.1:4433.
        #[arg(long)]
        relay: String,
        /// The relay's certificate fingerprint (sha256:HEX), as its operator published it.
        /// Without it the certificate is trusted on first use.
        #[arg(long)]
        fingerprint: Option<String>,
        /// The username to register: 3 to 32 of a-z, 0-9, '_' and '-'.
        #[arg(long)]
        user: String,
    },
    /// Send a message. Exits 0 only once the relay has stored it durably.
    /// While `sotto chat` runs on this profile, it sends the message for you.
    Send {
        /// Send to this group instead of a user (with --secret: a secret group).
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// End-to-end encrypted: the relay sees only ciphertext.
        #[arg(long)]
        secret: bool,
        /// With --secret: delete the message this long after it is first shown (30s, 5m, 1h, 1d).
        #[arg(
            long,
            value_name = "TIME",
            requires = "secret",
            conflicts_with = "group"
        )]
        expire: Option<String>,
        /// The recipient (omit with --group).
        #[arg(required_unless_present = "group")]
        user: Option<String>,
        /// The message text; - reads it from standard input.
        text: Option<String>,
    },
    /// Manage groups: normal ones (the relay keeps them), and with --secret
    /// secret ones (end to end: the relay never learns their name or members).
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// The messages the relay has not taken yet: list them, send one the relay
    /// refused again, or drop it.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Fetch and print what arrived: a header line a message, its further lines
    /// indented, control characters escaped. Piped, a message counts as printed
    /// once its reader took it (`sync | head -1` loses nothing).
    Sync {
        /// One JSON object a line: id, mode, from, group, text, sent_at.
        #[arg(long)]
        json: bool,
    },
    /// The terminal chat client: the chat list, or USER's chat (--secret: the secret one).
    Chat {
        /// Open the secret (end-to-end encrypted) chat with USER.
        #[arg(long, requires = "user")]
        secret: bool,
        user: Option<String>,
    },
    /// Show the safety number you and USER compare to verify your secret chat.
    SafetyNumber { user: String },
    /// Accept USER's identity key after comparing safety numbers: exactly the
    /// key whose number `safety-number` showed last, or whose number is DIGITS.
    /// Refused if the relay presents another key now.
    Trust {
        user: String,
        /// The 60 digits you compared (spaces allowed; quote them).
        digits: Option<String>,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Every waiting message: its id, mode, recipient, status and text.
    List,
    /// Send the message with this id (its first hex digits) again.
    Retry { id: String },
    /// Remove the message with this id from the outbox: it will not be sent.
    Drop { id: String },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create GROUP with these members (you are always a member, and its admin).
    Create {
        /// A secret group: end-to-end encrypted, its membership on the members' devices.
        #[arg(long)]
        secret: bool,
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Add members to a secret group you administer (they read nothing sent before).
    Add {
        #[arg(long, required = true)]
        secret: bool,
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members from a secret group you administer (they read nothing sent after).
    Remove {
        #[arg(long, required = true)]
        secret: bool,
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave a secret group.
    Leave {
        #[arg(long, required = true)]
        secret: bool,
        group: String,
    },
    /// The invitations to secret groups that wait for your answer: who sent
    /// each, and its members. Nothing is joined, and nothing sent, before you
    /// accept one.
    Invitations,
    /// Join the secret group GROUP you were invited to (and read what its
    /// members wrote to you meanwhile); for an answer from a member who is
    /// no admin of it, ask its admins to confirm it instead.
    Accept {
        #[arg(long, required = true)]
        secret: bool,
        group: String,
        /// Whose invitation, when several name a group GROUP: check their
        /// members first (`sotto group invitations`).
        #[arg(long, value_name = "USER")]
        from: Option<String>,
    },
    /// Set the secret group GROUP's disappearing timer for every member
    /// (e.g. 30s, 5m, 1h, 1d; "off" turns it off): messages disappear that
    /// long after they are first shown.
    Timer {
        #[arg(long, required = true)]
        secret: bool,
        group: String,
        duration: String,
    },
    /// Refuse an invitation to the secret group GROUP (its sender is not told).
    Decline {
        #[arg(long, required = true)]
        secret: bool,
        group: String,
        #[arg(long, value_name = "USER")]
        from: Option<String>,
    },
}

fn main() {
    sotto_client::commands::run_main("sotto", run(Cli::parse()));
}

fn passphrase(confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(p));
    }
    let first = Zeroizing::new(rpassword::prompt_password("passphrase: ").with_context(|| {
        format!("cannot read a passphrase (set {PASSPHRASE_ENV} when there is no terminal)")
    })?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("passphrase again: ")?);
        if *first != *again {
            bail!("the passphrases differ");
        }
        if first.is_empty() {
            bail!("an empty passphrase would leave your keys unprotected");
        }
    }
    Ok(first)
}

/// Opens the profile, asking for the passphrase only when there is one to open.
fn open_profile(dir: &std::path::Path) -> Result<Profile> {
    if !Profile::exists(dir) {
        bail!(
            "no profile in {}: create one with `sotto init --relay ADDR --user NAME`",
            dir.display()
        );
    }
    Profile::open(dir, &passphrase(false)?)
}

async fn run(cli: Cli) -> Result<()> {
    let dir = cli.profile.unwrap_or_else(profile::default_dir);
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Init {
            relay,
            fingerprint,
            user,
        } => {
            let passphrase = passphrase(true)?;
            let args = InitArgs {
                relay: &relay,
                fingerprint: fingerprint.as_deref(),
                user: &user,
            };
            commands::init::run(&dir, args, &passphrase, &mut out).await
        }
        Command::Send {
            group,
            secret,
            expire,
            user,
            text,
        } => {
            // With --group the first positional is the text.
            let (to, text) = match (group, user, text) {
                (Some(g), Some(text), None) if secret => (ConvKey::SecretGroup(g), text),
                (Some(g), Some(text), None) => (ConvKey::Group(g), text),
                (None, Some(u), Some(text)) if secret => (ConvKey::Secret(u), text),
                (None, Some(u), Some(text)) => (ConvKey::Direct(u), text),
                (Some(_), _, _) => bail!("usage: sotto send --group GROUP TEXT"),
                (None, _, _) => bail!("usage: sotto send [--secret] USER TEXT"),
            };
            let text = commands::send::text_from(text, std::io::stdin().lock())?;
            if let Some(reason) = sotto_client::outbox::refusal(&text) {
                bail!("{reason}");
            }
            let expire = expire
                .as_deref()
                .map(sotto_client::secret::parse_timer)
                .transpose()?
                .flatten();
            // While `sotto chat` holds the profile, it sends for us: no passphrase, no vault.
            let request = Request::Send(SendRequest {
                to: to.clone(),
                text: text.clone(),
                expire_secs: expire,
            });
            if commands::send::through_chat(&dir, &request, &mut out).await? {
                return Ok(());
            }
            let mut profile = match open_profile(&dir) {
                Ok(profile) => profile,
                Err(e) if e.is::<ProfileInUse>() => {
                    // A chat client may have started while this one waited.
                    if commands::send::through_chat(&dir, &request, &mut out).await? {
                        return Ok(());
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            match to {
                ConvKey::Secret(user) => {
                    commands::send::run_secret(&mut profile, &user, &text, expire, &mut out).await
                }
                ConvKey::Direct(user) => {
                    commands::send::run(&mut profile, Recipient::User(&user), &text, &mut out).await
                }
                ConvKey::Group(group) => {
                    commands::send::run(&mut profile, Recipient::Group(&group), &text, &mut out)
                        .await
                }
                ConvKey::SecretGroup(group) => {
                    commands::group::send_secret(&mut profile, &group, &text, expire, &mut out)
                        .await
                }
            }
        }
        Command::Group { command } => {
            use commands::group::Change;
            let mut profile = open_profile(&dir)?;
            match command {
                GroupCommand::Create {
                    secret: true,
                    group,
                    members,
                } => commands::group::create_secret(&mut profile, &group, &members, &mut out).await,
                GroupCommand::Create { group, members, .. } => {
                    commands::group::create(&profile, &group, &members, &mut out).await
                }
                GroupCommand::Add { group, members, .. } => {
                    let change = Change::Add(&members);
                    commands::group::change_secret(&mut profile, &group, change, &mut out).await
                }
                GroupCommand::Remove { group, members, .. } => {
                    let change = Change::Remove(&members);
                    commands::group::change_secret(&mut profile, &group, change, &mut out).await
                }
                GroupCommand::Leave { group, .. } => {
                    let change = Change::Leave;
                    commands::group::change_secret(&mut profile, &group, change, &mut out).await
                }
                GroupCommand::Invitations => commands::group::invitations(&profile, &mut out),
                GroupCommand::Accept { group, from, .. } => {
                    let width = sotto_client::output::terminal_width();
                    let from = from.as_deref();
                    commands::group::accept(&mut profile, &group, from, width, &mut out).await
                }
                GroupCommand::Timer {
                    group, duration, ..
                } => {
                    let secs = sotto_client::secret::parse_timer(&duration)?;
                    commands::group::timer(&mut profile, &group, secs, &mut out).await
                }
                GroupCommand::Decline { group, from, .. } => {
                    commands::group::decline(&mut profile, &group, from.as_deref(), &mut out)
                }
            }
        }
        Command::Sync { json } => {
            let mut profile = open_profile(&dir)?;
            let taken = sotto_client::output::stdout_taken;
            let width = sotto_client::output::terminal_width();
            commands::sync::run_to(&mut profile, json, width, &mut out, &taken).await
        }
        Command::Outbox { command } => {
            let mut profile = open_profile(&dir)?;
            match command {
                OutboxCommand::List => commands::outbox::list(&profile, &mut out),
                OutboxCommand::Retry { id } => {
                    commands::outbox::retry(&mut profile, &id, &mut out).await
                }
                OutboxCommand::Drop { id } => commands::outbox::drop(&mut profile, &id, &mut out),
            }
        }
        Command::Chat { secret, user } => {
            use std::io::IsTerminal;
            if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
                bail!(
                    "`sotto chat` needs a terminal (its input and output are not one); \
                     in scripts use `sotto send` and `sotto sync`"
                );
            }
            let profile = open_profile(&dir)?;
            drop(out);
            let open = user.map(|u| {
                if secret {
                    ConvKey::Secret(u)
                } else {
                    ConvKey::Direct(u)
                }
            });
            sotto_client::tui::run(profile, open).await
        }
        Command::SafetyNumber { user } => {
            let mut profile = open_profile(&dir)?;
            commands::verify::safety_number(&mut profile, &user, &mut out).await
        }
        Command::Trust { user, digits } => {
            let mut profile = open_profile(&dir)?;
            commands::verify::trust(&mut profile, &user, digits.as_deref(), &mut out).await
        }
    }
}
