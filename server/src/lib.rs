//! The sotto relay.
//!
//! Map of the crate:
//! - [`relay`]: starts the QUIC endpoint over an opened data directory, and stops it;
//! - [`connection`]: one task per connection; moves frames between QUIC streams and handlers;
//! - [`handlers`]: one file per request kind; the relay's rules live here;
//! - [`accounts`], [`groups`]: who exists and who is in which group;
//! - [`archive`]: the normal archive (sealed records, indexes, inboxes) and its read-only view;
//! - [`writer`]: the one thread that writes waiting sends in one batch and flushes (group commit);
//! - [`hub`]: live pushes to subscribed connections;
//! - [`prekeys`]: published prekey bundles for secret chats;
//! - `secret_queue`: end-to-end encrypted envelopes until delivered (never history);
//! - [`store`]: the storage trait and its sled implementation;
//! - [`seal`]: the one sealing function for data at rest;
//! - [`warrant`]: warrant and unmask checks, disclosures with pseudonyms (reads only the archive);
//! - [`audit`]: the hash-chained audit log and the transparency report;
//! - [`datadir`], [`config`], [`tls`], [`files`]: the data directory, `relay.toml`, the certificate, private files.
//!
//! A normal message flows: client frame → [`connection`] → `handlers::send_normal`
//! → [`writer::Writer`] → [`archive::NormalArchive::append_many`] (one sealed
//! segment for every send waiting) → one flush → `Stored` answer to the sender and [`hub::Hub`] pushes to recipients;
//! recipients not connected get it from their inbox with `Fetch` and move past it with `Ack`.

pub mod accounts;
pub mod archive;
pub mod audit;
pub mod config;
pub mod connection;
pub mod datadir;
pub mod files;
pub mod grants;
pub mod groups;
pub mod handlers;
pub mod hub;
pub mod prekeys;
pub mod ratelimit;
pub mod records;
pub mod relay;
pub mod seal;
pub(crate) mod secret_queue;
pub mod store;
pub mod tls;
pub mod warrant;
pub mod writer;

pub use config::RelayConfig;
pub use relay::{RelayState, RunningRelay, start};

use thiserror::Error;

/// Failures inside the relay that are not the requester's fault.
#[derive(Debug, Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    #[error("a stored record does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("stored data is damaged: {0}")]
    Corrupt(&'static str),
}

/// The answers of requests whose staged writes failed to apply: every request
/// that staged something fails with the store's error (duplicates found while
/// staging keep their answer: they wrote nothing).
pub(crate) fn failed_with<T>(
    results: Vec<Result<T, RelayError>>,
    error: &store::StoreError,
) -> Vec<Result<T, RelayError>> {
    results
        .into_iter()
        .map(|r| r.and(Err(RelayError::Store(error.clone()))))
        .collect()
}

/// Milliseconds since the Unix epoch, the relay's clock for records.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
