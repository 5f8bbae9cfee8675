//! Signed tree heads: (size, root, time) signed by the relay's audit key,
//! as the relay keeps and publishes them (one JSON line) and as receipts carry
//! them (`v1::TreeHead`).
//!
//! Invariant: a [`SignedTreeHead`] is only ever made by signing or by
//! [`SignedTreeHead::parse`]/[`SignedTreeHead::from_proto`], which check the
//! signature under the key it names; whether that key is the right relay's
//! is the caller's question ([`SignedTreeHead::key`]).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sotto_proto::v1;
use thiserror::Error;

use super::merkle::Hash;

/// What a tree head says: the root of the log's first `size` entries at `time_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
    /// Milliseconds since the epoch.
    pub time_ms: i64,
}

/// A tree head with a valid signature of the audit key it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTreeHead {
    head: TreeHead,
    signature: Signature,
    key: VerifyingKey,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeadError {
    #[error("not a signed tree head: {0}")]
    Malformed(String),
    #[error("the tree head's signature does not verify under the key it names")]
    BadSignature,
}

/// The published form: one JSON object, hashes and keys in hex.
#[derive(Serialize, Deserialize)]
struct HeadJson {
    size: u64,
    root: String,
    time: i64,
    signature: String,
    key: String,
}

impl TreeHead {
    pub fn sign(self, audit_key: &SigningKey) -> SignedTreeHead {
        let signature = audit_key.sign(&self.transcript());
        SignedTreeHead {
            head: self,
            signature,
            key: audit_key.verifying_key(),
        }
    }

    fn transcript(&self) -> Vec<u8> {
        sotto_proto::transcript::tree_head(self.size, &self.root, self.time_ms)
    }
}

fn bytes<const N: usize>(what: &str, b: &[u8]) -> Result<[u8; N], HeadError> {
    b.try_into()
        .map_err(|_| HeadError::Malformed(format!("its {what} is not {N} bytes")))
}

impl SignedTreeHead {
    /// Checks `signature` over `head` under `key`.
    pub fn new(head: TreeHead, signature: &[u8], key: &[u8]) -> Result<Self, HeadError> {
        let key = VerifyingKey::from_bytes(&bytes("key", key)?)
            .map_err(|_| HeadError::Malformed("its key is not an Ed25519 key".into()))?;
        // A weak (small-order) key would let anyone sign any head under it.
        if key.is_weak() {
            return Err(HeadError::Malformed("its key is a weak Ed25519 key".into()));
        }
        let signature = Signature::from_bytes(&bytes("signature", signature)?);
        key.verify_strict(&head.transcript(), &signature)
            .map_err(|_| HeadError::BadSignature)?;
        Ok(SignedTreeHead {
            head,
            signature,
            key,
        })
    }

    pub fn head(&self) -> &TreeHead {
        &self.head
    }

    pub fn size(&self) -> u64 {
        self.head.size
    }

    pub fn root(&self) -> &Hash {
        &self.head.root
    }

    /// The audit key that signed it.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// One JSON line: `size`, `root`, `time` (ms), `signature`, `key`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&HeadJson {
            size: self.head.size,
            root: hex::encode(self.head.root),
            time: self.head.time_ms,
            signature: hex::encode(self.signature.to_bytes()),
            key: hex::encode(self.key.as_bytes()),
        })
        .unwrap_or_default()
    }

    /// Reads what [`SignedTreeHead::to_json`] wrote, and checks its signature.
    pub fn parse(text: &str) -> Result<Self, HeadError> {
        let json: HeadJson =
            serde_json::from_str(text.trim()).map_err(|e| HeadError::Malformed(e.to_string()))?;
        let unhex = |what: &str, s: &str| {
            hex::decode(s).map_err(|_| HeadError::Malformed(format!("its {what} is not hex")))
        };
        let head = TreeHead {
            size: json.size,
            root: bytes("root", &unhex("root", &json.root)?)?,
            time_ms: json.time,
        };
        Self::new(
            head,
            &unhex("signature", &json.signature)?,
            &unhex("key", &json.key)?,
        )
    }

    pub fn to_proto(&self) -> v1::TreeHead {
        v1::TreeHead {
            size: self.head.size,
            root: self.head.root.to_vec().into(),
            time: self.head.time_ms,
            signature: self.signature.to_bytes().to_vec().into(),
            key: self.key.as_bytes().to_vec().into(),
        }
    }

    pub fn from_proto(head: &v1::TreeHead) -> Result<Self, HeadError> {
        Self::new(
            TreeHead {
                size: head.size,
                root: bytes("root", &head.root)?,
                time_ms: head.time,
            },
            &head.signature,
            &head.key,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn head() -> TreeHead {
        TreeHead {
            size: 7,
            root: [9; 32],
            time_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_head_round_trips_as_json_and_protobuf() {
        let signed = head().sign(&key(1));
        assert_eq!(SignedTreeHead::parse(&signed.to_json()).unwrap(), signed);
        assert_eq!(
            SignedTreeHead::from_proto(&signed.to_proto()).unwrap(),
            signed
        );
    }

    #[test]
    fn a_forged_head_is_refused() {
        // Someone changes the size (or root) of a published head and keeps the signature.
        let signed = head().sign(&key(1));
        let mut proto = signed.to_proto();
        proto.size = 6;
        assert_eq!(
            SignedTreeHead::from_proto(&proto),
            Err(HeadError::BadSignature)
        );
        // A head signed by another key claims the relay's key.
        let mut forged = head().sign(&key(2)).to_proto();
        forged.key = signed.to_proto().key;
        assert_eq!(
            SignedTreeHead::from_proto(&forged),
            Err(HeadError::BadSignature)
        );
        assert!(matches!(
            SignedTreeHead::parse("{\"size\":1}"),
            Err(HeadError::Malformed(_))
        ));
    }
}

#[cfg(test)]
mod weak_keys {
    use super::*;

    /// Found in review: with the identity point as the key, the signature
    /// (R = identity, s = 0) passed a lax check for any message.
    #[test]
    fn a_small_order_audit_key_cannot_vouch_for_any_head() {
        let mut key = [0u8; 32];
        key[0] = 1;
        let mut sig = [0u8; 64];
        sig[0] = 1;
        for size in [1u64, 1_000_000] {
            let head = TreeHead {
                size,
                root: [size as u8; 32],
                time_ms: 5,
            };
            assert!(SignedTreeHead::new(head, &sig, &key).is_err());
        }
    }
}
