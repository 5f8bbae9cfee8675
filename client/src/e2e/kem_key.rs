//! ML-KEM-1024 (FIPS 203) keys for PQXDH, through `libcrux-ml-kem` (the
//! formally verified implementation libsignal uses), with randomness from the
//! workspace's `rand` passed in explicitly, so the known-answer tests run the
//! very functions sessions use.
//!
//! A key pair is kept as its 64-byte FIPS 203 seed (d ‖ z), zeroized on drop;
//! the 3,168-byte decapsulation key is derived from it for each use and wiped
//! after. (Copies libcrux makes on its own stack while it computes are not
//! within reach.)

use libcrux_ml_kem::mlkem1024::{
    self, MlKem1024Ciphertext, MlKem1024PrivateKey, MlKem1024PublicKey,
};
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

use super::E2eError;

/// Bytes of an ML-KEM-1024 encapsulation (public) key.
pub const PUBLIC_KEY_LEN: usize = 1568;
/// Bytes of an ML-KEM-1024 ciphertext.
pub const CIPHERTEXT_LEN: usize = 1568;
/// Bytes of a key pair's seed: d ‖ z (FIPS 203, ML-KEM.KeyGen_internal).
pub(super) const SEED_LEN: usize = 64;

/// A shared secret from encapsulation or decapsulation.
pub(super) type KemSharedSecret = Zeroizing<[u8; 32]>;

/// A decapsulation key, wiped when dropped.
struct PrivateKey(MlKem1024PrivateKey);

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.0[0..].zeroize();
    }
}

/// An ML-KEM-1024 key pair, kept as its seed.
pub(super) struct KemKeyPair {
    seed: Zeroizing<[u8; SEED_LEN]>,
    public: KemPublicKey,
}

impl KemKeyPair {
    pub(super) fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rand::rng().fill_bytes(seed.as_mut());
        Self::from_seed(seed)
    }

    /// The key pair FIPS 203's KeyGen_internal makes from `seed` = d ‖ z.
    pub(super) fn from_seed(seed: Zeroizing<[u8; SEED_LEN]>) -> Self {
        let (private, public) = mlkem1024::generate_key_pair(*seed).into_parts();
        drop(PrivateKey(private));
        KemKeyPair {
            seed,
            public: KemPublicKey(Box::new(public)),
        }
    }

    pub(super) fn public(&self) -> &KemPublicKey {
        &self.public
    }

    fn private(&self) -> PrivateKey {
        let (private, _) = mlkem1024::generate_key_pair(*self.seed).into_parts();
        PrivateKey(private)
    }

    /// ML-KEM.Decaps. A ciphertext that was altered gives another secret
    /// (implicit rejection), never an error: the session's first message
    /// then fails to decrypt.
    pub(super) fn decapsulate(&self, ciphertext: &KemCiphertext) -> KemSharedSecret {
        decapsulate_with(&self.private(), ciphertext)
    }

    /// The decapsulation key's bytes, for the known-answer tests.
    #[cfg(test)]
    pub(super) fn private_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.private().0.as_slice().to_vec())
    }
}

fn decapsulate_with(private: &PrivateKey, ciphertext: &KemCiphertext) -> KemSharedSecret {
    Zeroizing::new(mlkem1024::decapsulate(&private.0, &ciphertext.0))
}

/// ML-KEM.Decaps with a decapsulation key given as bytes (the known-answer
/// tests' vectors give keys in that form).
#[cfg(test)]
pub(super) fn decapsulate_with_private(
    private: &[u8],
    ciphertext: &KemCiphertext,
) -> Option<KemSharedSecret> {
    let key = PrivateKey(MlKem1024PrivateKey::try_from(private).ok()?);
    Some(decapsulate_with(&key, ciphertext))
}

impl Clone for KemKeyPair {
    fn clone(&self) -> Self {
        KemKeyPair {
            seed: self.seed.clone(),
            public: self.public.clone(),
        }
    }
}

// Stored as the seed only; the public key is derived again on load.
impl Serialize for KemKeyPair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The hex is the private key too: wiped when dropped.
        s.serialize_str(&Zeroizing::new(hex::encode(self.seed.as_ref())))
    }
}

impl<'de> Deserialize<'de> for KemKeyPair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        hex::decode_to_slice(text.as_bytes(), seed.as_mut())
            .map_err(|_| serde::de::Error::custom("an ML-KEM seed is 64 bytes in hex"))?;
        Ok(Self::from_seed(seed))
    }
}

/// An ML-KEM-1024 encapsulation key that passed FIPS 203's input check.
#[derive(Clone)]
pub(super) struct KemPublicKey(Box<MlKem1024PublicKey>);

impl KemPublicKey {
    /// The key in `bytes`, if it is one: 1,568 bytes whose coefficients are
    /// all reduced (FIPS 203's encapsulation key check).
    pub(super) fn from_bytes(bytes: &[u8]) -> Result<Self, E2eError> {
        let key = MlKem1024PublicKey::try_from(bytes).map_err(|_| E2eError::BadKey)?;
        if !mlkem1024::validate_public_key(&key) {
            return Err(E2eError::BadKey);
        }
        Ok(KemPublicKey(Box::new(key)))
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// ML-KEM.Encaps with fresh randomness.
    pub(super) fn encapsulate(&self) -> (KemCiphertext, KemSharedSecret) {
        let mut m = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(m.as_mut());
        self.encapsulate_with(&m)
    }

    /// ML-KEM.Encaps_internal with the randomness `m` given.
    pub(super) fn encapsulate_with(&self, m: &[u8; 32]) -> (KemCiphertext, KemSharedSecret) {
        let (ciphertext, shared) = mlkem1024::encapsulate(&self.0, *m);
        (KemCiphertext(Box::new(ciphertext)), Zeroizing::new(shared))
    }
}

/// An ML-KEM-1024 ciphertext.
pub(super) struct KemCiphertext(Box<MlKem1024Ciphertext>);

impl KemCiphertext {
    pub(super) fn from_bytes(bytes: &[u8]) -> Result<Self, E2eError> {
        MlKem1024Ciphertext::try_from(bytes)
            .map(|c| KemCiphertext(Box::new(c)))
            .map_err(|_| E2eError::Malformed)
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }
}
