//! The first vault format, `sotto-vault/1`: one JSON file holding the whole
//! profile, sealed under the passphrase (Argon2id, XChaCha20-Poly1305, the
//! KDF header as associated data). It is only read, once, to move a profile
//! into the store; see `crate::profile::Profile::open`.

use std::path::Path;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::VaultError;
use super::kdf::KdfParams;

const FORMAT: &str = "sotto-vault/1";

#[derive(Serialize, Deserialize)]
struct VaultFile {
    format: String,
    kdf: KdfParams,
    nonce: String,
    ciphertext: String,
}

/// The content of the old vault file at `path`.
pub fn open(path: &Path, passphrase: &str) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let text = std::fs::read_to_string(path).map_err(|source| VaultError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (file, nonce, ciphertext) = parse(&text, path)?;
    let key = file.kdf.derive(passphrase)?;
    let content = XChaCha20Poly1305::new(&(*key).into())
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &ciphertext,
                aad: &file.kdf.associated_data(FORMAT),
            },
        )
        .map_err(|_| VaultError::WrongPassphrase)?;
    Ok(Zeroizing::new(content))
}

/// The file's parts, checked as far as they can be without the passphrase.
fn parse(text: &str, path: &Path) -> Result<(VaultFile, [u8; 24], Vec<u8>), VaultError> {
    let damaged = || VaultError::Damaged(path.to_owned());
    let file: VaultFile = serde_json::from_str(text).map_err(|_| damaged())?;
    if file.format != FORMAT {
        return Err(damaged());
    }
    let nonce: [u8; 24] = hex::decode(&file.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(damaged)?;
    let ciphertext = hex::decode(&file.ciphertext).map_err(|_| damaged())?;
    Ok((file, nonce, ciphertext))
}

/// Everything [`open`] checks before it derives a key (for the fuzz targets).
#[doc(hidden)]
pub fn check(text: &str) -> Result<(), VaultError> {
    let (file, _, _) = parse(text, Path::new("vault.json"))?;
    file.kdf.bounded().map(|_| ())
}

/// Writes a vault in the old format: only for tests of the migration.
#[cfg(test)]
pub fn write(path: &Path, passphrase: &str, content: &[u8]) {
    use rand::Rng;
    let kdf = KdfParams::recommended();
    let key = kdf.derive(passphrase).unwrap();
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = XChaCha20Poly1305::new(&(*key).into())
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: content,
                aad: &kdf.associated_data(FORMAT),
            },
        )
        .unwrap();
    let file = VaultFile {
        format: FORMAT.into(),
        kdf,
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    };
    std::fs::write(path, serde_json::to_vec(&file).unwrap()).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_vault_opens_with_its_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        write(&path, "right", b"canary");
        assert_eq!(open(&path, "right").unwrap().as_slice(), b"canary");
        assert!(matches!(
            open(&path, "wrong"),
            Err(VaultError::WrongPassphrase)
        ));
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"t\":3", "\"t\":4");
        std::fs::write(&path, text).unwrap();
        assert!(open(&path, "right").is_err(), "its parameters are bound");
    }
}
