//! The local vault: one file, sealed under a key derived from the passphrase.
//!
//! Invariant: nothing in the vault file is readable without the passphrase. The
//! key comes from Argon2id over the passphrase and a random salt; the content is
//! sealed with XChaCha20-Poly1305 and a fresh nonce at every save, with the KDF
//! header as associated data so its parameters cannot be altered. Saves are
//! atomic (write a temporary file, sync, rename, sync the folder): after a crash
//! the vault holds either the old state or the new one, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

const FORMAT: &str = "sotto-vault/1";

#[derive(Debug, Error)]
pub enum VaultError {
    #[error("wrong passphrase for this profile (or the vault file was altered)")]
    WrongPassphrase,
    #[error("the vault file {0} is damaged or not a sotto vault")]
    Damaged(PathBuf),
    #[error("vault i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot derive the vault key: {0}")]
    Kdf(String),
}

/// Argon2id parameters and salt, stored in clear beside the ciphertext.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    pub salt: String,
}

impl KdfParams {
    /// OWASP's recommended Argon2id setting: 19 MiB, 2 passes, 1 lane.
    fn recommended() -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        KdfParams {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
            salt: hex::encode(salt),
        }
    }

    fn derive(&self, passphrase: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        let params = Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| VaultError::Kdf(e.to_string()))?;
        let salt = hex::decode(&self.salt).map_err(|e| VaultError::Kdf(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
            .map_err(|e| VaultError::Kdf(e.to_string()))?;
        Ok(key)
    }

    fn associated_data(&self) -> Vec<u8> {
        format!(
            "{FORMAT}|argon2id|{}|{}|{}|{}",
            self.m_kib, self.t, self.p, self.salt
        )
        .into_bytes()
    }
}

#[derive(Serialize, Deserialize)]
struct VaultFile {
    format: String,
    kdf: KdfParams,
    nonce: String,
    ciphertext: String,
}

/// An open vault: its path and derived key (zeroized on drop).
pub struct Vault {
    path: PathBuf,
    kdf: KdfParams,
    key: Zeroizing<[u8; 32]>,
}

impl Vault {
    /// Makes a new vault at `path` holding `content`. Refuses to overwrite one.
    pub fn create(path: &Path, passphrase: &str, content: &[u8]) -> Result<Self, VaultError> {
        if path.exists() {
            return Err(VaultError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a vault exists here already",
                ),
            });
        }
        let kdf = KdfParams::recommended();
        let key = kdf.derive(passphrase)?;
        let vault = Vault {
            path: path.to_owned(),
            kdf,
            key,
        };
        vault.save(content)?;
        Ok(vault)
    }

    /// Opens the vault at `path`; returns it and its content.
    pub fn open(path: &Path, passphrase: &str) -> Result<(Self, Zeroizing<Vec<u8>>), VaultError> {
        let text = std::fs::read_to_string(path).map_err(|source| VaultError::Io {
            path: path.to_owned(),
            source,
        })?;
        let damaged = || VaultError::Damaged(path.to_owned());
        let file: VaultFile = serde_json::from_str(&text).map_err(|_| damaged())?;
        if file.format != FORMAT {
            return Err(damaged());
        }
        let nonce: [u8; 24] = hex::decode(&file.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(damaged)?;
        let ciphertext = hex::decode(&file.ciphertext).map_err(|_| damaged())?;
        let key = file.kdf.derive(passphrase)?;
        let content = XChaCha20Poly1305::new(&(*key).into())
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &file.kdf.associated_data(),
                },
            )
            .map_err(|_| VaultError::WrongPassphrase)?;
        Ok((
            Vault {
                path: path.to_owned(),
                kdf: file.kdf,
                key,
            },
            Zeroizing::new(content),
        ))
    }

    /// Replaces the vault's content atomically.
    pub fn save(&self, content: &[u8]) -> Result<(), VaultError> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = XChaCha20Poly1305::new(&(*self.key).into())
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: content,
                    aad: &self.kdf.associated_data(),
                },
            )
            .map_err(|_| VaultError::Kdf("the vault content is too large to seal".into()))?;
        let file = VaultFile {
            format: FORMAT.to_owned(),
            kdf: self.kdf.clone(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        };
        let bytes =
            serde_json::to_vec(&file).map_err(|_| VaultError::Damaged(self.path.clone()))?;
        write_atomically(&self.path, &bytes)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let io = |source| VaultError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_is_not_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let vault = Vault::create(&path, "correct horse", b"canary-7731 secret").unwrap();
        vault.save(b"canary-7731 newer").unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(11).any(|w| w == b"canary-7731"));
        let (_, content) = Vault::open(&path, "correct horse").unwrap();
        assert_eq!(content.as_slice(), b"canary-7731 newer");
    }

    #[test]
    fn a_wrong_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        Vault::create(&path, "right", b"x").unwrap();
        assert!(matches!(
            Vault::open(&path, "wrong"),
            Err(VaultError::WrongPassphrase)
        ));
    }

    #[test]
    fn altered_kdf_parameters_do_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        Vault::create(&path, "right", b"x").unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"t\":2", "\"t\":3");
        std::fs::write(&path, text).unwrap();
        assert!(Vault::open(&path, "right").is_err());
    }
}
