//! The transparency log's Merkle tree against the reference vectors: the RFC
//! 6962 test leaves and roots (transparency-dev/merkle `testonly/constants.go`
//! and `cmd/proofgen/main.go`, commit 417fb0c3), and every inclusion and
//! consistency probe of that repository's `testdata/` (copied to
//! `tests/data/transparency-dev/`, see its README), good and bad.

use std::path::Path;

use serde_json::Value;
use sha2::Digest;
use sotto_warrant::transparency::merkle::{
    Hash, Tree, empty_root, leaf_hash, verify_consistency, verify_inclusion,
};

/// The RFC 6962 reference leaves (transparency-dev/merkle `testonly.LeafInputs`).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of 1..=8 of those leaves (`testonly.RootHashes`).
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(hex: &str) -> Hash {
    hex::decode(hex).unwrap().try_into().unwrap()
}

fn reference_tree() -> Tree {
    let mut tree = Tree::new();
    for leaf in LEAVES {
        tree.push(&hex::decode(leaf).unwrap());
    }
    tree
}

#[test]
fn roots_of_the_rfc_6962_leaves() {
    let tree = reference_tree();
    assert_eq!(
        tree.root(0).unwrap(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(tree.root(0).unwrap(), empty_root());
    for (size, root) in ROOTS.iter().enumerate() {
        assert_eq!(
            tree.root(size as u64 + 1).unwrap(),
            h(root),
            "size {}",
            size + 1
        );
    }
    assert_eq!(tree.leaf(0).unwrap(), leaf_hash(b""));
}

#[test]
fn proofs_made_match_the_reference_proofs() {
    // `cmd/proofgen/main.go`: inclusionProofs (leaf numbers there start at 1)
    // and consistencyProofs.
    let tree = reference_tree();
    let inclusion: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            3,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            2,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (leaf, size, proof) in inclusion {
        let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(
            tree.inclusion_proof(leaf - 1, *size).unwrap(),
            want,
            "leaf {leaf} of {size}"
        );
    }
    let consistency: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (first, second, proof) in consistency {
        let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(
            tree.consistency_proof(*first, *second).unwrap(),
            want,
            "{first} to {second}"
        );
    }
}

/// Standard base64 (with padding), as Go's encoding/json writes `[]byte`.
fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A leaf hash or proof hash: anything but 32 bytes cannot even be passed
/// to the typed verifiers, so the probe is refused (as the Go verifier
/// refuses it by length).
fn hash(value: &Value) -> Option<Hash> {
    base64(value.as_str().unwrap_or("")).try_into().ok()
}

/// A root. Some probes use strings of other lengths ("don't care", a root
/// with garbage before it) that the Go verifier only compares: they stand for
/// some hash other than every real one, keeping equalities and differences.
fn root(value: &Value) -> Option<Hash> {
    let bytes = base64(value.as_str().unwrap_or(""));
    Some(
        bytes
            .clone()
            .try_into()
            .unwrap_or_else(|_| sha2::Sha256::digest(&bytes).into()),
    )
}

fn proof(value: &Value) -> Option<Vec<Hash>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(hash).collect(),
        _ => panic!("a proof is a list"),
    }
}

fn probes(kind: &str) -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transparency-dev");
    let mut found = Vec::new();
    let mut dirs = vec![root.join(kind)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((
                    path.display().to_string(),
                    serde_json::from_str(&text).unwrap(),
                ));
            }
        }
    }
    assert!(found.len() > 50, "the {kind} vectors are missing");
    found
}

#[test]
fn every_reference_inclusion_probe_is_decided_as_it_should_be() {
    for (file, p) in probes("inclusion") {
        let index = p["leafIdx"].as_u64().unwrap();
        let size = p["treeSize"].as_u64().unwrap();
        let checked = match (root(&p["root"]), hash(&p["leafHash"]), proof(&p["proof"])) {
            (Some(root), Some(leaf), Some(proof)) => {
                verify_inclusion(index, size, &leaf, &proof, &root).is_ok()
            }
            _ => false,
        };
        assert_eq!(
            checked,
            !p["wantErr"].as_bool().unwrap(),
            "{file}: {}",
            p["desc"]
        );
    }
}

#[test]
fn every_reference_consistency_probe_is_decided_as_it_should_be() {
    for (file, p) in probes("consistency") {
        let first = p["size1"].as_u64().unwrap();
        let second = p["size2"].as_u64().unwrap();
        let checked = match (root(&p["root1"]), root(&p["root2"]), proof(&p["proof"])) {
            (Some(r1), Some(r2), Some(proof)) => {
                verify_consistency(first, second, &r1, &r2, &proof).is_ok()
            }
            _ => false,
        };
        assert_eq!(
            checked,
            !p["wantErr"].as_bool().unwrap(),
            "{file}: {}",
            p["desc"]
        );
    }
}
