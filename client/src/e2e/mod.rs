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
//! - [`safety`]: safety numbers;
//! - [`sender_key`]: Sender Keys for secret groups (libsignal's group cipher),
//!   with `sender_chain_key`, `sender_message_key` and `sender_signing_key`;
//!   distributions travel inside the pairwise sessions.
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
mod sender_chain_key;
pub mod sender_key;
mod sender_message_key;
mod sender_signing_key;
pub mod session;
pub mod x3dh;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod kem_kat;
#[cfg(test)]
mod tests;

pub use double_ratchet::{MAX_SKIP, MAX_SKIPPED_TOTAL};
pub use peer::{PeerSessions, SeenBaseKeys};
pub use prekeys::LocalPrekeys;
pub use sender_key::{
    DistributionOutcome, MAX_FORWARD_JUMPS, MAX_MESSAGE_KEYS, MAX_SENDER_KEY_STATES, OwnSenderKey,
    SenderKeyRecord,
};
pub use session::Session;
pub use x3dh::{VerifiedBundle, verify_bundle};

use sender_key::{MAX_GROUP_ID_LEN, SENDER_KEY_VERSION};
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
    #[error(
        "the group message or sender key distribution has version {0}; this client speaks \
         version {SENDER_KEY_VERSION}"
    )]
    UnsupportedGroupVersion(u32),
    #[error("a group id is 1 to {MAX_GROUP_ID_LEN} bytes")]
    BadGroupId,
    #[error("the group message names another group than the one it was given for: refused")]
    WrongGroup,
    #[error(
        "no sender key held for this group message's chain: the sender's distribution has not \
         arrived, was replaced by newer ones, or was never meant for this device"
    )]
    UnknownSenderKey,
    #[error("the group message's signature does not verify: it was forged or altered; refused")]
    GroupSignature,
    #[error(
        "the group message is further ahead than {MAX_FORWARD_JUMPS} messages in its chain: refused"
    )]
    GroupTooFarAhead,
    #[error(
        "the sender key's chain has reached its last iteration: rotate the sender key and send \
         the new distribution"
    )]
    SenderKeyExhausted,
    #[error(
        "a sender key distribution reuses a chain id held with another signing key or \
         distribution id: refused"
    )]
    SenderKeyConflict,
    #[error("this sender key is another member's: it can decrypt, not sign")]
    NotOurSenderKey,
}
