//! A user's long-term identity: an Ed25519 signing key (what the relay binds the
//! username to, and what signs everything else) and an X25519 identity DH key
//! vouched for by it, used by X3DH. Both are zeroized on drop.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

pub struct Identity {
    signing: SigningKey,
    dh: StaticSecret,
}

impl Identity {
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        Identity {
            signing: SigningKey::generate(&mut rng),
            dh: StaticSecret::random_from_rng(&mut rng),
        }
    }

    pub fn from_secrets(signing: &[u8; 32], dh: &[u8; 32]) -> Self {
        Identity {
            signing: SigningKey::from_bytes(signing),
            dh: StaticSecret::from(*dh),
        }
    }

    /// The secret halves, for the vault only.
    pub fn secrets(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        (
            Zeroizing::new(self.signing.to_bytes()),
            Zeroizing::new(self.dh.to_bytes()),
        )
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn dh_public(&self) -> PublicKey {
        PublicKey::from(&self.dh)
    }

    pub(crate) fn dh_secret(&self) -> &StaticSecret {
        &self.dh
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }
}
