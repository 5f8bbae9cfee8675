//! A message key: used once, for one message, then dropped (and zeroized).
//! The AEAD key and nonce come from HKDF-SHA256 over it, so no nonce is ever
//! reused under a key.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// HKDF info for the AEAD key and nonce of one message.
const MESSAGE_KEYS_INFO: &[u8] = b"sotto/1 message keys";

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(super) struct MessageKey([u8; 32]);

impl MessageKey {
    pub(super) fn new(bytes: [u8; 32]) -> Self {
        MessageKey(bytes)
    }

    /// The raw key, for keeping it among the skipped keys.
    pub(super) fn bytes(&self) -> [u8; 32] {
        self.0
    }

    pub(super) fn encrypt(self, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal(&self.0, MESSAGE_KEYS_INFO, ad, plaintext)
    }

    /// Decrypts; the key is consumed either way only by the caller's choice:
    /// this borrows it so a failed attempt leaves it usable.
    pub(super) fn decrypt(&self, ad: &[u8], ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        open(&self.0, MESSAGE_KEYS_INFO, ad, ciphertext)
    }
}

/// The AEAD key and nonce of one message: HKDF-SHA256 (no salt) over its
/// 32-byte key seed, with `info` naming what the message is, 44 bytes split
/// into a ChaCha20-Poly1305 key (32) and nonce (12). Shared by the pairwise
/// and the group message keys, which differ only in `info`.
fn cipher_and_nonce(seed: &[u8; 32], info: &[u8]) -> (ChaCha20Poly1305, Nonce) {
    let hk = Hkdf::<Sha256>::new(None, seed);
    let mut okm = Zeroizing::new([0u8; 44]);
    hk.expand(info, okm.as_mut())
        .expect("44 bytes is a valid HKDF-SHA256 output length");
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    (ChaCha20Poly1305::new(&(*key).into()), Nonce::from(nonce))
}

/// Encrypts one message under the key and nonce derived from `seed`.
pub(super) fn seal(seed: &[u8; 32], info: &[u8], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let (cipher, nonce) = cipher_and_nonce(seed, info);
    cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any message size we send")
}

/// Decrypts one message under the key and nonce derived from `seed`; `None`
/// when the tag does not verify.
pub(super) fn open(
    seed: &[u8; 32],
    info: &[u8],
    ad: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let (cipher, nonce) = cipher_and_nonce(seed, info);
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}
