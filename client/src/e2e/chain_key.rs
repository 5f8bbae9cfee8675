//! A sending or receiving chain key (KDF_CK): HMAC-SHA256 with constant inputs
//! 0x01 for the message key and 0x02 for the next chain key, as the Double
//! Ratchet specification recommends. A group sender key's chain is the same
//! KDF (`sender_chain_key`), with its own message keys.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::message_key::MessageKey;

const MESSAGE_KEY_SEED: u8 = 0x01;
const ADVANCEMENT_SEED: u8 = 0x02;

#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(super) struct ChainKey([u8; 32]);

impl ChainKey {
    pub(super) fn new(bytes: [u8; 32]) -> Self {
        ChainKey(bytes)
    }

    fn hmac(&self, seed: u8) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&[seed]);
        mac.finalize().into_bytes().into()
    }

    pub(super) fn message_key(&self) -> MessageKey {
        MessageKey::new(self.message_key_seed())
    }

    /// HMAC(CK, 0x01): the seed this step's message key is made from.
    pub(super) fn message_key_seed(&self) -> [u8; 32] {
        self.hmac(MESSAGE_KEY_SEED)
    }

    /// The key itself, for a sender key distribution (which hands it over).
    pub(super) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(super) fn advance(&mut self) {
        let next = self.hmac(ADVANCEMENT_SEED);
        self.0.zeroize();
        self.0 = next;
    }
}
