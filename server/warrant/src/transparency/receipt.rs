//! Receipts: what the relay hands an investigator with every answer, so the
//! relay can be held to having logged it. A receipt is the logged entry (its
//! exact bytes and index), a signed tree head that includes it, the inclusion
//! proof, and the relay's disclosure key's signature over its audit key.
//!
//! Invariant: a [`Receipt`] exists only once all of that checked: the head's
//! signature under the audit key, the audit key's binding by the disclosure
//! key, and the inclusion proof against the head's root. Whether the
//! disclosure key is the relay the warrant names is the caller's check
//! ([`Receipt::disclosure_key`]); whether the relay kept the entry since is
//! [`Receipt::check_later_head`]'s.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sotto_proto::v1;
use thiserror::Error;

use super::head::{HeadError, SignedTreeHead};
use super::merkle::{Hash, ProofError, leaf_hash, verify_consistency, verify_inclusion};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("the receipt is incomplete or malformed: {0}")]
    Malformed(&'static str),
    #[error("the receipt's tree head: {0}")]
    Head(#[from] HeadError),
    #[error("the relay's disclosure key did not vouch for the audit key that signed the receipt")]
    UnboundAuditKey,
    #[error("the receipt's entry is not in the tree its head signs: {0}")]
    NotIncluded(ProofError),
    #[error("the later head was signed by another audit key (another relay?)")]
    OtherLog,
    #[error(
        "the later head covers {later} entries, fewer than the receipt's {earlier}: the log was truncated, or the head is older"
    )]
    LaterHeadIsSmaller { earlier: u64, later: u64 },
    #[error("the later head's log does not extend the receipt's: the log was rewritten ({0})")]
    Inconsistent(ProofError),
}

/// What the disclosure key signs to vouch for the audit key.
pub fn bind_audit_key(disclosure_key: &SigningKey, audit_key: &VerifyingKey) -> Signature {
    disclosure_key.sign(&sotto_proto::transcript::audit_key(audit_key.as_bytes()))
}

/// A receipt whose head, key binding and inclusion proof all checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    index: u64,
    entry: Vec<u8>,
    head: SignedTreeHead,
    inclusion: Vec<Hash>,
    disclosure_key: VerifyingKey,
    binding: Signature,
}

impl Receipt {
    /// The relay's side: a receipt for entry `index` (`entry`, its exact bytes)
    /// in `head`'s tree, with its inclusion proof.
    pub fn issue(
        index: u64,
        entry: Vec<u8>,
        head: SignedTreeHead,
        inclusion: Vec<Hash>,
        disclosure_key: &SigningKey,
    ) -> v1::Receipt {
        let binding = bind_audit_key(disclosure_key, head.key());
        v1::Receipt {
            index,
            entry: entry.into(),
            head: Some(head.to_proto()),
            inclusion: inclusion.iter().map(|h| h.to_vec().into()).collect(),
            disclosure_key: disclosure_key.verifying_key().as_bytes().to_vec().into(),
            key_binding: binding.to_bytes().to_vec().into(),
        }
    }

    /// Checks every part of a receipt as it arrived.
    pub fn verify(receipt: &v1::Receipt) -> Result<Self, ReceiptError> {
        let head = SignedTreeHead::from_proto(
            receipt
                .head
                .as_ref()
                .ok_or(ReceiptError::Malformed("no tree head"))?,
        )?;
        let disclosure_key = receipt
            .disclosure_key
            .as_ref()
            .try_into()
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(b).ok())
            .ok_or(ReceiptError::Malformed("no disclosure key"))?;
        let binding = receipt
            .key_binding
            .as_ref()
            .try_into()
            .map(Signature::from_bytes)
            .map_err(|_| ReceiptError::Malformed("no key binding"))?;
        if disclosure_key.is_weak() {
            return Err(ReceiptError::UnboundAuditKey);
        }
        disclosure_key
            .verify_strict(
                &sotto_proto::transcript::audit_key(head.key().as_bytes()),
                &binding,
            )
            .map_err(|_| ReceiptError::UnboundAuditKey)?;
        let inclusion = receipt
            .inclusion
            .iter()
            .map(|h| h.as_ref().try_into())
            .collect::<Result<Vec<Hash>, _>>()
            .map_err(|_| ReceiptError::Malformed("an inclusion hash is not 32 bytes"))?;
        verify_inclusion(
            receipt.index,
            head.size(),
            &leaf_hash(&receipt.entry),
            &inclusion,
            head.root(),
        )
        .map_err(ReceiptError::NotIncluded)?;
        Ok(Receipt {
            index: receipt.index,
            entry: receipt.entry.to_vec(),
            head,
            inclusion,
            disclosure_key,
            binding,
        })
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    /// The logged entry, exactly as the relay logged it.
    pub fn entry(&self) -> &[u8] {
        &self.entry
    }

    pub fn head(&self) -> &SignedTreeHead {
        &self.head
    }

    /// The relay disclosure key that vouched for the audit key.
    pub fn disclosure_key(&self) -> &VerifyingKey {
        &self.disclosure_key
    }

    /// Checks that `later` (a head published since) still holds this
    /// receipt's entry: same audit key, no smaller, and `proof` (the relay's
    /// consistency proof from this receipt's head to it) checks.
    pub fn check_later_head(
        &self,
        later: &SignedTreeHead,
        proof: &[Hash],
    ) -> Result<(), ReceiptError> {
        if later.key() != self.head.key() {
            return Err(ReceiptError::OtherLog);
        }
        if later.size() < self.head.size() {
            return Err(ReceiptError::LaterHeadIsSmaller {
                earlier: self.head.size(),
                later: later.size(),
            });
        }
        verify_consistency(
            self.head.size(),
            later.size(),
            self.head.root(),
            later.root(),
            proof,
        )
        .map_err(ReceiptError::Inconsistent)
    }

    pub fn to_proto(&self) -> v1::Receipt {
        v1::Receipt {
            index: self.index,
            entry: self.entry.clone().into(),
            head: Some(self.head.to_proto()),
            inclusion: self.inclusion.iter().map(|h| h.to_vec().into()).collect(),
            disclosure_key: self.disclosure_key.as_bytes().to_vec().into(),
            key_binding: self.binding.to_bytes().to_vec().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transparency::head::TreeHead;
    use crate::transparency::merkle::Tree;

    fn log(entries: &[&str]) -> Tree {
        let mut tree = Tree::new();
        for e in entries {
            tree.push(e.as_bytes());
        }
        tree
    }

    fn receipt_for(tree: &Tree, index: u64, entry: &str, audit: &SigningKey) -> v1::Receipt {
        let size = tree.len();
        let head = TreeHead {
            size,
            root: tree.root(size).unwrap(),
            time_ms: 1,
        }
        .sign(audit);
        Receipt::issue(
            index,
            entry.as_bytes().to_vec(),
            head,
            tree.inclusion_proof(index, size).unwrap(),
            &SigningKey::from_bytes(&[7; 32]),
        )
    }

    #[test]
    fn a_receipt_checks_and_a_later_head_that_kept_the_entry_passes() {
        let audit = SigningKey::from_bytes(&[1; 32]);
        let mut tree = log(&["a", "b", "c"]);
        let receipt = Receipt::verify(&receipt_for(&tree, 1, "b", &audit)).unwrap();
        tree.push(b"d");
        let later = TreeHead {
            size: 4,
            root: tree.root(4).unwrap(),
            time_ms: 2,
        }
        .sign(&audit);
        receipt
            .check_later_head(&later, &tree.consistency_proof(3, 4).unwrap())
            .unwrap();
    }

    #[test]
    fn a_curious_operator_who_rewrites_an_entry_is_caught_by_a_receipt() {
        let audit = SigningKey::from_bytes(&[1; 32]);
        let honest = log(&["a", "refused", "c"]);
        let receipt = Receipt::verify(&receipt_for(&honest, 1, "refused", &audit)).unwrap();
        let rewritten = log(&["a", "granted", "c", "d"]);
        let later = TreeHead {
            size: 4,
            root: rewritten.root(4).unwrap(),
            time_ms: 2,
        }
        .sign(&audit);
        assert!(matches!(
            receipt.check_later_head(&later, &rewritten.consistency_proof(3, 4).unwrap()),
            Err(ReceiptError::Inconsistent(_))
        ));
        // Truncated back to before the entry: caught too.
        let truncated = TreeHead {
            size: 1,
            root: honest.root(1).unwrap(),
            time_ms: 3,
        }
        .sign(&audit);
        assert!(matches!(
            receipt.check_later_head(&truncated, &[]),
            Err(ReceiptError::LaterHeadIsSmaller { .. })
        ));
    }

    #[test]
    fn a_receipt_for_another_entry_or_with_an_unbound_key_is_refused() {
        let audit = SigningKey::from_bytes(&[1; 32]);
        let tree = log(&["a", "b", "c"]);
        let mut wrong_entry = receipt_for(&tree, 1, "b", &audit);
        wrong_entry.entry = b"B".to_vec().into();
        assert!(matches!(
            Receipt::verify(&wrong_entry),
            Err(ReceiptError::NotIncluded(_))
        ));
        let mut unbound = receipt_for(&tree, 1, "b", &audit);
        unbound.disclosure_key = SigningKey::from_bytes(&[8; 32])
            .verifying_key()
            .as_bytes()
            .to_vec()
            .into();
        assert_eq!(
            Receipt::verify(&unbound),
            Err(ReceiptError::UnboundAuditKey)
        );
    }
}
