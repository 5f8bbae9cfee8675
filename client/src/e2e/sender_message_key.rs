//! A group message key: the seed of one iteration of a sender key's chain,
//! used for one message and then dropped (and zeroized). The AEAD key and
//! nonce come from HKDF-SHA256 over the seed with the group's own info, so a
//! group message key never opens a pairwise message, nor the reverse.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::message_key::{open, seal};

/// HKDF info for the AEAD key (32 bytes) and nonce (12) of one group message.
const GROUP_MESSAGE_INFO: &[u8] = b"sotto group message v1";

#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(super) struct SenderMessageKey {
    iteration: u32,
    seed: [u8; 32],
}

impl SenderMessageKey {
    pub(super) fn new(iteration: u32, seed: [u8; 32]) -> Self {
        SenderMessageKey { iteration, seed }
    }

    /// The chain iteration this key belongs to.
    pub(super) fn iteration(&self) -> u32 {
        self.iteration
    }

    pub(super) fn encrypt(self, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal(&self.seed, GROUP_MESSAGE_INFO, ad, plaintext)
    }

    /// Decrypts; borrows the key so a failed attempt leaves it usable (a
    /// forged message must not use up the key of the real one).
    pub(super) fn decrypt(&self, ad: &[u8], ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        open(&self.seed, GROUP_MESSAGE_INFO, ad, ciphertext)
    }
}
