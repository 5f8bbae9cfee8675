//! The local vault: a sled database in the profile folder, every value sealed
//! under a key derived from the passphrase.
//!
//! Invariant: nothing in the vault is readable without the passphrase. The key
//! comes from Argon2id ([`kdf`]); each value is sealed with XChaCha20-Poly1305,
//! a fresh nonce, and associated data binding its table and key, so a value
//! cannot be moved to another place. Keys name no one: fixed part names and
//! sequence numbers. A check value, sealed with the KDF parameters as
//! associated data, tells a wrong passphrase (or altered parameters) apart.
//!
//! One process at a time: sled locks the database, so a second opener gets
//! [`VaultError::InUse`] instead of a copy of the state to fork.

pub mod kdf;
pub mod legacy;

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::Rng;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use kdf::KdfParams;

const FORMAT: &str = "sotto-vault/2";
const META: &str = "meta";
const KDF_KEY: &[u8] = b"kdf";
const CHECK_KEY: &[u8] = b"check";
const NONCE_LEN: usize = 24;
const RECORD_KEY_INFO: &[u8] = b"sotto-vault/2 record key";

#[derive(Debug, Error)]
pub enum VaultError {
    #[error("wrong passphrase for this profile (or the vault was altered)")]
    WrongPassphrase,
    #[error("an empty passphrase protects nothing: choose one (SOTTO_PASSPHRASE or the prompt)")]
    EmptyPassphrase,
    #[error("the vault {0} is damaged or not a sotto vault")]
    Damaged(PathBuf),
    #[error("the vault {0} is open in another process")]
    InUse(PathBuf),
    #[error("vault i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the vault's store failed: {0}")]
    Store(String),
    #[error("cannot derive the vault key: {0}")]
    Kdf(String),
}

/// The vault's tables. Each holds one kind of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// A fixed name (`identity`, `contacts`, `sessions`, ...) → one sealed
    /// part of the profile, whose size does not grow with the history.
    State,
    /// Sequence number (8 bytes) → one sealed history entry: saving a
    /// message writes that entry only.
    History,
}

impl Table {
    const ALL: [Table; 2] = [Table::State, Table::History];

    fn name(self) -> &'static str {
        match self {
            Table::State => "state",
            Table::History => "history",
        }
    }
}

/// A key and its opened value.
pub type Entry = (Vec<u8>, Zeroizing<Vec<u8>>);

/// An open vault: the database (locked while open) and the derived keys.
pub struct Vault {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    tables: Vec<sled::Tree>,
    cipher: XChaCha20Poly1305,
}

fn store_error(e: sled::Error) -> VaultError {
    VaultError::Store(e.to_string())
}

/// True when sled could not take the database's lock: another process has it.
fn locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().contains("could not acquire lock"))
}

fn open_db(path: &Path) -> Result<sled::Db, VaultError> {
    sled::Config::new()
        .path(path)
        // Saves flush explicitly; no background timer.
        .flush_every_ms(None)
        .open()
        .map_err(|e| {
            if locked(&e) {
                VaultError::InUse(path.to_owned())
            } else {
                store_error(e)
            }
        })
}

impl Vault {
    pub fn exists(path: &Path) -> bool {
        path.join("conf").exists()
    }

    /// Makes a new vault at `path`. Refuses to overwrite one.
    pub fn create(path: &Path, passphrase: &str) -> Result<Self, VaultError> {
        if Self::exists(path) {
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
        let db = open_db(path)?;
        let meta = db.open_tree(META).map_err(store_error)?;
        let vault = Self::with_key(path, db, meta, &key)?;
        let params = serde_json::to_vec(&kdf).map_err(|e| VaultError::Kdf(e.to_string()))?;
        vault.meta.insert(KDF_KEY, params).map_err(store_error)?;
        let check = seal_with(
            &vault.cipher,
            &kdf.associated_data(FORMAT),
            FORMAT.as_bytes(),
        );
        vault.meta.insert(CHECK_KEY, check).map_err(store_error)?;
        vault.flush()?;
        Ok(vault)
    }

    /// Opens the vault at `path`. A second process gets [`VaultError::InUse`].
    pub fn open(path: &Path, passphrase: &str) -> Result<Self, VaultError> {
        if !Self::exists(path) {
            return Err(VaultError::Damaged(path.to_owned()));
        }
        if passphrase.is_empty() {
            return Err(VaultError::EmptyPassphrase);
        }
        let db = open_db(path)?;
        let meta = db.open_tree(META).map_err(store_error)?;
        let damaged = || VaultError::Damaged(path.to_owned());
        let kdf: KdfParams = meta
            .get(KDF_KEY)
            .map_err(store_error)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or_else(damaged)?;
        let check = meta
            .get(CHECK_KEY)
            .map_err(store_error)?
            .ok_or_else(damaged)?;
        let key = kdf.derive(passphrase)?;
        let vault = Self::with_key(path, db, meta, &key)?;
        let opened = open_with(&vault.cipher, &kdf.associated_data(FORMAT), &check)
            .map_err(|_| VaultError::WrongPassphrase)?;
        if opened.as_slice() != FORMAT.as_bytes() {
            return Err(VaultError::WrongPassphrase);
        }
        Ok(vault)
    }

    fn with_key(
        path: &Path,
        db: sled::Db,
        meta: sled::Tree,
        key: &[u8; 32],
    ) -> Result<Self, VaultError> {
        let mut record_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, key)
            .expand(RECORD_KEY_INFO, record_key.as_mut())
            .map_err(|_| VaultError::Kdf("HKDF output length".into()))?;
        let tables = Table::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        Ok(Vault {
            path: path.to_owned(),
            db,
            meta,
            tables,
            cipher: XChaCha20Poly1305::new(&(*record_key).into()),
        })
    }

    fn table(&self, table: Table) -> &sled::Tree {
        let index = Table::ALL
            .iter()
            .position(|t| *t == table)
            .unwrap_or_default();
        &self.tables[index]
    }

    /// Seals `value` for (`table`, `key`) and stores it, padded to a multiple
    /// of [`PAD`] bytes so its size says little. Durable at [`Vault::flush`].
    pub fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), VaultError> {
        let sealed = seal_with(&self.cipher, &record_ad(table, key), &pad(value));
        self.table(table).insert(key, sealed).map_err(store_error)?;
        Ok(())
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        match self.table(table).get(key).map_err(store_error)? {
            None => Ok(None),
            Some(sealed) => open_with(&self.cipher, &record_ad(table, key), &sealed)
                .ok()
                .and_then(|padded| unpad(&padded))
                .map(Some)
                .ok_or_else(|| VaultError::Damaged(self.path.clone())),
        }
    }

    /// Stores `bytes` as the sealed value of (`table`, `key`) as they are:
    /// what someone editing the profile folder could do (for the fuzz targets).
    #[doc(hidden)]
    pub fn put_raw(&self, table: Table, key: &[u8], bytes: &[u8]) -> Result<(), VaultError> {
        self.table(table).insert(key, bytes).map_err(store_error)?;
        Ok(())
    }

    /// The sealed value of (`table`, `key`) as stored (for the fuzz targets).
    #[doc(hidden)]
    pub fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        Ok(self
            .table(table)
            .get(key)
            .map_err(store_error)?
            .map(|v| v.to_vec()))
    }

    pub fn remove(&self, table: Table, key: &[u8]) -> Result<(), VaultError> {
        self.table(table).remove(key).map_err(store_error)?;
        Ok(())
    }

    /// Every (key, opened value) of a table, in key order.
    pub fn entries(&self, table: Table) -> Result<Vec<Entry>, VaultError> {
        self.table(table)
            .iter()
            .map(|kv| {
                let (key, sealed) = kv.map_err(store_error)?;
                let value = open_with(&self.cipher, &record_ad(table, &key), &sealed)
                    .ok()
                    .and_then(|padded| unpad(&padded))
                    .ok_or_else(|| VaultError::Damaged(self.path.clone()))?;
                Ok((key.to_vec(), value))
            })
            .collect()
    }

    /// The largest key of a table, if any.
    pub fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, VaultError> {
        Ok(self
            .table(table)
            .last()
            .map_err(store_error)?
            .map(|(k, _)| k.to_vec()))
    }

    /// Blocks until everything put so far is on disk.
    pub fn flush(&self) -> Result<(), VaultError> {
        self.db.flush().map_err(store_error)?;
        Ok(())
    }
}

/// Values are padded to a multiple of this many bytes before sealing.
pub const PAD: usize = 256;

/// The value's length (4 bytes, big-endian), the value, zeros up to a multiple of [`PAD`].
fn pad(value: &[u8]) -> Zeroizing<Vec<u8>> {
    let len = 4 + value.len();
    let mut out = Zeroizing::new(Vec::with_capacity(len.div_ceil(PAD) * PAD));
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(len.div_ceil(PAD) * PAD, 0);
    out
}

fn unpad(padded: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let len = u32::from_be_bytes(padded.get(..4)?.try_into().ok()?) as usize;
    padded.get(4..4 + len).map(|v| Zeroizing::new(v.to_vec()))
}

fn record_ad(table: Table, key: &[u8]) -> Vec<u8> {
    let name = table.name().as_bytes();
    let mut ad = Vec::with_capacity(16 + name.len() + key.len());
    ad.extend_from_slice(FORMAT.as_bytes());
    ad.push(0);
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
        .expect("XChaCha20-Poly1305 seals any value a profile holds");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    ad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ()> {
    if sealed.len() < NONCE_LEN {
        return Err(());
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| ())?;
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| ())
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
    fn values_round_trip_and_are_not_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        {
            let vault = Vault::create(&path, "correct horse").unwrap();
            vault
                .put(Table::State, b"contacts", b"canary-name canary-7731 secret")
                .unwrap();
            vault.flush().unwrap();
        }
        for file in walk(&path) {
            let raw = std::fs::read(&file).unwrap();
            assert!(!raw.windows(11).any(|w| w == b"canary-7731"), "{file:?}");
            assert!(!raw.windows(11).any(|w| w == b"canary-name"), "{file:?}");
        }
        let vault = Vault::open(&path, "correct horse").unwrap();
        assert_eq!(
            vault
                .get(Table::State, b"contacts")
                .unwrap()
                .unwrap()
                .as_slice(),
            b"canary-name canary-7731 secret"
        );
    }

    #[test]
    fn curious_operator_learns_only_padded_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(&dir.path().join("vault.db"), "pass").unwrap();
        for (key, text) in [
            (b"a", "hi"),
            (b"b", "a much longer message, still under a bucket"),
        ] {
            vault.put(Table::History, key, text.as_bytes()).unwrap();
        }
        let sizes: Vec<usize> = [b"a", b"b"]
            .iter()
            .map(|k| vault.table(Table::History).get(k).unwrap().unwrap().len())
            .collect();
        assert_eq!(sizes[0], sizes[1]);
        assert_eq!(
            vault.get(Table::History, b"b").unwrap().unwrap().as_slice(),
            b"a much longer message, still under a bucket"
        );
    }

    #[test]
    fn a_wrong_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        drop(Vault::create(&path, "right").unwrap());
        assert!(matches!(
            Vault::open(&path, "wrong"),
            Err(VaultError::WrongPassphrase)
        ));
        assert!(matches!(
            Vault::open(&path, ""),
            Err(VaultError::EmptyPassphrase)
        ));
    }

    #[test]
    fn second_process_on_the_same_vault_is_refused_while_it_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let first = Vault::create(&path, "pass").unwrap();
        assert!(matches!(
            Vault::open(&path, "pass"),
            Err(VaultError::InUse(_))
        ));
        drop(first);
    }

    #[test]
    fn a_value_moved_to_another_key_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let vault = Vault::create(&path, "pass").unwrap();
        vault.put(Table::History, b"k1", b"hello").unwrap();
        let sealed = vault.table(Table::History).get(b"k1").unwrap().unwrap();
        vault.table(Table::History).insert(b"k2", sealed).unwrap();
        assert!(vault.get(Table::History, b"k2").is_err());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
