//! NIST's known answers for ML-KEM-1024, run through the functions sessions
//! use (`kem_key`): key generation from a seed, encapsulation with given
//! randomness, decapsulation (valid and invalid ciphertexts: implicit
//! rejection), and the encapsulation key check a bundle's PQ prekey passes.
//!
//! The vectors in `tests/data/ml-kem-1024-acvp.json` are a few of NIST's
//! ACVP-Server ML-KEM (FIPS 203) vectors, its `source` field says where from.

use serde::Deserialize;
use zeroize::Zeroizing;

use super::E2eError;
use super::kem_key::{self, KemCiphertext, KemKeyPair, KemPublicKey};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ml-kem-1024-acvp.json"
));

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vectors {
    key_gen: Vec<KeyGen>,
    encapsulation: Vec<Encapsulation>,
    decapsulation: Vec<Decapsulation>,
    encapsulation_key_check: Vec<KeyCheck>,
}

#[derive(Deserialize)]
struct KeyGen {
    #[serde(rename = "tcId")]
    tc_id: u32,
    d: String,
    z: String,
    ek: String,
    dk: String,
}

#[derive(Deserialize)]
struct Encapsulation {
    #[serde(rename = "tcId")]
    tc_id: u32,
    ek: String,
    m: String,
    c: String,
    k: String,
}

#[derive(Deserialize)]
struct Decapsulation {
    #[serde(rename = "tcId")]
    tc_id: u32,
    dk: String,
    c: String,
    k: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyCheck {
    #[serde(rename = "tcId")]
    tc_id: u32,
    ek: String,
    test_passed: bool,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).unwrap()
}

fn bytes(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text).unwrap()
}

#[test]
fn key_generation_matches_nist_from_the_seed() {
    let v = vectors();
    assert!(!v.key_gen.is_empty());
    for t in &v.key_gen {
        let mut seed = Zeroizing::new([0u8; kem_key::SEED_LEN]);
        seed[..32].copy_from_slice(&bytes(&t.d));
        seed[32..].copy_from_slice(&bytes(&t.z));
        let pair = KemKeyPair::from_seed(seed);
        assert_eq!(pair.public().as_bytes(), bytes(&t.ek), "tcId {}", t.tc_id);
        assert_eq!(
            pair.private_bytes().as_slice(),
            bytes(&t.dk),
            "tcId {}",
            t.tc_id
        );
    }
}

#[test]
fn encapsulation_matches_nist() {
    let v = vectors();
    assert!(!v.encapsulation.is_empty());
    for t in &v.encapsulation {
        let key = KemPublicKey::from_bytes(&bytes(&t.ek)).unwrap();
        let m: [u8; 32] = bytes(&t.m).try_into().unwrap();
        let (ciphertext, shared) = key.encapsulate_with(&m);
        assert_eq!(ciphertext.as_bytes(), bytes(&t.c), "tcId {}", t.tc_id);
        assert_eq!(shared.as_slice(), bytes(&t.k), "tcId {}", t.tc_id);
    }
}

#[test]
fn decapsulation_matches_nist_including_implicit_rejection() {
    let v = vectors();
    assert!(!v.decapsulation.is_empty());
    for t in &v.decapsulation {
        let ciphertext = KemCiphertext::from_bytes(&bytes(&t.c)).unwrap();
        let shared = kem_key::decapsulate_with_private(&bytes(&t.dk), &ciphertext).unwrap();
        assert_eq!(shared.as_slice(), bytes(&t.k), "tcId {}", t.tc_id);
    }
}

#[test]
fn the_encapsulation_key_check_matches_nist() {
    let v = vectors();
    assert!(v.encapsulation_key_check.iter().any(|t| t.test_passed));
    assert!(v.encapsulation_key_check.iter().any(|t| !t.test_passed));
    for t in &v.encapsulation_key_check {
        let checked = KemPublicKey::from_bytes(&bytes(&t.ek));
        assert_eq!(checked.is_ok(), t.test_passed, "tcId {}", t.tc_id);
        if !t.test_passed {
            assert!(matches!(checked, Err(E2eError::BadKey)));
        }
    }
}

#[test]
fn a_key_pair_kept_in_the_vault_decapsulates_what_its_public_key_encapsulated() {
    let pair = KemKeyPair::generate();
    let stored = serde_json::to_string(&pair).unwrap();
    // Only the 64-byte seed is stored.
    assert_eq!(stored.len(), 2 + 2 * kem_key::SEED_LEN);
    let loaded: KemKeyPair = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded.public().as_bytes(), pair.public().as_bytes());
    let (ciphertext, shared) = pair.public().encapsulate();
    assert_eq!(*loaded.decapsulate(&ciphertext), *shared);
}
