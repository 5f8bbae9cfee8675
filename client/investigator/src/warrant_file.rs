//! A signed warrant as a file (`sotto-warrant/1`): JSON holding the exact
//! encoded `Warrant` and the authority's signature over it, both in hex. The
//! relay verifies those exact bytes, so the file carries them, never fields
//! to re-encode. A warrant file read from elsewhere is untrusted input.

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use prost::Message;
use serde::{Deserialize, Serialize};
use sotto_proto::v1;

use crate::error::InvestigatorError;
use crate::files::write_atomically;

const FORMAT: &str = "sotto-warrant/1";
/// A warrant file is a few kilobytes; anything far larger is not one.
const MAX_FILE: u64 = 1024 * 1024;

/// A signed warrant as a file: the exact bytes and the signature, in hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarrantFile {
    pub format: String,
    pub warrant: String,
    pub signature: String,
}

impl WarrantFile {
    pub fn new(signed: &v1::SignedWarrant) -> Self {
        WarrantFile {
            format: FORMAT.into(),
            warrant: hex::encode(&signed.warrant),
            signature: hex::encode(&signed.signature),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), InvestigatorError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| InvestigatorError::damaged(path, e.to_string()))?;
        write_atomically(path, text.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, InvestigatorError> {
        let not_a_warrant =
            |why: &str| InvestigatorError::damaged(path, format!("not a {FORMAT} file: {why}"));
        let size = std::fs::metadata(path)
            .map_err(InvestigatorError::io(path))?
            .len();
        if size > MAX_FILE {
            return Err(not_a_warrant("far too large"));
        }
        let text = std::fs::read_to_string(path).map_err(InvestigatorError::io(path))?;
        let file: WarrantFile =
            serde_json::from_str(&text).map_err(|e| not_a_warrant(&e.to_string()))?;
        if file.format != FORMAT {
            return Err(not_a_warrant("another format"));
        }
        // Decoded once here, so a file that loads is one whose parts all decode.
        file.warrant_at(path)?;
        Ok(file)
    }

    fn warrant_at(&self, path: &Path) -> Result<v1::Warrant, InvestigatorError> {
        let signed = self.signed().map_err(|e| match e {
            InvestigatorError::Input(why) => InvestigatorError::damaged(path, why),
            other => other,
        })?;
        v1::Warrant::decode(signed.warrant.as_ref())
            .map_err(|_| InvestigatorError::damaged(path, "the warrant bytes do not decode"))
    }

    /// The signed warrant, as it is sent to a relay.
    pub fn signed(&self) -> Result<v1::SignedWarrant, InvestigatorError> {
        let hex = |text: &str, what: &str| {
            hex::decode(text)
                .map_err(|_| InvestigatorError::Input(format!("the {what} is not hex")))
        };
        Ok(v1::SignedWarrant {
            warrant: hex(&self.warrant, "warrant")?.into(),
            signature: hex(&self.signature, "signature")?.into(),
        })
    }

    /// The warrant the file holds.
    pub fn warrant(&self) -> Result<v1::Warrant, InvestigatorError> {
        v1::Warrant::decode(self.signed()?.warrant.as_ref())
            .map_err(|_| InvestigatorError::Input("the warrant bytes do not decode".into()))
    }
}

/// The relay disclosure key a warrant names (its `relay_key`), which every
/// bundle answering it must be signed by.
pub fn relay_key_of(warrant: &v1::Warrant) -> Result<VerifyingKey, InvestigatorError> {
    let bytes: [u8; 32] = warrant.relay_key.as_ref().try_into().map_err(|_| {
        InvestigatorError::Input(
            "this warrant names no relay key (it was issued before --relay-key existed): \
             issue it again with --relay-key"
                .into(),
        )
    })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| {
        InvestigatorError::Input("this warrant's relay key is not an Ed25519 key".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warrant() -> v1::Warrant {
        v1::Warrant {
            id: "W-1".into(),
            authority: "chief".into(),
            relay_key: ed25519_dalek::SigningKey::from_bytes(&[4; 32])
                .verifying_key()
                .to_bytes()
                .to_vec()
                .into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_warrant_file_keeps_the_exact_signed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let signed = v1::SignedWarrant {
            warrant: warrant().encode_to_vec().into(),
            signature: vec![9; 64].into(),
        };
        WarrantFile::new(&signed).save(&path).unwrap();
        let loaded = WarrantFile::load(&path).unwrap();
        assert_eq!(loaded.signed().unwrap(), signed);
        assert_eq!(loaded.warrant().unwrap(), warrant());
        assert_eq!(
            relay_key_of(&loaded.warrant().unwrap()).unwrap().to_bytes(),
            warrant().relay_key.as_ref()
        );
    }

    #[test]
    fn a_file_that_is_not_a_warrant_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        for text in [
            "not json",
            r#"{"format":"other/1","warrant":"","signature":""}"#,
            r#"{"format":"sotto-warrant/1","warrant":"zz","signature":""}"#,
            r#"{"format":"sotto-warrant/1","warrant":"ffff","signature":""}"#,
        ] {
            std::fs::write(&path, text).unwrap();
            let err = WarrantFile::load(&path).unwrap_err();
            assert!(matches!(err, InvestigatorError::Damaged { .. }), "{err}");
        }
    }

    #[test]
    fn a_warrant_without_a_relay_key_asks_to_be_issued_again() {
        let old = v1::Warrant {
            relay_key: Default::default(),
            ..warrant()
        };
        let err = relay_key_of(&old).unwrap_err().to_string();
        assert!(err.contains("--relay-key"), "{err}");
    }
}
