//! Building a disclosure from the normal archive's read-only view, with every
//! participant who is not a target replaced by a per-warrant pseudonym, then
//! signing it with the relay's disclosure key and encrypting it to the
//! warrant's delivery key.
//!
//! Pseudonyms are `anon-` and 24 hex digits of HMAC-SHA256 under the relay's
//! pseudonym key over the warrant id and the username: stable within one
//! warrant, unlinkable across warrants, and reversible only through the sealed
//! mapping the relay keeps for that warrant.

use std::collections::{BTreeMap, BTreeSet};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use prost::Message;
use rand::Rng;
use sha2::Sha256;
use sotto_proto::v1;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::check::CheckedWarrant;
use crate::RelayError;
use crate::archive::ArchiveReader;

/// Makes the pseudonyms of one warrant and remembers which it issued.
pub struct Pseudonymizer<'a> {
    key: &'a [u8; 32],
    warrant_id: &'a str,
    targets: BTreeSet<String>,
    issued: BTreeMap<String, String>,
}

impl<'a> Pseudonymizer<'a> {
    pub fn new(key: &'a [u8; 32], warrant_id: &'a str, targets: &[String]) -> Self {
        Pseudonymizer {
            key,
            warrant_id,
            targets: targets.iter().cloned().collect(),
            issued: BTreeMap::new(),
        }
    }

    fn mac(&self, domain: &[u8], value: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.key)
            .expect("HMAC takes any key length");
        mac.update(domain);
        mac.update(&(self.warrant_id.len() as u32).to_be_bytes());
        mac.update(self.warrant_id.as_bytes());
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// A target's own name, or the pseudonym of anyone else.
    pub fn name(&mut self, user: &str) -> String {
        if self.targets.contains(user) {
            return user.to_owned();
        }
        let pseudonym = format!(
            "anon-{}",
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

/// A disclosure and what the relay keeps and logs about it.
pub struct Outcome {
    pub disclosure: v1::Disclosure,
    /// Pseudonym → username, to be sealed and kept for unmask requests.
    pub pseudonyms: BTreeMap<String, String>,
    pub conversations: usize,
}

/// Every normal record in the warrant's window that a target took part in.
pub fn disclose(
    archive: &ArchiveReader,
    checked: &CheckedWarrant,
    pseudonym_key: &[u8; 32],
    now_ms: i64,
) -> Result<Outcome, RelayError> {
    let w = &checked.warrant;
    let mut records = BTreeMap::new();
    for target in &w.targets {
        for record in archive.records_of(
            target,
            w.window_from.saturating_mul(1000),
            w.window_until.saturating_mul(1000),
        )? {
            records.insert((record.sent_at, record.id), record);
        }
    }
    let mut names = Pseudonymizer::new(pseudonym_key, &w.id, &w.targets);
    let mut conversations = BTreeSet::new();
    let disclosed = records
        .into_values()
        .map(|r| {
            conversations.insert(r.conversation.clone());
            v1::DisclosedRecord {
                conversation: names.conversation(&r.conversation),
                from: names.name(&r.from),
                participants: r.participants.iter().map(|p| names.name(p)).collect(),
                sent_at: r.sent_at,
                text: r.text,
            }
        })
        .collect();
    let pseudonyms = names.issued();
    Ok(Outcome {
        disclosure: v1::Disclosure {
            warrant_id: w.id.clone(),
            case_reference: w.case_reference.clone(),
            generated_at: now_ms,
            targets: w.targets.clone(),
            records: disclosed,
            pseudonyms: pseudonyms.keys().cloned().collect(),
        },
        pseudonyms,
        conversations: conversations.len(),
    })
}

/// Signs the disclosure with the relay's disclosure key and encrypts it to
/// the delivery key (ephemeral-static X25519, HKDF-SHA256, XChaCha20-Poly1305).
pub fn seal(
    disclosure: &v1::Disclosure,
    relay_key: &SigningKey,
    delivery_key: &[u8; 32],
) -> v1::SealedDisclosure {
    let encoded = disclosure.encode_to_vec();
    let signed = v1::SignedDisclosure {
        signature: relay_key
            .sign(&sotto_proto::transcript::disclosure(&encoded))
            .to_bytes()
            .to_vec()
            .into(),
        relay_key: relay_key.verifying_key().to_bytes().to_vec().into(),
        disclosure: encoded.into(),
    };
    let plaintext = Zeroizing::new(signed.encode_to_vec());
    let ephemeral = StaticSecret::random_from_rng(&mut rand::rng());
    let ephemeral_public = PublicKey::from(&ephemeral);
    let delivery = PublicKey::from(*delivery_key);
    let shared = ephemeral.diffie_hellman(&delivery);
    let mut salt = Vec::with_capacity(64);
    salt.extend_from_slice(ephemeral_public.as_bytes());
    salt.extend_from_slice(delivery.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes())
        .expand(sotto_proto::transcript::DISCLOSURE_SEAL_INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = XChaCha20Poly1305::new(&(*key).into())
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: &salt,
            },
        )
        .expect("XChaCha20-Poly1305 seals any bundle size");
    v1::SealedDisclosure {
        ephemeral_key: ephemeral_public.as_bytes().to_vec().into(),
        nonce: nonce.to_vec().into(),
        ciphertext: ciphertext.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_within_a_warrant_and_differ_across_warrants() {
        let key = [7u8; 32];
        let targets = vec!["alice".to_owned()];
        let mut w1 = Pseudonymizer::new(&key, "W-1", &targets);
        let mut w2 = Pseudonymizer::new(&key, "W-2", &targets);
        assert_eq!(w1.name("alice"), "alice");
        let bob1 = w1.name("bob");
        assert_eq!(bob1, w1.name("bob"));
        assert!(bob1.starts_with("anon-") && !bob1.contains("bob"));
        assert_ne!(bob1, w2.name("bob"));
        assert_eq!(w1.issued().get(&bob1).map(String::as_str), Some("bob"));
    }
}
