//! A DH ratchet key pair. The public half is computed once, when the pair is
//! made, not once per message.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};

pub(super) struct RatchetKeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl RatchetKeyPair {
    pub(super) fn generate() -> Self {
        Self::from_secret(StaticSecret::random_from_rng(&mut rand::rng()))
    }

    pub(super) fn from_secret(secret: StaticSecret) -> Self {
        let public = PublicKey::from(&secret);
        RatchetKeyPair { secret, public }
    }

    pub(super) fn public(&self) -> &PublicKey {
        &self.public
    }

    pub(super) fn diffie_hellman(&self, their: &PublicKey) -> SharedSecret {
        self.secret.diffie_hellman(their)
    }
}

impl Clone for RatchetKeyPair {
    fn clone(&self) -> Self {
        RatchetKeyPair {
            secret: self.secret.clone(),
            public: self.public,
        }
    }
}

// Stored as the secret's bytes only; the public half is recomputed on load.
impl Serialize for RatchetKeyPair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        zeroize::Zeroizing::new(self.secret.to_bytes()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RatchetKeyPair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = zeroize::Zeroizing::new(<[u8; 32]>::deserialize(d)?);
        Ok(Self::from_secret(StaticSecret::from(*bytes)))
    }
}
