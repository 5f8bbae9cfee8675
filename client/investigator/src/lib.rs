//! The investigator's side of sotto's warrant flow, behind `sotto-warrant`.
//!
//! Map of the crate:
//! - [`keys`]: the authority's signing key and the delivery key, in a folder;
//!   signing warrants and unmask requests, opening the bundles answering them;
//! - [`issue`]: a warrant from what was typed, checked (`--relay-key`, times, targets);
//! - [`warrant_file`]: a signed warrant as a `sotto-warrant/1` file;
//! - [`relay`]: the QUIC connection to a relay, its certificate pinned;
//! - [`requests`]: the typed requests: [`submit_warrant`], [`collect_warrant`], [`unmask`];
//! - [`receipts`]: the relay's receipts for its answers, checked and kept
//!   in the key folder, and checked again against a head published later;
//! - [`show`]: warrants and disclosures for a person or as JSON;
//! - [`display`]: untrusted text made safe for a terminal;
//! - [`files`]: atomic, owner-only writes; bundles never over an existing file;
//! - [`error`]: what can go wrong, as [`InvestigatorError`].
//!
//! A warrant flows: [`issue::draft`] → [`InvestigatorKeys::sign_warrant`] →
//! [`WarrantFile::save`] → … → [`RelayConnection::connect`] (pinned) →
//! [`submit_warrant`] → a sealed bundle → [`InvestigatorKeys::open_disclosure`]
//! (the relay's signature, pinned to the warrant's relay key, then decrypted).
//!
//! This crate borrows nothing from the messenger (`sotto-client`): it shares
//! only the wire schema (`sotto-proto`) and the warrant core (`sotto-warrant`,
//! whose [`sotto_warrant::bundle`] seals on the relay what is opened here).

pub mod display;
pub mod error;
pub mod files;
pub mod issue;
pub mod keys;
pub mod receipts;
pub mod relay;
pub mod requests;
pub mod show;
pub mod warrant_file;

pub use error::InvestigatorError;
pub use keys::{InvestigatorKeys, OpenedDisclosure};
pub use relay::RelayConnection;
pub use requests::{
    Answered, collect_delivery, collect_warrant, extend_notice, new_extension, new_unmask_request,
    submit_warrant, unmask,
};
pub use warrant_file::{WarrantFile, relay_key_of};
