//! The root key: advanced by each DH ratchet step (KDF_RK).

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::SharedSecret;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::chain_key::ChainKey;

/// HKDF info of KDF_RK.
const ROOT_KDF_INFO: &[u8] = b"sotto/1 ratchet root";

#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(super) struct RootKey([u8; 32]);

impl RootKey {
    pub(super) fn new(bytes: [u8; 32]) -> Self {
        RootKey(bytes)
    }

    /// KDF_RK(rk, dh_out): HKDF-SHA256 with the root key as salt and the DH
    /// output as input key material; 64 bytes become the next root key and a chain key.
    pub(super) fn advance(&self, dh_out: &SharedSecret) -> (RootKey, ChainKey) {
        let hk = Hkdf::<Sha256>::new(Some(&self.0), dh_out.as_bytes());
        let mut okm = zeroize::Zeroizing::new([0u8; 64]);
        hk.expand(ROOT_KDF_INFO, okm.as_mut())
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        let mut root = [0u8; 32];
        let mut chain = [0u8; 32];
        root.copy_from_slice(&okm[..32]);
        chain.copy_from_slice(&okm[32..]);
        (RootKey(root), ChainKey::new(chain))
    }
}
