//! End-to-end encryption for secret chats, sans-IO: bytes and state in, bytes
//! and state out; nothing here touches a socket or a file.
//!
//! - [`x3dh`]: session setup from a prekey bundle (Signal's PQXDH: X3DH plus
//!   ML-KEM-1024, whose keys live in `kem_key`);
//! - `double_ratchet`: the Double Ratchet (Signal's specification), with one
//!   small file per key type: `root_key`, `chain_key`, `message_key`, `ratchet_key`;
//! - [`session`]: the public face: [`Session::initiate`], [`Session::respond`],
//!   [`Session::encrypt`], [`Session::decrypt`];
//! - [`peer`]: every session with one peer (current and previous), and the
//!   base keys of first messages accepted;
//! - [`prekeys`]: this device's prekey secrets;
//! - [`safety`]: safety numbers.
//!
//! Invariants: every key type is zeroized on drop; a message key is used once
//! and then gone; a message that fails to decrypt leaves the session unchanged.

mod chain_key;
mod double_ratchet;
mod header;
pub mod kem_key;
mod message_key;
pub mod peer;
pub mod prekeys;
mod ratchet_key;
mod root_key;
pub mod safety;
pub mod session;
pub mod x3dh;

#[cfg(test)]
mod kem_kat;
#[cfg(test)]
mod tests;

pub use double_ratchet::{MAX_SKIP, MAX_SKIPPED_TOTAL};
pub use peer::{PeerSessions, SeenBaseKeys};
pub use prekeys::LocalPrekeys;
pub use session::Session;
pub use x3dh::{VerifiedBundle, verify_bundle};

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum E2eError {
    #[error("the prekey bundle's signatures do not verify: refusing it")]
    BadBundle,
    #[error(
        "the prekey bundle has no signed post-quantum (ML-KEM-1024) prekey: refusing to fall \
         back to classical X3DH (the relay may have stripped it, or the peer's client is too old)"
    )]
    NoPqPrekey,
    #[error(
        "a first message without post-quantum key agreement (PQXDH) is refused: new sessions \
         are post-quantum only"
    )]
    ClassicalRefused,
    #[error("a key is invalid (low order or malformed)")]
    BadKey,
    #[error("the message is malformed")]
    Malformed,
    #[error("the message does not decrypt: it was altered, or is not for this session")]
    Decrypt,
    #[error("the message was already received (replay) or its key is gone")]
    Replayed,
    #[error("the message is further ahead than {MAX_SKIP} messages: refused")]
    TooFarAhead,
    #[error("the message names a prekey this device does not have (already used?)")]
    UnknownPrekey,
    #[error("this session cannot send until the peer's first message arrives")]
    CannotSendYet,
}
