//! Per-warrant pseudonyms: `anon-` and 24 hex digits of HMAC-SHA256, under
//! the relay's pseudonym key, over the authority, the warrant id and the
//! username. Stable within one warrant, unlinkable across warrants (and
//! across authorities that reuse an id), and reversible only through the
//! mapping the relay keeps sealed for that warrant.

use std::collections::{BTreeMap, BTreeSet};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sotto_proto::names::PSEUDONYM_PREFIX;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The relay's key for pseudonyms. It never leaves the relay.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    pub fn new(key: [u8; 32]) -> Self {
        PseudonymKey(key)
    }
}

/// Makes the pseudonyms of one warrant and remembers which it issued.
pub struct Pseudonymizer<'a> {
    key: &'a PseudonymKey,
    scope: Vec<u8>,
    targets: BTreeSet<&'a str>,
    issued: BTreeMap<String, String>,
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

impl<'a> Pseudonymizer<'a> {
    pub fn new(
        key: &'a PseudonymKey,
        authority: &str,
        warrant_id: &str,
        targets: &'a [String],
    ) -> Self {
        let mut scope = Vec::new();
        push_field(&mut scope, authority.as_bytes());
        push_field(&mut scope, warrant_id.as_bytes());
        Pseudonymizer {
            key,
            scope,
            targets: targets.iter().map(String::as_str).collect(),
            issued: BTreeMap::new(),
        }
    }

    fn mac(&self, domain: &[u8], value: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.key.0)
            .expect("HMAC takes any key length");
        mac.update(domain);
        mac.update(&self.scope);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// A target's own name, or the pseudonym of anyone else.
    pub fn name(&mut self, user: &str) -> String {
        if self.targets.contains(user) {
            return user.to_owned();
        }
        let pseudonym = format!(
            "{PSEUDONYM_PREFIX}{}",
            hex::encode(&self.mac(b"user\0", user.as_bytes())[..12])
        );
        self.issued.insert(pseudonym.clone(), user.to_owned());
        pseudonym
    }

    /// An opaque label for a conversation (its id and group name stay private).
    pub fn conversation(&self, conversation: &[u8]) -> String {
        format!(
            "conv-{}",
            hex::encode(&self.mac(b"conversation\0", conversation)[..8])
        )
    }

    /// Pseudonym → username, for the sealed mapping.
    pub fn issued(self) -> BTreeMap<String, String> {
        self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_within_a_warrant_and_differ_across_warrants() {
        let key = PseudonymKey::new([7u8; 32]);
        let targets = vec!["alice".to_owned()];
        let mut w1 = Pseudonymizer::new(&key, "chief", "W-1", &targets);
        let mut w2 = Pseudonymizer::new(&key, "chief", "W-2", &targets);
        let mut other_authority = Pseudonymizer::new(&key, "other", "W-1", &targets);
        assert_eq!(w1.name("alice"), "alice");
        let bob1 = w1.name("bob");
        assert_eq!(bob1, w1.name("bob"));
        assert!(bob1.starts_with("anon-") && !bob1.contains("bob"));
        assert_ne!(bob1, w2.name("bob"));
        assert_ne!(bob1, other_authority.name("bob"));
        assert_eq!(w1.issued().get(&bob1).map(String::as_str), Some("bob"));
    }
}
