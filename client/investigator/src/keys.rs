//! The investigator's keys, in a folder: `authority.key` (the authority's
//! Ed25519 signing key) and `delivery.key` (the X25519 key disclosures are
//! encrypted to), each 64 hex digits in a file only its owner can read, and
//! `keys.toml` with the name and both public keys.
//!
//! The secret keys never leave this type: it signs warrants and unmask
//! requests, and opens the bundles the relay seals to the delivery key.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use prost::Message;
use serde::{Deserialize, Serialize};
use sotto_proto::v1;
use sotto_warrant::bundle::{self, Purpose};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::InvestigatorError;
use crate::files::write_atomically;

const AUTHORITY_KEY: &str = "authority.key";
const DELIVERY_KEY: &str = "delivery.key";
const PUBLIC_FILE: &str = "keys.toml";
/// As a relay's registry allows (`sotto_warrant::registry`).
const MAX_NAME: usize = 128;

/// The investigator's keys: the authority's signing key and the delivery key
/// disclosures are encrypted to.
pub struct InvestigatorKeys {
    /// The authority's name, as the relay's operator registers it.
    pub name: String,
    signing: SigningKey,
    delivery: StaticSecret,
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    name: String,
    authority_public_key: String,
    delivery_public_key: String,
}

fn read_secret(path: &Path) -> Result<Zeroizing<[u8; 32]>, InvestigatorError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(InvestigatorError::io(path))?);
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), key.as_mut())
        .map_err(|_| InvestigatorError::damaged(path, "expected 64 hex digits"))?;
    Ok(key)
}

/// A disclosure bundle opened and verified.
#[derive(Debug)]
pub struct OpenedDisclosure {
    pub disclosure: v1::Disclosure,
    /// The relay key whose signature verified (the pinned one, when pinned).
    pub relay_key: VerifyingKey,
}

impl InvestigatorKeys {
    /// Makes new keys in `dir` (which must not hold keys already).
    pub fn generate(dir: &Path, name: &str) -> Result<Self, InvestigatorError> {
        if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(InvestigatorError::Input(
                "--name is 1 to 128 printable characters (the name the relay's operator registers)"
                    .into(),
            ));
        }
        if dir.join(AUTHORITY_KEY).exists() || dir.join(DELIVERY_KEY).exists() {
            return Err(InvestigatorError::KeysExist {
                dir: dir.to_owned(),
            });
        }
        std::fs::create_dir_all(dir).map_err(InvestigatorError::io(dir))?;
        let keys = InvestigatorKeys {
            name: name.to_owned(),
            signing: SigningKey::generate(&mut rand::rng()),
            delivery: StaticSecret::random_from_rng(&mut rand::rng()),
        };
        write_atomically(
            &dir.join(AUTHORITY_KEY),
            Zeroizing::new(hex::encode(keys.signing.to_bytes())).as_bytes(),
        )?;
        write_atomically(
            &dir.join(DELIVERY_KEY),
            Zeroizing::new(hex::encode(keys.delivery.to_bytes())).as_bytes(),
        )?;
        let public = KeysFile {
            name: name.to_owned(),
            authority_public_key: keys.public_key_hex(),
            delivery_public_key: hex::encode(keys.delivery_public()),
        };
        let text = toml::to_string(&public)
            .map_err(|e| InvestigatorError::Input(format!("cannot write keys.toml: {e}")))?;
        write_atomically(&dir.join(PUBLIC_FILE), text.as_bytes())?;
        Ok(keys)
    }

    /// Loads the keys in `dir`, checking the public part matches the secret keys.
    pub fn load(dir: &Path) -> Result<Self, InvestigatorError> {
        let path = dir.join(PUBLIC_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => InvestigatorError::NoKeys {
                dir: dir.to_owned(),
            },
            _ => InvestigatorError::Io {
                path: path.clone(),
                reason: source,
            },
        })?;
        let public: KeysFile =
            toml::from_str(&text).map_err(|e| InvestigatorError::damaged(&path, e.message()))?;
        let keys = InvestigatorKeys {
            name: public.name,
            signing: SigningKey::from_bytes(&*read_secret(&dir.join(AUTHORITY_KEY))?),
            delivery: StaticSecret::from(*read_secret(&dir.join(DELIVERY_KEY))?),
        };
        if !public
            .authority_public_key
            .eq_ignore_ascii_case(&keys.public_key_hex())
            || !public
                .delivery_public_key
                .eq_ignore_ascii_case(&hex::encode(keys.delivery_public()))
        {
            return Err(InvestigatorError::damaged(
                &path,
                "its public keys are not those of authority.key and delivery.key",
            ));
        }
        Ok(keys)
    }

    /// The authority's public key, which the relay's operator registers.
    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// [`InvestigatorKeys::public_key`] in hex, as `keygen` prints it.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key().as_bytes())
    }

    /// The X25519 key a warrant names for its bundles to be encrypted to.
    pub fn delivery_public(&self) -> [u8; 32] {
        PublicKey::from(&self.delivery).to_bytes()
    }

    /// Signs `warrant`'s exact encoding.
    pub fn sign_warrant(&self, warrant: &v1::Warrant) -> v1::SignedWarrant {
        let bytes = warrant.encode_to_vec();
        let signature = self.signing.sign(&sotto_proto::transcript::warrant(&bytes));
        v1::SignedWarrant {
            warrant: bytes.into(),
            signature: signature.to_bytes().to_vec().into(),
        }
    }

    /// Signs an unmask request's exact encoding.
    pub fn sign_unmask(&self, request: &v1::UnmaskRequest) -> v1::SignedUnmaskRequest {
        let (request, signature) = self.sign(request, sotto_proto::transcript::unmask);
        v1::SignedUnmaskRequest { request, signature }
    }

    /// Signs a notice extension's exact encoding.
    pub fn sign_extension(&self, request: &v1::NoticeExtension) -> v1::SignedNoticeExtension {
        let (request, signature) = self.sign(request, sotto_proto::transcript::notice_extension);
        v1::SignedNoticeExtension { request, signature }
    }

    /// `message`'s exact encoding, and the signature over its transcript.
    fn sign<M: Message>(
        &self,
        message: &M,
        transcript: fn(&[u8]) -> Vec<u8>,
    ) -> (bytes::Bytes, bytes::Bytes) {
        let encoded = message.encode_to_vec();
        let signature = self.signing.sign(&transcript(&encoded));
        (encoded.into(), signature.to_bytes().to_vec().into())
    }

    /// Decrypts every part of a disclosure, verifies the relay's signature on
    /// each (against `pin`, the relay's disclosure key, when given; all parts
    /// by one relay key), and joins them, checking each part arrived once.
    pub fn open_disclosure(
        &self,
        bundle: &v1::DisclosureBundle,
        pin: Option<&VerifyingKey>,
    ) -> Result<OpenedDisclosure, InvestigatorError> {
        let mut relay_key = pin.copied();
        let mut parts = Vec::with_capacity(bundle.parts.len());
        for sealed in &bundle.parts {
            let opened = bundle::open(
                Purpose::Disclosure,
                sealed,
                &self.delivery,
                relay_key.as_ref(),
            )?;
            relay_key = Some(opened.relay_key);
            parts.push(
                v1::Disclosure::decode(opened.payload.as_slice()).map_err(|_| {
                    InvestigatorError::Protocol(
                        "the bundle verifies but holds no disclosure".into(),
                    )
                })?,
            );
        }
        let disclosure = sotto_warrant::join(parts)
            .map_err(|e| InvestigatorError::Mismatch(format!("the disclosure's parts: {e}")))?;
        Ok(OpenedDisclosure {
            disclosure,
            relay_key: relay_key
                .ok_or_else(|| InvestigatorError::Mismatch("the disclosure has no part".into()))?,
        })
    }

    /// Decrypts the answer to `request`, verifies it is signed by `relay_key`
    /// (the warrant's relay), and checks it answers this very request: the
    /// same warrant, the same request id, only pseudonyms that were asked for.
    pub fn open_unmasked(
        &self,
        sealed: &v1::SealedBundle,
        relay_key: &VerifyingKey,
        request: &v1::UnmaskRequest,
    ) -> Result<Vec<v1::Unmasking>, InvestigatorError> {
        let opened = bundle::open(Purpose::Unmasking, sealed, &self.delivery, Some(relay_key))?;
        let unmasked = v1::Unmasked::decode(opened.payload.as_slice()).map_err(|_| {
            InvestigatorError::Protocol("the bundle verifies but holds no unmasking".into())
        })?;
        if unmasked.warrant_id != request.warrant_id {
            return Err(InvestigatorError::Mismatch(format!(
                "it is for warrant {:?}, not {:?}",
                unmasked.warrant_id, request.warrant_id
            )));
        }
        if unmasked.request_id != request.request_id {
            return Err(InvestigatorError::Mismatch(
                "it answers another request id (an old answer replayed?)".into(),
            ));
        }
        if let Some(extra) = unmasked
            .unmasked
            .iter()
            .find(|u| !request.pseudonyms.contains(&u.pseudonym))
        {
            return Err(InvestigatorError::Mismatch(format!(
                "it names pseudonym {:?}, which was not asked for",
                extra.pseudonym
            )));
        }
        Ok(unmasked.unmasked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_warrant::DeliveryKey;

    #[test]
    fn keys_round_trip_through_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let made = InvestigatorKeys::generate(&dir.path().join("inv"), "Chief Inspector").unwrap();
        let loaded = InvestigatorKeys::load(&dir.path().join("inv")).unwrap();
        assert_eq!(loaded.name, "Chief Inspector");
        assert_eq!(loaded.public_key_hex(), made.public_key_hex());
        assert_eq!(loaded.delivery_public(), made.delivery_public());
        let public = std::fs::read_to_string(dir.path().join("inv/keys.toml")).unwrap();
        assert!(public.contains(&made.public_key_hex()));
        assert!(public.contains(&hex::encode(made.delivery_public())));
        #[cfg(unix)]
        for secret in [AUTHORITY_KEY, DELIVERY_KEY] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("inv").join(secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{secret}");
        }
    }

    #[test]
    fn keys_are_never_made_over_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first = InvestigatorKeys::generate(dir.path(), "chief").unwrap();
        assert!(matches!(
            InvestigatorKeys::generate(dir.path(), "chief"),
            Err(InvestigatorError::KeysExist { .. })
        ));
        let loaded = InvestigatorKeys::load(dir.path()).unwrap();
        assert_eq!(loaded.public_key_hex(), first.public_key_hex());
    }

    #[test]
    fn a_missing_or_mismatched_folder_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = InvestigatorKeys::load(dir.path()).err().unwrap();
        assert!(err.to_string().contains("sotto-warrant keygen"), "{err}");
        InvestigatorKeys::generate(&dir.path().join("a"), "a").unwrap();
        InvestigatorKeys::generate(&dir.path().join("b"), "b").unwrap();
        std::fs::copy(
            dir.path().join("b/delivery.key"),
            dir.path().join("a/delivery.key"),
        )
        .unwrap();
        let err = InvestigatorKeys::load(&dir.path().join("a")).err().unwrap();
        assert!(matches!(err, InvestigatorError::Damaged { .. }), "{err}");
    }

    #[test]
    fn an_authority_name_is_printable() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "  ", "chief\ninspector", &"x".repeat(129)] {
            assert!(matches!(
                InvestigatorKeys::generate(dir.path(), bad),
                Err(InvestigatorError::Input(_))
            ));
        }
    }

    fn sealed_unmasked(
        keys: &InvestigatorKeys,
        relay: &SigningKey,
        unmasked: &v1::Unmasked,
    ) -> v1::SealedBundle {
        let to = DeliveryKey::from_bytes(&keys.delivery_public()).unwrap();
        bundle::seal(Purpose::Unmasking, &unmasked.encode_to_vec(), relay, &to)
    }

    #[test]
    fn an_unmask_answer_must_answer_this_request() {
        let dir = tempfile::tempdir().unwrap();
        let keys = InvestigatorKeys::generate(dir.path(), "chief").unwrap();
        let relay = SigningKey::generate(&mut rand::rng());
        let request = v1::UnmaskRequest {
            warrant_id: "W-1".into(),
            authority: "chief".into(),
            pseudonyms: vec!["anon-1".into()],
            reason: "why".into(),
            issued_at: 1_800_000_000,
            request_id: vec![7; 16].into(),
        };
        let answer = v1::Unmasked {
            unmasked: vec![v1::Unmasking {
                pseudonym: "anon-1".into(),
                username: "carol".into(),
            }],
            warrant_id: "W-1".into(),
            request_id: vec![7; 16].into(),
        };
        let pin = relay.verifying_key();
        let names = keys
            .open_unmasked(&sealed_unmasked(&keys, &relay, &answer), &pin, &request)
            .unwrap();
        assert_eq!(names, answer.unmasked);

        let other_request = v1::Unmasked {
            request_id: vec![8; 16].into(),
            ..answer.clone()
        };
        let err = keys
            .open_unmasked(
                &sealed_unmasked(&keys, &relay, &other_request),
                &pin,
                &request,
            )
            .unwrap_err();
        assert!(err.to_string().contains("request id"), "{err}");

        let other_warrant = v1::Unmasked {
            warrant_id: "W-2".into(),
            ..answer.clone()
        };
        assert!(matches!(
            keys.open_unmasked(
                &sealed_unmasked(&keys, &relay, &other_warrant),
                &pin,
                &request
            ),
            Err(InvestigatorError::Mismatch(_))
        ));

        let unasked = v1::Unmasked {
            unmasked: vec![v1::Unmasking {
                pseudonym: "anon-2".into(),
                username: "dave".into(),
            }],
            ..answer.clone()
        };
        assert!(matches!(
            keys.open_unmasked(&sealed_unmasked(&keys, &relay, &unasked), &pin, &request),
            Err(InvestigatorError::Mismatch(_))
        ));

        let impostor = SigningKey::generate(&mut rand::rng());
        assert!(matches!(
            keys.open_unmasked(&sealed_unmasked(&keys, &impostor, &answer), &pin, &request),
            Err(InvestigatorError::Bundle(
                sotto_warrant::BundleError::OtherRelay { .. }
            ))
        ));
    }

    #[test]
    fn a_disclosure_bundle_is_not_an_unmask_answer() {
        let dir = tempfile::tempdir().unwrap();
        let keys = InvestigatorKeys::generate(dir.path(), "chief").unwrap();
        let relay = SigningKey::generate(&mut rand::rng());
        let to = DeliveryKey::from_bytes(&keys.delivery_public()).unwrap();
        let disclosure = v1::Disclosure {
            warrant_id: "W-1".into(),
            ..Default::default()
        };
        let sealed = bundle::seal(
            Purpose::Disclosure,
            &disclosure.encode_to_vec(),
            &relay,
            &to,
        );
        let whole = v1::DisclosureBundle {
            parts: vec![sealed.clone()],
        };
        let opened = keys
            .open_disclosure(&whole, Some(&relay.verifying_key()))
            .unwrap();
        assert_eq!(opened.disclosure.warrant_id, disclosure.warrant_id);
        let request = v1::UnmaskRequest {
            warrant_id: "W-1".into(),
            ..Default::default()
        };
        assert!(
            keys.open_unmasked(&sealed, &relay.verifying_key(), &request)
                .is_err()
        );
    }
}
