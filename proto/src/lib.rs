//! sotto's wire protocol: the schema, the frame codec, and the protocol's constants.
//!
//! - [`v1`]: the protobuf messages compiled from `proto/sotto.proto` (requests,
//!   responses, pushes, warrants, disclosures);
//! - [`frame`]: a frame is a u32 big-endian length and one protobuf message, with a
//!   hard size limit checked before any body byte is read;
//! - [`names`]: the rules for usernames and group names;
//! - [`printable`]: untrusted text made safe for a terminal (escapes, indented
//!   continuation lines, JSON that escapes C1 and bidi controls too);
//! - [`layout`]: text laid out for a terminal by display width, and the
//!   one-header-a-message listing of `sync` and `open`;
//! - [`fingerprint`]: a relay certificate's `sha256:<hex>` fingerprint, parsed and printed;
//! - [`transcript`]: the exact bytes that logins, prekeys, warrants and disclosures sign.
//!
//! A request flows as: client `Request` → [`frame::write_frame`] on a fresh
//! bidirectional QUIC stream → relay [`frame::read_frame`] → handler →
//! `Response` frame back on the same stream. This crate does no I/O policy and no
//! cryptography; it only says what the bytes are.

pub mod fingerprint;
pub mod frame;
pub mod layout;
pub mod names;
pub mod printable;
pub mod transcript;

/// The generated protobuf types of `proto/sotto.proto`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/sotto.v1.rs"));
}

pub use fingerprint::{Fingerprint, FingerprintError};
pub use frame::{FrameError, read_frame, write_frame};

/// ALPN protocol id of sotto over QUIC.
pub const ALPN: &[u8] = b"sotto/1";

/// Default hard limit for one frame's body, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Longest text of a message, normal or secret, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;

/// Largest secret envelope the relay accepts: a full-size text plus the
/// protocol's overhead. Clients check the text before encrypting, so no
/// ratchet step is spent on a message the relay would refuse.
pub const MAX_SECRET_CIPHERTEXT: usize = MAX_TEXT + 4096;

/// Most items one `Fetch` returns.
pub const MAX_FETCH: u32 = 500;

/// Most message ids one `DeliveryStatus` asks about.
pub const MAX_DELIVERY_QUERY: usize = 128;

/// Length of a client-made message id.
pub const CLIENT_ID_LEN: usize = 16;

/// Length of a login nonce.
pub const NONCE_LEN: usize = 32;

/// Label and length of the TLS exporter secret a login signature is bound to.
pub const LOGIN_EXPORTER_LABEL: &[u8] = b"EXPORTER-sotto/1 login";
pub const LOGIN_EXPORTER_LEN: usize = 32;
