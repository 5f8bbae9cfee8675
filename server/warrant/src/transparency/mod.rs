//! The transparency log's verifiable core, shared by the relay (which keeps
//! the log and signs its heads) and the investigator's tool (which checks
//! receipts): one implementation, so the two cannot disagree.
//!
//! - [`merkle`]: the RFC 9162 tree, inclusion and consistency proofs;
//! - [`head`]: signed tree heads (size, root, time) under the relay's audit key;
//! - [`receipt`]: what an investigator gets with each answer, and its checks.

pub mod head;
pub mod merkle;
pub mod receipt;

pub use head::{HeadError, SignedTreeHead, TreeHead};
pub use merkle::{Hash, ProofError, Tree};
pub use receipt::{Receipt, ReceiptError};
