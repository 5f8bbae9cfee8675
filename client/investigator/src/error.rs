//! What can go wrong for an investigator, in sentences that say what to do.
//! Text that came from a file or from the relay may be anything: whoever
//! prints these errors passes them through [`crate::display::printable`].

use std::path::PathBuf;

use sotto_proto::Fingerprint;
use sotto_proto::frame::FrameError;
use sotto_proto::v1::ErrorCode;
use sotto_warrant::BundleError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InvestigatorError {
    #[error("no investigator keys in {}: make them with `sotto-warrant keygen --out DIR`", .dir.display())]
    NoKeys { dir: PathBuf },
    #[error("{} holds keys already; choose another folder", .dir.display())]
    KeysExist { dir: PathBuf },
    #[error("{}: {reason}", .path.display())]
    Io {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{} is damaged ({what})", .path.display())]
    Damaged { path: PathBuf, what: String },
    #[error("{} exists already: choose another --out (a bundle is never overwritten)", .path.display())]
    Exists { path: PathBuf },
    /// Bad input to a command: the sentence says which and why.
    #[error("{0}")]
    Input(String),

    #[error("cannot resolve relay address {0:?}")]
    Address(String),
    #[error(
        "the relay at {addr} presented certificate {actual}, not the pinned {expected}: \
         refusing to talk to it (compare --fingerprint with the `fingerprint` line the relay's operator published)"
    )]
    PinMismatch {
        addr: String,
        expected: Fingerprint,
        actual: Fingerprint,
    },
    #[error("cannot connect to the relay at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to the relay lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("cannot talk to the relay: {0}")]
    Stream(String),
    #[error(transparent)]
    Frame(#[from] FrameError),

    /// The relay refused a warrant or an unmask request. `refusal` is its
    /// stable code (`wrong_relay`, `expired`, `not_disclosed`, ...).
    #[error("the relay refused ({refusal}): {message}")]
    Refused { refusal: String, message: String },
    /// The relay answered with an error that is not a refusal of the request
    /// itself (a malformed frame, an internal failure).
    #[error("the relay could not serve the request ({}): {message}", .code.as_str_name())]
    Failed { code: ErrorCode, message: String },
    /// A receipt that does not prove what it should: the relay logged
    /// something else, or nothing it can be held to.
    #[error("the relay's receipt does not check: {0}")]
    Receipt(String),
    #[error("the relay sent something unexpected: {0}")]
    Protocol(String),

    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A bundle that opened and verified, but does not answer what was asked.
    #[error("the relay's answer does not match the request: {0}")]
    Mismatch(String),
}

impl InvestigatorError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |reason| InvestigatorError::Io { path, reason }
    }

    pub(crate) fn damaged(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        InvestigatorError::Damaged {
            path: path.into(),
            what: what.into(),
        }
    }

    /// The refusal code, when the relay refused.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            InvestigatorError::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}
