//! The vault key: Argon2id over the passphrase and a random salt.
//!
//! The parameters are stored in clear beside the vault, so they are bounded
//! before use: an edited file cannot make opening take unbounded memory or
//! time. They are also bound into the associated data of the vault's check
//! value, so lowered parameters do not open the vault either.

use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::VaultError;

/// RFC 9106's second recommended option, scaled for a terminal client:
/// 64 MiB, 3 passes, 1 lane.
const DEFAULT_M_KIB: u32 = 64 * 1024;
const DEFAULT_T: u32 = 3;
const DEFAULT_P: u32 = 1;

/// What a stored parameter set may ask for, at most (and at least).
const MAX_M_KIB: u32 = 256 * 1024;
const MIN_M_KIB: u32 = 19 * 1024;
const MAX_T: u32 = 10;
const MAX_P: u32 = 8;
const SALT_LEN: usize = 16;

/// Argon2id parameters and salt, stored in clear beside the vault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    pub salt: String,
}

impl KdfParams {
    pub(super) fn recommended() -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        KdfParams {
            m_kib: DEFAULT_M_KIB,
            t: DEFAULT_T,
            p: DEFAULT_P,
            salt: hex::encode(salt),
        }
    }

    /// Reads parameters as the vault stores them and checks their range,
    /// doing no key derivation (for the fuzz targets: what an edited file
    /// meets before any work is done).
    #[doc(hidden)]
    pub fn check_stored(bytes: &[u8]) -> Result<KdfParams, VaultError> {
        let params: KdfParams = serde_json::from_slice(bytes)
            .map_err(|e| VaultError::Kdf(format!("unreadable key parameters: {e}")))?;
        params.bounded()?;
        Ok(params)
    }

    /// Refuses parameters outside the sane range before any work is done.
    pub(super) fn bounded(&self) -> Result<Vec<u8>, VaultError> {
        let in_range = (MIN_M_KIB..=MAX_M_KIB).contains(&self.m_kib)
            && (1..=MAX_T).contains(&self.t)
            && (1..=MAX_P).contains(&self.p);
        let salt = hex::decode(&self.salt).ok().filter(|s| s.len() == SALT_LEN);
        match (in_range, salt) {
            (true, Some(salt)) => Ok(salt),
            _ => Err(VaultError::Kdf(format!(
                "the stored key parameters are out of range (m={} KiB, t={}, p={}); \
                 the vault was altered",
                self.m_kib, self.t, self.p
            ))),
        }
    }

    pub(super) fn derive(&self, passphrase: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        if passphrase.is_empty() {
            return Err(VaultError::EmptyPassphrase);
        }
        let salt = self.bounded()?;
        let params = Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| VaultError::Kdf(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
            .map_err(|e| VaultError::Kdf(e.to_string()))?;
        Ok(key)
    }

    /// Binds the parameters into what the key opens.
    pub(super) fn associated_data(&self, format: &str) -> Vec<u8> {
        format!(
            "{format}|argon2id|{}|{}|{}|{}",
            self.m_kib, self.t, self.p, self.salt
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curious_operator_cannot_make_opening_take_unbounded_memory() {
        let mut params = KdfParams::recommended();
        params.m_kib = u32::MAX;
        assert!(matches!(params.derive("pass"), Err(VaultError::Kdf(_))));
        params.m_kib = DEFAULT_M_KIB;
        params.t = u32::MAX;
        assert!(matches!(params.derive("pass"), Err(VaultError::Kdf(_))));
        params.t = DEFAULT_T;
        params.salt = "00".into();
        assert!(matches!(params.derive("pass"), Err(VaultError::Kdf(_))));
    }

    #[test]
    fn an_empty_passphrase_is_refused() {
        assert!(matches!(
            KdfParams::recommended().derive(""),
            Err(VaultError::EmptyPassphrase)
        ));
    }
}
