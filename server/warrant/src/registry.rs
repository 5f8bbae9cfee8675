//! The registered warrant authorities: `authorities.toml` as text in, a
//! registry of names and Ed25519 keys out. Reading and writing the file is the
//! relay's business; this module only parses, edits and prints it.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("not a valid authority list: {0}")]
    Syntax(String),
    #[error("authority {name:?}: {why}")]
    BadEntry { name: String, why: &'static str },
    #[error("an authority named {0:?} is registered already (remove it first)")]
    Duplicate(String),
    #[error("no authority named {0:?} is registered")]
    NoSuchAuthority(String),
    #[error("this key is registered already as {0:?}: one key, one authority")]
    DuplicateKey(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorityEntry {
    pub name: String,
    /// Hex of the Ed25519 public key.
    pub public_key: String,
}

/// The file's contents, as the operator edits them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthorityFile {
    #[serde(default, rename = "authority")]
    pub authorities: Vec<AuthorityEntry>,
}

/// A registered authority with its parsed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub name: String,
    pub key: VerifyingKey,
}

/// The authorities whose signatures a relay accepts, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    authorities: Vec<Authority>,
}

const MAX_NAME: usize = 128;

/// Parses 64 hex digits as an Ed25519 public key; a weak (small-order) key,
/// for which signatures prove nothing, is refused.
pub fn parse_key(hex_key: &str) -> Result<VerifyingKey, &'static str> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes)
        .map_err(|_| "a public key is 64 hex digits")?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key")?;
    if key.is_weak() {
        return Err("a weak (small-order) Ed25519 key, which anyone can sign for");
    }
    Ok(key)
}

/// Characters that change how text is shown without being seen: controls,
/// bidi controls, zero-width characters, the byte-order mark, soft hyphen.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}')
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    if name.trim().is_empty()
        || name.trim() != name
        || name.len() > MAX_NAME
        || name.chars().any(is_invisible)
    {
        return Err(RegistryError::BadEntry {
            name: name
                .chars()
                .filter(|c| !is_invisible(*c))
                .take(MAX_NAME)
                .collect(),
            why: "a name is 1 to 128 visible characters, without leading or trailing spaces",
        });
    }
    Ok(())
}

impl AuthorityFile {
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        toml::from_str(text).map_err(|e| RegistryError::Syntax(e.message().to_owned()))
    }

    pub fn to_toml(&self) -> String {
        let mut text = String::from(
            "# Warrant authorities, managed with `sotto-relay authority add|list|remove`.\n",
        );
        // A list of plain strings always encodes.
        text.push_str(&toml::to_string(self).unwrap_or_default());
        text
    }

    pub fn add(&mut self, name: &str, public_key: &str) -> Result<(), RegistryError> {
        check_name(name)?;
        let key = parse_key(public_key).map_err(|why| RegistryError::BadEntry {
            name: name.to_owned(),
            why,
        })?;
        if self.authorities.iter().any(|a| a.name == name) {
            return Err(RegistryError::Duplicate(name.to_owned()));
        }
        if let Some(same) = self
            .authorities
            .iter()
            .find(|a| parse_key(&a.public_key).is_ok_and(|k| k == key))
        {
            return Err(RegistryError::DuplicateKey(same.name.clone()));
        }
        self.authorities.push(AuthorityEntry {
            name: name.to_owned(),
            public_key: hex::encode(key.as_bytes()),
        });
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), RegistryError> {
        let before = self.authorities.len();
        self.authorities.retain(|a| a.name != name);
        if self.authorities.len() == before {
            return Err(RegistryError::NoSuchAuthority(name.to_owned()));
        }
        Ok(())
    }

    /// The registry, or the first entry that is not usable: a damaged file is
    /// the operator's to see and mend, never silently half-read.
    pub fn registry(&self) -> Result<Registry, RegistryError> {
        let mut authorities: Vec<Authority> = Vec::with_capacity(self.authorities.len());
        for entry in &self.authorities {
            check_name(&entry.name)?;
            let key = parse_key(&entry.public_key).map_err(|why| RegistryError::BadEntry {
                name: entry.name.clone(),
                why,
            })?;
            if authorities.iter().any(|a| a.name == entry.name) {
                return Err(RegistryError::Duplicate(entry.name.clone()));
            }
            if let Some(same) = authorities.iter().find(|a| a.key == key) {
                return Err(RegistryError::DuplicateKey(same.name.clone()));
            }
            authorities.push(Authority {
                name: entry.name.clone(),
                key,
            });
        }
        Ok(Registry { authorities })
    }
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Authority> {
        self.authorities.iter().find(|a| a.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.authorities.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    #[test]
    fn a_file_round_trips_and_names_are_unique() {
        let mut file = AuthorityFile::default();
        file.add("chief", KEY).unwrap();
        assert_eq!(
            file.add("chief", KEY),
            Err(RegistryError::Duplicate("chief".into()))
        );
        let again = AuthorityFile::parse(&file.to_toml()).unwrap();
        let registry = again.registry().unwrap();
        assert_eq!(
            hex::encode(registry.get("chief").unwrap().key.as_bytes()),
            KEY
        );
        assert!(registry.get("other").is_none());
    }

    #[test]
    fn a_damaged_entry_is_named_not_skipped() {
        let file = AuthorityFile::parse("[[authority]]\nname = \"chief\"\npublic_key = \"00zz\"\n")
            .unwrap();
        assert!(matches!(
            file.registry(),
            Err(RegistryError::BadEntry { name, .. }) if name == "chief"
        ));
        assert!(matches!(
            AuthorityFile::parse("[[authority]\n"),
            Err(RegistryError::Syntax(_))
        ));
    }

    #[test]
    fn names_that_hide_or_impersonate_are_refused() {
        let mut file = AuthorityFile::default();
        for name in [
            "chief\n[[authority]]",
            "",
            "evil\u{202e}gnp.exe",
            "chief ",
            " chief",
            "chief\u{200b}",
            "chief\u{feff}",
            "x\u{1b}[2J",
        ] {
            assert!(file.add(name, KEY).is_err(), "{name:?}");
        }
        file.add("Préfecture de police", KEY).unwrap();
    }

    #[test]
    fn one_key_is_one_authority_and_weak_keys_are_refused() {
        let mut file = AuthorityFile::default();
        file.add("chief", KEY).unwrap();
        assert_eq!(
            file.add("chief-2", KEY),
            Err(RegistryError::DuplicateKey("chief".into()))
        );
        // The identity point: every signature by it is trivially forgeable.
        let weak = format!("01{}", "00".repeat(31));
        assert!(matches!(
            file.add("weak", &weak),
            Err(RegistryError::BadEntry { .. })
        ));
    }
}
