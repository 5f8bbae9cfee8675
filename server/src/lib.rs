//! The sotto relay.
//!
//! Map of the crate:
//! - [`relay`]: puts the relay together from an opened data directory, starts the QUIC endpoint, stops it;
//! - `state`: the [`RelayState`] every connection shares, one handle per component;
//! - `connection`: one task per connection; moves frames between QUIC streams and handlers;
//! - `session`: one connection's login state and limits;
//! - `handlers`: one file per request kind, each a few lines over the component that owns the rule;
//! - [`accounts`], `groups`: who exists and who is in which group;
//! - [`archive`]: the normal archive (sealed records, indexes, inboxes) and its read-only view;
//! - `writer`: the one thread that writes waiting sends in one batch and flushes (group commit);
//! - `hub`: live pushes to subscribed connections;
//! - `delivery`: which senders learn that their normal messages were delivered (✓✓), and how little they learn;
//! - [`metrics`]: counters and gauges for the operator, served as Prometheus text;
//! - `admission`, `quotas`, `ratelimit`: who may hold a connection, and what an account or address may ask for over time;
//! - `prekeys`: published prekey bundles for secret chats;
//! - `secret_queue`: end-to-end encrypted envelopes until delivered (never history);
//! - [`store`]: the storage trait, its fjall and sled implementations, their conformance suite;
//! - [`seal`]: the one sealing function for data at rest;
//! - [`warrant`]: the warrant desk, which hands the sans-IO `sotto_warrant`
//!   crate the archive's read-only view and nothing else; its grants and audit log;
//! - [`datadir`], [`config`], [`tls`], `files`: the data directory, `relay.toml`, the certificate, private files;
//! - [`admin`]: the admin socket the operator's `sotto-relay warrant …` commands reach the running relay through;
//! - [`migrate`]: copies the data directory's store into the other kind;
//! - [`RelayError`], [`Clock`]: failures inside the relay, and its clock (settable only in tests).
//!
//! Imports run one way: `relay` → `connection` → `handlers` → `state` → components.
//!
//! A normal message flows: client frame → `connection` → `handlers::send_normal`
//! → `writer::Writer` → [`archive::NormalArchive::append_many`] (one sealed
//! segment for every send waiting) → one flush → `Stored` answer to the sender and `hub::Hub` pushes to recipients;
//! recipients not connected get it from their inbox with `Fetch` and move past it with `Ack`.

pub mod accounts;
pub mod admin;
mod admission;
pub mod archive;
mod clock;
pub mod cluster;
pub mod config;
mod connection;
pub mod datadir;
mod delivery;
mod error;
mod files;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod groups;
mod handlers;
pub mod hub;
pub mod metrics;
pub mod migrate;
pub mod prekeys;
mod quotas;
mod ratelimit;
pub mod records;
pub mod relay;
pub mod seal;
mod secret_queue;
/// The secret queue's two backings, for the tests crate's storage suite
/// alone (feature `storage-suites`): a relay build cannot name the queue
/// outside this crate (see `warrant`).
#[cfg(feature = "storage-suites")]
pub mod secret_queue_suite {
    pub use crate::secret_queue::{
        ClusterSecretQueue, Full, GroupQueued, NewGroupSecret, NewSecret, Queued, SecretQueue,
    };
}
mod session;
mod state;
pub mod store;
pub mod tls;
pub mod warrant;
mod writer;

pub use clock::{Clock, now_ms};
pub use config::RelayConfig;
pub use error::RelayError;
pub(crate) use error::failed_with;
pub use relay::{RunningRelay, start};
pub use state::RelayState;
