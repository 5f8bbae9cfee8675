//! A relay certificate fingerprint as people write it: `sha256:<64 hex>`, the
//! SHA-256 of the certificate's DER bytes. Both clients pin a relay by it;
//! this module only parses and prints the 32 bytes (hashing a certificate is
//! the client's business, as all cryptography is).

use std::fmt;

use thiserror::Error;

/// A relay certificate fingerprint: SHA-256 of the certificate's DER bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// The text given is not `sha256:` and 64 hex digits.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{0:?} is not a fingerprint: expected sha256: and 64 hex digits")]
pub struct FingerprintError(String);

impl Fingerprint {
    /// The fingerprint whose digest is `digest`.
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        Fingerprint(digest)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses `sha256:<64 hex>` (the `sha256:` prefix is optional).
    pub fn parse(text: &str) -> Result<Self, FingerprintError> {
        let hex_part = text.trim().strip_prefix("sha256:").unwrap_or(text.trim());
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| {
            // Quoted with the input cut short: it may be anything a person pasted.
            FingerprintError(text.chars().take(80).collect())
        })?;
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_prefix() {
        let hex = "ab".repeat(32);
        let a = Fingerprint::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(a, Fingerprint::parse(&hex).unwrap());
        assert_eq!(a, Fingerprint::parse(&format!("  sha256:{hex}\n")).unwrap());
        assert_eq!(a.to_string(), format!("sha256:{hex}"));
        assert_eq!(a.as_bytes(), &[0xab; 32]);
    }

    #[test]
    fn short_or_foreign_text_is_not_a_fingerprint() {
        for bad in ["sha256:abcd", "", "sha1:00", &"zz".repeat(32)] {
            let e = Fingerprint::parse(bad).unwrap_err();
            assert!(e.to_string().contains("64 hex digits"), "{e}");
        }
    }
}
