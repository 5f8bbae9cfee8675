//! The RFC 9162 (Certificate Transparency 2.0) Merkle tree over SHA-256: leaf
//! `H(0x00 ‖ entry)`, node `H(0x01 ‖ left ‖ right)`, the empty tree `H("")`;
//! inclusion proofs (§2.1.3) and consistency proofs (§2.1.4), made and checked.
//!
//! Invariant: [`Tree`] keeps the hash of every complete, aligned subtree
//! (`levels[k][i]` covers leaves `i·2^k .. (i+1)·2^k`), so the root of any
//! earlier size and any proof take O(log² n) hashes, never a pass over the log.
//! The verifiers are the RFC's algorithms step for step, with the edge cases
//! as transparency-dev/merkle decides them: equal sizes need an empty proof
//! and equal roots; a proof from the empty tree proves nothing and is refused.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 hash of a leaf, a node or a whole tree.
pub type Hash = [u8; 32];

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// The hash of a log entry, as a leaf.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([LEAF_PREFIX])
        .chain_update(entry)
        .finalize()
        .into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([NODE_PREFIX])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the tree with no leaves.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof was not made or did not check.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProofError {
    #[error("entry {index} is not in a tree of {size} entries")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a tree of {second} entries cannot extend one of {first}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    FromEmptyTree,
    #[error("the log holds {held} entries; a tree of {size} was asked for")]
    TreeTooSmall { size: u64, held: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the root it should")]
    RootMismatch,
}

/// The largest power of two smaller than `n` (for `n >= 2`): where RFC 9162 splits.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only tree of leaf hashes, with every complete subtree's hash kept.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new() -> Self {
        Tree::default()
    }

    /// How many leaves the tree holds.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends an entry (its leaf hash).
    pub fn push(&mut self, entry: &[u8]) {
        self.push_leaf_hash(leaf_hash(entry));
    }

    /// Appends a leaf by its hash, completing every subtree it closes.
    pub fn push_leaf_hash(&mut self, hash: Hash) {
        let mut hash = hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if !row.len().is_multiple_of(2) {
                return;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// The leaf hash of entry `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// The root of the tree's first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(if size == 0 {
            empty_root()
        } else {
            self.subtree(0, size)
        })
    }

    /// RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    /// RFC 9162 §2.1.4.1: the proof that the tree of `second` leaves extends the one of `first`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(second)?;
        if first > second {
            return Err(ProofError::SizesOutOfOrder { first, second });
        }
        let mut proof = Vec::new();
        if first > 0 && first < second {
            self.subproof(first, 0, second, true, &mut proof);
        }
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.len() {
            return Err(ProofError::TreeTooSmall {
                size,
                held: self.len(),
            });
        }
        Ok(())
    }

    /// MTH of leaves `start..end` (non-empty; `start` aligned as RFC 9162's splits leave it).
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(start / n) as usize];
        }
        let k = split(n);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// PATH(m, D[start:end]), deepest hash first.
    fn path(&self, m: u64, start: u64, end: u64, proof: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, proof);
            proof.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, proof);
            proof.push(self.subtree(start, start + k));
        }
    }

    /// SUBPROOF(m, D[start:end], b).
    fn subproof(&self, m: u64, start: u64, end: u64, whole: bool, proof: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, proof);
            proof.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, proof);
            proof.push(self.subtree(start, start + k));
        }
    }
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is entry `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `second` leaves (root `second_root`)
/// extends the tree of `first` leaves (root `first_root`).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    if first == second {
        // Nothing to prove but that both name the same tree.
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Straight from RFC 9162's definition of MTH, for comparison.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn tree_of(n: u64) -> (Tree, Vec<Vec<u8>>) {
        let mut tree = Tree::new();
        let entries: Vec<Vec<u8>> = (0..n).map(|i| format!("entry {i}").into_bytes()).collect();
        for e in &entries {
            tree.push(e);
        }
        (tree, entries)
    }

    #[test]
    fn every_root_matches_the_definition_up_to_64_leaves() {
        let (tree, entries) = tree_of(64);
        let hashes: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        for size in 0..=64 {
            assert_eq!(
                tree.root(size).unwrap(),
                reference_root(&hashes[..size as usize])
            );
        }
    }

    #[test]
    fn a_tree_cannot_prove_what_it_does_not_hold() {
        let (tree, _) = tree_of(5);
        assert!(matches!(tree.root(6), Err(ProofError::TreeTooSmall { .. })));
        assert!(tree.inclusion_proof(5, 5).is_err());
        assert!(tree.consistency_proof(4, 3).is_err());
        assert!(tree.consistency_proof(3, 6).is_err());
    }

    #[test]
    fn inclusion_and_consistency_hold_for_every_pair_of_sizes_up_to_64() {
        let (tree, _) = tree_of(64);
        for size in 1..=64 {
            let root = tree.root(size).unwrap();
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                let leaf = tree.leaf(index).unwrap();
                verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
            }
            for first in 1..=size {
                let proof = tree.consistency_proof(first, size).unwrap();
                verify_consistency(first, size, &tree.root(first).unwrap(), &root, &proof).unwrap();
            }
        }
    }

    proptest! {
        #[test]
        fn a_changed_leaf_fails_its_inclusion_proof(
            size in 1u64..=64, index in 0u64..64, other in 0u64..64, bit in 0usize..256,
        ) {
            let (tree, _) = tree_of(64);
            let index = index % size;
            let root = tree.root(size).unwrap();
            let proof = tree.inclusion_proof(index, size).unwrap();
            let mut leaf = tree.leaf(index).unwrap();
            leaf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_err());
            // The right leaf at another index does not check either.
            let other = other % size;
            let right = tree.leaf(index).unwrap();
            if other != index {
                prop_assert!(verify_inclusion(other, size, &right, &proof, &root).is_err());
            }
        }

        #[test]
        fn a_rewritten_history_has_no_consistency_proof(
            second in 2u64..=64, first in 1u64..64, edited in 0u64..64, bit in 0usize..256,
        ) {
            // The operator changes one entry among the first `first` and
            // rebuilds the tree: no proof from the honest tree's root to the
            // rebuilt one exists, and its own proofs do not check.
            let first = 1 + (first - 1) % (second - 1);
            let edited = edited % first;
            let (honest, entries) = tree_of(64);
            let mut rewritten = Tree::new();
            for (i, e) in entries.iter().enumerate() {
                let mut e = e.clone();
                if i as u64 == edited {
                    let at = (bit / 8) % e.len();
                    e[at] ^= 1 << (bit % 8);
                }
                rewritten.push(&e);
            }
            let published = honest.root(first).unwrap();
            let now = rewritten.root(second).unwrap();
            let proof = rewritten.consistency_proof(first, second).unwrap();
            prop_assert!(verify_consistency(first, second, &published, &now, &proof).is_err());
            let honest_proof = honest.consistency_proof(first, second).unwrap();
            prop_assert!(verify_consistency(first, second, &published, &now, &honest_proof).is_err());
        }

        #[test]
        fn a_flipped_bit_in_a_consistency_proof_fails(
            second in 2u64..=64, first in 1u64..64, pick in 0usize..64, bit in 0usize..256,
        ) {
            let first = 1 + (first - 1) % (second - 1);
            let (tree, _) = tree_of(64);
            let mut proof = tree.consistency_proof(first, second).unwrap();
            let at = pick % proof.len();
            proof[at][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(
                first, second, &tree.root(first).unwrap(), &tree.root(second).unwrap(), &proof
            ).is_err());
        }
    }
}
