//! sotto's lawful-access core, sans-IO: bytes, a registry and a clock in;
//! checked requests, refusals, disclosures and sealed bundles out.
//!
//! Map of the crate:
//! - [`registry`]: `authorities.toml` parsed into the registered authorities;
//! - [`check`]: a warrant or unmask request verified against the registry,
//!   then checked (relay, validity, window, targets, sizes);
//! - [`window`]: the disclosure window, made only with overflow-free arithmetic;
//! - [`refusal`]: why a request was refused, one stable code each;
//! - [`disclosure`]: the targets' normal records through the read-only
//!   [`NormalRecords`] view, with everyone else as a [`pseudonym`];
//! - [`notice`]: when the people a warrant disclosed are told, and the
//!   authority's signed extensions;
//! - [`grant`]: what the relay remembers of a granted warrant, and what an
//!   unmask request must match;
//! - [`bundle`]: a payload signed by the relay and encrypted to the
//!   investigator's delivery key, sealed and opened;
//! - [`transparency`]: the audit log's RFC 9162 Merkle tree, signed tree
//!   heads and receipts, made by the relay and checked by the investigator.
//!
//! A warrant flows: [`verify_warrant`] (whose signature?) → the relay's
//! budget for that authority → [`check_warrant`] → the relay checks targets
//! exist and the id is new → [`disclose`] over its [`NormalRecords`] →
//! [`bundle::seal`] → the investigator's [`bundle::open`].
//!
//! The boundary: this crate depends on the wire schema and cryptographic
//! primitives only. It cannot name the relay, its store or its secret queue,
//! so the only records it can ever see are those a [`NormalRecords`] hands it.
//! `tests/boundary.rs` reads `cargo metadata` and fails if that changes, and
//! these do not compile:
//!
//! ```compile_fail
//! use sotto_server::RelayError; // the relay is not a dependency
//! ```
//!
//! ```compile_fail
//! let _ = sled::Config::new(); // nor is any storage engine
//! ```

pub mod bundle;
pub mod check;
pub mod disclosure;
pub mod grant;
pub mod notice;
pub mod pseudonym;
pub mod refusal;
pub mod registry;
pub mod transparency;
pub mod window;

pub use bundle::{BundleError, DeliveryKey, Purpose};
pub use check::{
    CheckedUnmask, CheckedWarrant, Limits, Verified, check_unmask, check_warrant, verify_unmask,
    verify_warrant,
};
pub use disclosure::{
    ArchivedRecord, JoinError, NormalRecords, Outcome, disclose, disclose_within, join, split,
};
pub use grant::Grant;
pub use notice::{
    CheckedExtension, MAX_EXTENSIONS, NoticeDelay, check_extension, verify_extension,
};
pub use pseudonym::{PseudonymKey, Pseudonymizer};
pub use refusal::Refusal;
pub use registry::{Authority, AuthorityFile, Registry, RegistryError};
pub use window::Window;
