//! The sotto client.
//!
//! Map of the crate:
//! - [`relay`]: the QUIC connection to a relay, one stream per request, pushes;
//! - [`pinning`]: the certificate verifier that trusts exactly the pinned relay;
//! - [`identity`]: the user's Ed25519 identity key and X25519 identity DH key;
//! - [`vault`]: the passphrase-sealed sled store everything local is kept in;
//! - [`profile`]: a profile folder: settings, identity, contacts, history;
//! - [`e2e`]: X3DH and the Double Ratchet, sans-IO;
//! - [`secret`]: secret chats on top of it: sessions, contacts, outbox, timers;
//! - [`secret_group`]: secret groups, sans-IO: membership kept on the members'
//!   devices, sender keys distributed and rotated over the pairwise sessions;
//! - [`delivery`]: ✓✓ on our normal messages, as the relay tells it (pushed, or asked after login);
//! - [`commands`]: what each `sotto` command does;
//! - [`output`]: printing for a reader that may go away (`sync | head`);
//! - [`tui`]: `sotto chat`, the terminal client (ratatui);
//! - [`control`]: the socket through which `sotto send` hands a message to
//!   the running `sotto chat`, the one process that holds the profile.
//!
//! The investigator's tool (`sotto-warrant`) is its own crate,
//! `client/investigator/`, and borrows nothing from this one.
//!
//! `sotto send bob hi` flows: [`profile::Profile::open`] (Argon2id, vault) →
//! [`relay::RelayClient::connect`] (pinned certificate) → login (signature
//! over the relay's nonce and the TLS exporter) → `SendNormal` → the relay's
//! `Stored` once flushed → the message goes into the sealed history. While
//! `sotto chat` runs, `sotto send` instead hands the message to it
//! ([`control::forward`]) and prints its answer.

pub mod commands;
pub mod control;
pub mod delivery;
pub mod e2e;
pub mod identity;
pub mod outbox;
pub mod output;
pub mod pinning;
pub mod profile;
pub mod relay;
pub mod secret;
pub mod secret_group;
pub mod tui;
pub mod vault;
