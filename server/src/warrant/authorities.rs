//! `authorities.toml`: the warrant authorities the operator registered, by name
//! and Ed25519 public key. Read afresh for every warrant, so it can be edited
//! (or changed with `sotto-relay authority`) while the relay runs.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorityEntry {
    pub name: String,
    /// Hex of the Ed25519 public key.
    pub public_key: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthorityFile {
    #[serde(default, rename = "authority")]
    pub authorities: Vec<AuthorityEntry>,
}

/// A registered authority with a parsed key.
#[derive(Debug, Clone)]
pub struct Authority {
    pub name: String,
    pub key: VerifyingKey,
}

pub fn parse_key(hex_key: &str) -> Result<VerifyingKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes).context("a public key is 64 hex digits")?;
    VerifyingKey::from_bytes(&bytes).context("not a valid Ed25519 public key")
}

impl AuthorityFile {
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(AuthorityFile::default());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid authority list", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = String::from(
            "# Warrant authorities, managed with `sotto-relay authority add|list|remove`.\n",
        );
        text.push_str(&toml::to_string(self).context("cannot encode the authority list")?);
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
    }

    pub fn add(&mut self, name: &str, public_key: &str) -> Result<()> {
        if name.trim().is_empty() || name.len() > 128 {
            bail!("an authority name is 1 to 128 characters");
        }
        let key = parse_key(public_key)?;
        if self.authorities.iter().any(|a| a.name == name) {
            bail!("an authority named {name:?} is registered already (remove it first)");
        }
        self.authorities.push(AuthorityEntry {
            name: name.to_owned(),
            public_key: hex::encode(key.as_bytes()),
        });
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<()> {
        let before = self.authorities.len();
        self.authorities.retain(|a| a.name != name);
        if self.authorities.len() == before {
            bail!("no authority named {name:?} is registered");
        }
        Ok(())
    }

    /// The entries with valid keys (an entry with a damaged key is skipped).
    pub fn parsed(&self) -> Vec<Authority> {
        self.authorities
            .iter()
            .filter_map(|a| {
                parse_key(&a.public_key).ok().map(|key| Authority {
                    name: a.name.clone(),
                    key,
                })
            })
            .collect()
    }
}
