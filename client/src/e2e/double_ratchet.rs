//! The Double Ratchet, as in Signal's specification (RatchetInitAlice,
//! RatchetInitBob, RatchetEncrypt, RatchetDecrypt with skipped message keys).
//!
//! Invariant: a message that does not decrypt changes nothing. Decryption works
//! on copies of the chain and root keys and commits them only once the AEAD tag
//! verified, so a forged, tampered or replayed message cannot disturb a session.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use super::E2eError;
use super::chain_key::ChainKey;
use super::header::Header;
use super::message_key::MessageKey;
use super::ratchet_key::RatchetKeyPair;
use super::root_key::RootKey;

/// The most message keys one chain may skip in one go (libsignal: 2,000 stored
/// per chain). A header further ahead is refused.
pub const MAX_SKIP: u32 = 2_000;

/// The most skipped message keys kept in total; the oldest go first (libsignal
/// keeps 2,000 per chain for 5 chains).
pub const MAX_SKIPPED_TOTAL: usize = 10_000;

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct DoubleRatchet {
    dhs: RatchetKeyPair,
    dhr: Option<[u8; 32]>,
    root: RootKey,
    sending: Option<ChainKey>,
    receiving: Option<ChainKey>,
    ns: u32,
    nr: u32,
    pn: u32,
    skipped: SkippedKeys,
}

/// Message keys of messages not received yet, by (ratchet key, number).
#[derive(Clone, Default, Serialize, Deserialize)]
struct SkippedKeys {
    order: VecDeque<([u8; 32], u32)>,
    #[serde(with = "skipped_map")]
    keys: HashMap<([u8; 32], u32), StoredMessageKey>,
}

/// A stored skipped message key (kept as bytes so it can be cloned and stored).
#[derive(Clone, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct StoredMessageKey([u8; 32]);

mod skipped_map {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::StoredMessageKey;

    type Map = HashMap<([u8; 32], u32), StoredMessageKey>;

    pub fn serialize<S: Serializer>(map: &Map, s: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<(&[u8; 32], u32, &StoredMessageKey)> =
            map.iter().map(|((k, n), v)| (k, *n, v)).collect();
        entries.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let entries: Vec<([u8; 32], u32, StoredMessageKey)> = Vec::deserialize(d)?;
        Ok(entries.into_iter().map(|(k, n, v)| ((k, n), v)).collect())
    }
}

impl SkippedKeys {
    fn get(&self, dh: &[u8; 32], n: u32) -> Option<MessageKey> {
        self.keys.get(&(*dh, n)).map(|mk| MessageKey::new(mk.0))
    }

    fn remove(&mut self, dh: &[u8; 32], n: u32) {
        self.keys.remove(&(*dh, n));
        self.order.retain(|(k, m)| !(k == dh && *m == n));
    }

    fn insert(&mut self, dh: [u8; 32], n: u32, mk: [u8; 32]) {
        self.keys.insert((dh, n), StoredMessageKey(mk));
        self.order.push_back((dh, n));
        while self.order.len() > MAX_SKIPPED_TOTAL {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Message keys collected while catching a chain up, committed only on success.
struct PendingSkips(Vec<([u8; 32], u32, Zeroizing<[u8; 32]>)>);

fn skip_ahead(
    chain: &mut ChainKey,
    dh: [u8; 32],
    from: u32,
    until: u32,
    pending: &mut PendingSkips,
) -> Result<(), E2eError> {
    if until < from {
        return Ok(());
    }
    if until - from > MAX_SKIP {
        return Err(E2eError::TooFarAhead);
    }
    for n in from..until {
        let mk = chain.message_key();
        pending.0.push((dh, n, Zeroizing::new(mk.bytes())));
        chain.advance();
    }
    Ok(())
}

impl DoubleRatchet {
    /// RatchetInitAlice: the initiator knows the responder's signed prekey as
    /// the first ratchet key and can send at once.
    pub(super) fn init_alice(shared: [u8; 32], bob_ratchet: &PublicKey) -> Self {
        let dhs = RatchetKeyPair::generate();
        let (root, sending) = RootKey::new(shared).advance(&dhs.diffie_hellman(bob_ratchet));
        DoubleRatchet {
            dhs,
            dhr: Some(bob_ratchet.to_bytes()),
            root,
            sending: Some(sending),
            receiving: None,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: SkippedKeys::default(),
        }
    }

    /// RatchetInitBob: the responder's first ratchet key is its signed prekey.
    pub(super) fn init_bob(shared: [u8; 32], signed_prekey: RatchetKeyPair) -> Self {
        DoubleRatchet {
            dhs: signed_prekey,
            dhr: None,
            root: RootKey::new(shared),
            sending: None,
            receiving: None,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: SkippedKeys::default(),
        }
    }

    /// RatchetEncrypt: the header and ciphertext of one message.
    pub(super) fn encrypt(
        &mut self,
        ad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Header, Vec<u8>), E2eError> {
        let chain = self.sending.as_mut().ok_or(E2eError::CannotSendYet)?;
        let mk = chain.message_key();
        chain.advance();
        let header = Header {
            dh: self.dhs.public().to_bytes(),
            pn: self.pn,
            n: self.ns,
        };
        self.ns += 1;
        let ciphertext = mk.encrypt(&associated_data(ad, &header), plaintext);
        Ok((header, ciphertext))
    }

    /// RatchetDecrypt. On any error the state is exactly as before.
    pub(super) fn decrypt(
        &mut self,
        ad: &[u8],
        header: &Header,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let full_ad = associated_data(ad, header);
        if let Some(mk) = self.skipped.get(&header.dh, header.n) {
            let plaintext = mk.decrypt(&full_ad, ciphertext).ok_or(E2eError::Decrypt)?;
            self.skipped.remove(&header.dh, header.n);
            return Ok(plaintext);
        }
        let mut pending = PendingSkips(Vec::new());
        if self.dhr == Some(header.dh) {
            // Same receiving chain.
            let mut chain = self.receiving.clone().ok_or(E2eError::Decrypt)?;
            if header.n < self.nr {
                return Err(E2eError::Replayed);
            }
            skip_ahead(&mut chain, header.dh, self.nr, header.n, &mut pending)?;
            let mk = chain.message_key();
            chain.advance();
            let plaintext = mk.decrypt(&full_ad, ciphertext).ok_or(E2eError::Decrypt)?;
            self.receiving = Some(chain);
            self.nr = header.n + 1;
            self.commit_skips(pending);
            return Ok(plaintext);
        }

        // A new ratchet key from the peer: a DH ratchet step.
        let mut old_chain = self.receiving.clone();
        if let (Some(chain), Some(dhr)) = (old_chain.as_mut(), self.dhr) {
            if header.pn < self.nr {
                // The peer's previous chain was shorter than what we received: nonsense.
                return Err(E2eError::Decrypt);
            }
            skip_ahead(chain, dhr, self.nr, header.pn, &mut pending)?;
        }
        let their = header.public_key();
        let (root, mut receiving) = self.root.advance(&self.dhs.diffie_hellman(&their));
        skip_ahead(&mut receiving, header.dh, 0, header.n, &mut pending)?;
        let mk = receiving.message_key();
        receiving.advance();
        let plaintext = mk.decrypt(&full_ad, ciphertext).ok_or(E2eError::Decrypt)?;

        // Authentic: take the step for real.
        let dhs = RatchetKeyPair::generate();
        let (root, sending) = root.advance(&dhs.diffie_hellman(&their));
        self.pn = self.ns;
        self.ns = 0;
        self.nr = header.n + 1;
        self.dhr = Some(header.dh);
        self.dhs = dhs;
        self.root = root;
        self.sending = Some(sending);
        self.receiving = Some(receiving);
        self.commit_skips(pending);
        Ok(plaintext)
    }

    fn commit_skips(&mut self, pending: PendingSkips) {
        for (dh, n, mk) in pending.0 {
            self.skipped.insert(dh, n, *mk);
        }
    }

    #[cfg(test)]
    pub(super) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }
}

fn associated_data(ad: &[u8], header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(ad.len() + super::header::HEADER_LEN);
    out.extend_from_slice(ad);
    out.extend_from_slice(&header.encode());
    out
}
