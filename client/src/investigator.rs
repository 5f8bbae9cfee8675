//! The investigator's side of the warrant flow (`sotto-warrant`): authority and
//! delivery keys, signed warrants, opening a disclosure bundle (the relay's
//! signature checked, then decrypted), and signed unmask requests.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sotto_proto::v1;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::vault::write_atomically;

/// The investigator's keys: the authority's signing key and the delivery key
/// disclosures are encrypted to.
pub struct InvestigatorKeys {
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

fn secret_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn read_secret(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), key.as_mut())
        .with_context(|| format!("{} is damaged", path.display()))?;
    Ok(key)
}

impl InvestigatorKeys {
    /// Makes new keys in `dir` (which must not hold keys already).
    pub fn generate(dir: &Path, name: &str) -> Result<Self> {
        if secret_file(dir, "authority.key").exists() {
            bail!(
                "{} holds keys already; choose another folder",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let keys = InvestigatorKeys {
            name: name.to_owned(),
            signing: SigningKey::generate(&mut rand::rng()),
            delivery: StaticSecret::random_from_rng(&mut rand::rng()),
        };
        write_atomically(
            &secret_file(dir, "authority.key"),
            Zeroizing::new(hex::encode(keys.signing.to_bytes())).as_bytes(),
        )?;
        write_atomically(
            &secret_file(dir, "delivery.key"),
            Zeroizing::new(hex::encode(keys.delivery.to_bytes())).as_bytes(),
        )?;
        let public = KeysFile {
            name: name.to_owned(),
            authority_public_key: keys.public_key_hex(),
            delivery_public_key: hex::encode(PublicKey::from(&keys.delivery).as_bytes()),
        };
        write_atomically(&dir.join("keys.toml"), toml::to_string(&public)?.as_bytes())?;
        Ok(keys)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(dir.join("keys.toml")).with_context(|| {
            format!(
                "no investigator keys in {}: make them with `sotto-warrant keygen --out DIR`",
                dir.display()
            )
        })?;
        let public: KeysFile = toml::from_str(&text).context("keys.toml is damaged")?;
        Ok(InvestigatorKeys {
            name: public.name,
            signing: SigningKey::from_bytes(&*read_secret(&secret_file(dir, "authority.key"))?),
            delivery: StaticSecret::from(*read_secret(&secret_file(dir, "delivery.key"))?),
        })
    }

    /// The authority public key the relay's operator registers.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

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

    pub fn sign_unmask(&self, request: &v1::UnmaskRequest) -> v1::SignedUnmaskRequest {
        let bytes = request.encode_to_vec();
        let signature = self.signing.sign(&sotto_proto::transcript::unmask(&bytes));
        v1::SignedUnmaskRequest {
            request: bytes.into(),
            signature: signature.to_bytes().to_vec().into(),
        }
    }

    /// Decrypts a bundle and checks the relay's signature (against `pin` when given).
    pub fn open(
        &self,
        sealed: &v1::SealedDisclosure,
        pin: Option<&VerifyingKey>,
    ) -> Result<OpenedDisclosure> {
        let ephemeral: [u8; 32] = sealed
            .ephemeral_key
            .as_ref()
            .try_into()
            .context("the bundle is damaged (ephemeral key)")?;
        let nonce: [u8; 24] = sealed
            .nonce
            .as_ref()
            .try_into()
            .context("the bundle is damaged (nonce)")?;
        let ephemeral = PublicKey::from(ephemeral);
        let shared = self.delivery.diffie_hellman(&ephemeral);
        let mut salt = Vec::with_capacity(64);
        salt.extend_from_slice(ephemeral.as_bytes());
        salt.extend_from_slice(&self.delivery_public());
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes())
            .expand(sotto_proto::transcript::DISCLOSURE_SEAL_INFO, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let plaintext = XChaCha20Poly1305::new(&(*key).into())
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &salt,
                },
            )
            .map_err(|_| anyhow::anyhow!("the bundle does not decrypt with this delivery key (not for these keys, or altered)"))?;
        let signed =
            v1::SignedDisclosure::decode(plaintext.as_slice()).context("the bundle is damaged")?;
        let relay_key: [u8; 32] = signed
            .relay_key
            .as_ref()
            .try_into()
            .context("the bundle names no relay key")?;
        let relay_key =
            VerifyingKey::from_bytes(&relay_key).context("the bundle's relay key is invalid")?;
        if let Some(pin) = pin
            && pin != &relay_key
        {
            bail!(
                "the bundle is signed by relay key {}, not the pinned {}",
                hex::encode(relay_key.as_bytes()),
                hex::encode(pin.as_bytes())
            );
        }
        let signature = Signature::from_slice(&signed.signature)
            .context("the bundle's signature is malformed")?;
        relay_key
            .verify_strict(
                &sotto_proto::transcript::disclosure(&signed.disclosure),
                &signature,
            )
            .map_err(|_| {
                anyhow::anyhow!("the relay's signature over the disclosure does not verify")
            })?;
        let disclosure = v1::Disclosure::decode(signed.disclosure.as_ref())
            .context("the disclosure is damaged")?;
        Ok(OpenedDisclosure {
            disclosure,
            relay_key: hex::encode(relay_key.as_bytes()),
        })
    }
}

pub struct OpenedDisclosure {
    pub disclosure: v1::Disclosure,
    pub relay_key: String,
}

/// A signed warrant as a file: the exact bytes and the signature, in hex.
#[derive(Serialize, Deserialize)]
pub struct WarrantFile {
    pub format: String,
    pub warrant: String,
    pub signature: String,
}

impl WarrantFile {
    pub fn new(signed: &v1::SignedWarrant) -> Self {
        WarrantFile {
            format: "sotto-warrant/1".into(),
            warrant: hex::encode(&signed.warrant),
            signature: hex::encode(&signed.signature),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: WarrantFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a sotto warrant", path.display()))?;
        if file.format != "sotto-warrant/1" {
            bail!("{} is not a sotto-warrant/1 file", path.display());
        }
        Ok(file)
    }

    pub fn signed(&self) -> Result<v1::SignedWarrant> {
        Ok(v1::SignedWarrant {
            warrant: hex::decode(&self.warrant)
                .context("the warrant bytes are damaged")?
                .into(),
            signature: hex::decode(&self.signature)
                .context("the signature is damaged")?
                .into(),
        })
    }

    pub fn warrant(&self) -> Result<v1::Warrant> {
        Ok(v1::Warrant::decode(self.signed()?.warrant.as_ref())?)
    }
}
