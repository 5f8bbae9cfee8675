//! Sealing at rest: the one function that turns a record into bytes for disk.
//!
//! Invariant: every value the relay writes that holds anything about a person or
//! a message goes through [`Sealer::seal`]. The 256-bit master key (a file with
//! mode 0600, or `SOTTO_MASTER_KEY`) wraps a random data key kept in the store;
//! records are sealed under keys derived from that data key with
//! XChaCha20-Poly1305, a random nonce, and associated data that binds the
//! record's tree and key, so a sealed value cannot be moved to another place.
//! Index keys that would name a person use [`Sealer::blind`] instead of the name.

use std::path::Path;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::store::Tree;

const NONCE_LEN: usize = 24;
const WRAP_AD: &[u8] = b"sotto/1 wrapped data key";
const RECORD_KEY_INFO: &[u8] = b"sotto/1 record key";
const BLIND_KEY_INFO: &[u8] = b"sotto/1 blind key";
const PSEUDONYM_KEY_INFO: &[u8] = b"sotto/1 pseudonym key";

#[derive(Debug, Error)]
pub enum SealError {
    #[error("a sealed record does not open: wrong master key, or the record was altered or moved")]
    Open,
    #[error("the master key must be 64 hex digits (32 bytes)")]
    MasterKeyFormat,
    #[error("cannot read the master key at {path}: {source}")]
    MasterKeyRead {
        path: String,
        source: std::io::Error,
    },
}

/// The operator's 256-bit master key. It never reaches the store; it only wraps the data key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        MasterKey(key)
    }

    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| SealError::MasterKeyFormat)?;
        Ok(MasterKey(key))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0))
    }

    pub fn load(path: &Path) -> Result<Self, SealError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            SealError::MasterKeyRead {
                path: path.display().to_string(),
                source,
            }
        })?);
        Self::from_hex(&text)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }

    /// Wraps a fresh data key; the result is what the store keeps.
    pub fn wrap_new_data_key(&self) -> Vec<u8> {
        let mut data_key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(data_key.as_mut());
        seal_with(&self.cipher(), WRAP_AD, data_key.as_ref())
    }

    /// Unwraps the stored data key into a [`Sealer`].
    pub fn unwrap_data_key(&self, wrapped: &[u8]) -> Result<Sealer, SealError> {
        let data_key = open_with(&self.cipher(), WRAP_AD, wrapped)?;
        let data_key: &[u8; 32] = data_key
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Open)?;
        Ok(Sealer::from_data_key(data_key))
    }
}

/// Seals and opens records, and blinds index keys. Holds only derived keys.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    blind_key: Zeroizing<[u8; 32]>,
    pseudonym_key: Zeroizing<[u8; 32]>,
}

impl Sealer {
    fn from_data_key(data_key: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(None, data_key);
        let mut record_key = Zeroizing::new([0u8; 32]);
        let mut blind_key = Zeroizing::new([0u8; 32]);
        let mut pseudonym_key = Zeroizing::new([0u8; 32]);
        hk.expand(PSEUDONYM_KEY_INFO, pseudonym_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hk.expand(RECORD_KEY_INFO, record_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hk.expand(BLIND_KEY_INFO, blind_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Sealer {
            cipher: XChaCha20Poly1305::new(&(*record_key).into()),
            blind_key,
            pseudonym_key,
        }
    }

    /// Seals `plaintext` for the place (`tree`, `key`) it will be stored at.
    pub fn seal(&self, tree: Tree, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.cipher, &record_ad(tree, key), plaintext)
    }

    /// Opens a value read from (`tree`, `key`).
    pub fn open(
        &self,
        tree: Tree,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        open_with(&self.cipher, &record_ad(tree, key), sealed)
    }

    /// Seals `plaintext` padded to a multiple of [`PAD_BUCKET`] bytes, so the
    /// sealed size tells only which bucket the record falls in.
    pub fn seal_padded(&self, tree: Tree, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.cipher, &padded_ad(tree, key), &pad(plaintext))
    }

    /// Opens a value sealed by [`Sealer::seal_padded`].
    pub fn open_padded(
        &self,
        tree: Tree,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut padded = open_with(&self.cipher, &padded_ad(tree, key), sealed)?;
        unpad(&mut padded)?;
        Ok(padded)
    }

    /// Opens a value sealed padded, or one an older relay sealed without
    /// padding (the associated data tells them apart).
    pub fn open_any(
        &self,
        tree: Tree,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.open_padded(tree, key, sealed)
            .or_else(|_| self.open(tree, key, sealed))
    }

    /// The key warrant pseudonyms are made with (it never leaves the relay):
    /// the warrant desk gets this, not the sealer.
    pub fn pseudonym_key(&self) -> sotto_warrant::PseudonymKey {
        sotto_warrant::PseudonymKey::new(*self.pseudonym_key)
    }

    /// The key of a person's record in `tree`, from their blind: of its own
    /// per tree, so that nobody without the relay's keys can tell which
    /// records in different trees are one person's.
    pub fn tree_key(&self, tree: Tree, user_blind: &[u8; 16]) -> [u8; 16] {
        self.blind(tree.name(), user_blind)
    }

    /// A user's blind: the stand-in for their name in every index and
    /// subject (its domain, `user`, is part of every stored key: never change it).
    pub fn blind_user(&self, username: &str) -> [u8; 16] {
        self.blind("user", username.as_bytes())
    }

    /// A stable, unreadable 16-byte stand-in for `value` in an index key.
    /// `domain` keeps blinds of different kinds of names apart.
    pub fn blind(&self, domain: &str, value: &[u8]) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.blind_key.as_ref())
            .expect("HMAC takes any key length");
        mac.update(&(domain.len() as u32).to_be_bytes());
        mac.update(domain.as_bytes());
        mac.update(value);
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag[..16]);
        out
    }
}

/// Padded records are sealed in multiples of this many bytes.
pub const PAD_BUCKET: usize = 256;

/// `plaintext`'s length (u32, big-endian) ‖ `plaintext` ‖ zeros, to a
/// multiple of [`PAD_BUCKET`].
fn pad(plaintext: &[u8]) -> Zeroizing<Vec<u8>> {
    let len = 4 + plaintext.len();
    let mut out = Zeroizing::new(Vec::with_capacity(len.next_multiple_of(PAD_BUCKET)));
    let n = u32::try_from(plaintext.len()).expect("a record is far below 4 GiB");
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(plaintext);
    out.resize(len.next_multiple_of(PAD_BUCKET), 0);
    out
}

/// Undoes [`pad`] in place.
fn unpad(padded: &mut Zeroizing<Vec<u8>>) -> Result<(), SealError> {
    let len = padded
        .get(..4)
        .map(|n| u32::from_be_bytes(n.try_into().expect("4 bytes")) as usize)
        .ok_or(SealError::Open)?;
    if 4 + len > padded.len() {
        return Err(SealError::Open);
    }
    padded.copy_within(4..4 + len, 0);
    padded.truncate(len);
    Ok(())
}

/// The associated data of a padded value: not that of an unpadded one, so
/// neither opens as the other.
fn padded_ad(tree: Tree, key: &[u8]) -> Vec<u8> {
    let mut ad = record_ad(tree, key);
    ad.extend_from_slice(b"\0padded");
    ad
}

fn record_ad(tree: Tree, key: &[u8]) -> Vec<u8> {
    let name = tree.name().as_bytes();
    let mut ad = Vec::with_capacity(8 + name.len() + key.len());
    ad.extend_from_slice(b"sotto/1\0");
    ad.push(name.len() as u8);
    ad.extend_from_slice(name);
    ad.extend_from_slice(key);
    ad
}

fn seal_with(cipher: &XChaCha20Poly1305, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .expect("XChaCha20-Poly1305 seals any record size the relay accepts");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    ad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < NONCE_LEN {
        return Err(SealError::Open);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        let master = MasterKey::generate();
        master.unwrap_data_key(&master.wrap_new_data_key()).unwrap()
    }

    #[test]
    fn a_record_opens_where_it_was_sealed() {
        let s = sealer();
        let sealed = s.seal(Tree::Messages, b"k1", b"hello");
        assert_eq!(
            s.open(Tree::Messages, b"k1", &sealed).unwrap().as_slice(),
            b"hello"
        );
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn a_record_moved_to_another_key_or_tree_does_not_open() {
        let s = sealer();
        let sealed = s.seal(Tree::Messages, b"k1", b"hello");
        assert!(s.open(Tree::Messages, b"k2", &sealed).is_err());
        assert!(s.open(Tree::Accounts, b"k1", &sealed).is_err());
    }

    #[test]
    fn padded_records_open_whole_and_their_size_tells_only_the_bucket() {
        let sealer = sealer();
        let overhead = sealer.seal(Tree::Messages, b"k", b"").len();
        let mut sizes = std::collections::BTreeSet::new();
        for len in [0, 1, 100, 251, 252, 253, 600, 70_000] {
            let plain = vec![7u8; len];
            let sealed = sealer.seal_padded(Tree::Messages, b"k", &plain);
            assert_eq!((sealed.len() - overhead) % PAD_BUCKET, 0, "{len}");
            sizes.insert(sealed.len());
            let opened = sealer.open_padded(Tree::Messages, b"k", &sealed).unwrap();
            assert_eq!(opened.as_slice(), plain.as_slice());
        }
        // 0..=252 bytes share one bucket; 253 starts the next.
        let small = sealer.seal_padded(Tree::Messages, b"k", &[1; 252]).len();
        assert_eq!(sealer.seal_padded(Tree::Messages, b"k", b"").len(), small);
        assert!(sealer.seal_padded(Tree::Messages, b"k", &[1; 253]).len() > small);
        // A value sealed unpadded never opens as padded (nor the reverse),
        // whatever its first bytes; `open_any` opens both.
        let plain = sealer.seal(Tree::Messages, b"k", &[0, 0, 0, 1, 9, 9]);
        assert!(sealer.open_padded(Tree::Messages, b"k", &plain).is_err());
        assert_eq!(
            sealer
                .open_any(Tree::Messages, b"k", &plain)
                .unwrap()
                .as_slice(),
            [0, 0, 0, 1, 9, 9]
        );
        let padded = sealer.seal_padded(Tree::Messages, b"k", b"new");
        assert!(sealer.open(Tree::Messages, b"k", &padded).is_err());
        assert_eq!(
            sealer
                .open_any(Tree::Messages, b"k", &padded)
                .unwrap()
                .as_slice(),
            b"new"
        );
    }

    #[test]
    fn a_wrong_master_key_does_not_unwrap() {
        let wrapped = MasterKey::generate().wrap_new_data_key();
        assert!(MasterKey::generate().unwrap_data_key(&wrapped).is_err());
    }

    #[test]
    fn blinds_are_stable_and_domain_separated() {
        let s = sealer();
        assert_eq!(s.blind("user", b"alice"), s.blind("user", b"alice"));
        assert_ne!(s.blind("user", b"alice"), s.blind("group", b"alice"));
    }
}
