//! A group sender key's chain key at one iteration. Each step is the chain
//! KDF of the pairwise ratchet (`chain_key`): HMAC-SHA256(CK, 0x01) seeds the
//! message key of this iteration, HMAC-SHA256(CK, 0x02) is the next chain key.
//!
//! The iteration is a `u32` and never wraps: the chain stops at `u32::MAX`
//! (a step past it is refused), so an iteration names one message key only.

use serde::{Deserialize, Serialize};

use super::E2eError;
use super::chain_key::ChainKey;
use super::sender_message_key::SenderMessageKey;

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct SenderChainKey {
    iteration: u32,
    key: ChainKey,
}

impl SenderChainKey {
    pub(super) fn new(iteration: u32, key: [u8; 32]) -> Self {
        SenderChainKey {
            iteration,
            key: ChainKey::new(key),
        }
    }

    /// The iteration of the next message key this chain gives.
    pub(super) fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The chain key's bytes, for a distribution message.
    pub(super) fn key_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The message key of this iteration.
    pub(super) fn message_key(&self) -> SenderMessageKey {
        SenderMessageKey::new(self.iteration, self.key.message_key_seed())
    }

    /// The chain key of the next iteration; refused at `u32::MAX`, where the
    /// chain ends (the sender must rotate its sender key).
    pub(super) fn next(&self) -> Result<SenderChainKey, E2eError> {
        let iteration = self
            .iteration
            .checked_add(1)
            .ok_or(E2eError::SenderKeyExhausted)?;
        let mut key = self.key.clone();
        key.advance();
        Ok(SenderChainKey { iteration, key })
    }
}
