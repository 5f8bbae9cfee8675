//! Sender Keys for secret groups, after libsignal's group cipher: each member
//! has, per group, a sender key (a 31-bit chain id, an HMAC chain key, an
//! Ed25519 signing key, an iteration) and encrypts each group message once
//! under it, however many members read it.
//!
//! - [`OwnSenderKey`]: our sender key in one group: [`OwnSenderKey::encrypt`],
//!   [`OwnSenderKey::distribution`] (what the other members need, sent to each
//!   inside the pairwise session), [`OwnSenderKey::rotate`] (after a member left);
//! - [`SenderKeyRecord`]: what we hold of one other member's sender keys in
//!   one group, newest first, at most [`MAX_SENDER_KEY_STATES`]:
//!   [`SenderKeyRecord::process_distribution`], [`SenderKeyRecord::decrypt`].
//!
//! Per message: the header (version, group id, distribution id, chain id,
//! iteration) is the AEAD's associated data, and the sender signs
//! version ‖ length of header ‖ header ‖ ciphertext. A receiver checks the
//! header against the record and verifies the signature (strictly) before it
//! derives any key.
//!
//! Invariants: every secret is zeroized on drop; a message that is refused
//! leaves the record exactly as it was (keys are derived on copies and
//! committed once the message decrypted); an iteration is accepted once (an
//! earlier one without a stored key is refused as a duplicate); no iteration
//! arithmetic wraps.

use std::collections::VecDeque;

use bytes::Bytes;
use prost::Message;
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize};
use sotto_proto::v1;
use zeroize::Zeroizing;

use super::E2eError;
use super::sender_chain_key::SenderChainKey;
use super::sender_message_key::SenderMessageKey;
use super::sender_signing_key::SenderSigningKey;

/// The version of group messages and distributions this client makes and takes.
pub const SENDER_KEY_VERSION: u32 = 1;

/// The most iterations a message may be ahead of a chain (libsignal: 25,000).
pub const MAX_FORWARD_JUMPS: u32 = 25_000;

/// The most skipped message keys kept per sender key; the oldest go first
/// (libsignal: 2,000).
pub const MAX_MESSAGE_KEYS: usize = 2_000;

/// The most sender keys kept per member and group, newest first; the oldest
/// is evicted (libsignal: 5).
pub const MAX_SENDER_KEY_STATES: usize = 5;

/// The longest group id, in bytes (a group id is never empty).
pub const MAX_GROUP_ID_LEN: usize = 64;

/// The length of a distribution id.
pub const DISTRIBUTION_ID_LEN: usize = 16;

/// Chain ids are 31-bit, as libsignal's.
const CHAIN_ID_LIMIT: u32 = 1 << 31;

/// One sender key: ours (with its signing half) or a member's (verify only).
#[derive(Clone, Serialize, Deserialize)]
struct SenderKeyState {
    distribution_id: [u8; DISTRIBUTION_ID_LEN],
    chain_id: u32,
    /// The chain key of the next iteration not received (or not sent) yet.
    chain: SenderChainKey,
    signing: SenderSigningKey,
    /// Keys of iterations skipped over and not received yet, oldest first.
    #[serde(deserialize_with = "at_most_message_keys")]
    skipped: VecDeque<SenderMessageKey>,
}

impl SenderKeyState {
    /// Encrypts and signs the next message of our own chain.
    fn encrypt(&mut self, group_id: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        // Refused before anything is used: the last iteration could not be followed.
        let next = self.chain.next()?;
        let header = v1::GroupMessageHeader {
            version: SENDER_KEY_VERSION,
            group_id: Bytes::copy_from_slice(group_id),
            distribution_id: Bytes::copy_from_slice(&self.distribution_id),
            chain_id: self.chain_id,
            iteration: self.chain.iteration(),
        }
        .encode_to_vec();
        let ciphertext = self.chain.message_key().encrypt(&header, plaintext);
        let signature = self
            .signing
            .sign(&signed_bytes(&header, &ciphertext))
            .ok_or(E2eError::NotOurSenderKey)?;
        self.chain = next;
        Ok(v1::SenderKeyMessage {
            header: header.into(),
            ciphertext: ciphertext.into(),
            signature: signature.to_bytes().to_vec().into(),
        }
        .encode_to_vec())
    }

    /// Decrypts message `iteration` of this chain (its signature already
    /// verified). On error nothing changed.
    fn decrypt(
        &mut self,
        iteration: u32,
        ad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let current = self.chain.iteration();
        if iteration < current {
            // Only a skipped key can open it; without one it is a duplicate.
            let index = self
                .skipped
                .iter()
                .position(|k| k.iteration() == iteration)
                .ok_or(E2eError::Replayed)?;
            let plaintext = self.skipped[index]
                .decrypt(ad, ciphertext)
                .ok_or(E2eError::Decrypt)?;
            self.skipped.remove(index);
            return Ok(plaintext);
        }
        // iteration >= current: no underflow.
        if iteration - current > MAX_FORWARD_JUMPS {
            return Err(E2eError::GroupTooFarAhead);
        }
        let mut chain = self.chain.clone();
        let mut skipped = Vec::new();
        while chain.iteration() < iteration {
            // Of the keys skipped over, only the newest MAX_MESSAGE_KEYS could be kept.
            if iteration - chain.iteration() <= MAX_MESSAGE_KEYS as u32 {
                skipped.push(chain.message_key());
            }
            chain = chain.next()?;
        }
        let key = chain.message_key();
        let next = chain.next()?;
        let plaintext = key.decrypt(ad, ciphertext).ok_or(E2eError::Decrypt)?;
        self.chain = next;
        self.skipped.extend(skipped);
        while self.skipped.len() > MAX_MESSAGE_KEYS {
            self.skipped.pop_front();
        }
        Ok(plaintext)
    }
}

/// What a sender signs: version ‖ header length (u64 BE) ‖ header ‖
/// ciphertext. The length keeps a byte from moving between header and
/// ciphertext under the same signature.
fn signed_bytes(header: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + header.len() + ciphertext.len());
    out.extend_from_slice(&SENDER_KEY_VERSION.to_be_bytes());
    out.extend_from_slice(&(header.len() as u64).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(ciphertext);
    out
}

fn check_version(version: u32) -> Result<(), E2eError> {
    if version != SENDER_KEY_VERSION {
        return Err(E2eError::UnsupportedGroupVersion(version));
    }
    Ok(())
}

fn check_group_id(group_id: &[u8]) -> Result<(), E2eError> {
    if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_LEN {
        return Err(E2eError::BadGroupId);
    }
    Ok(())
}

fn check_chain_id(chain_id: u32) -> Result<u32, E2eError> {
    if chain_id >= CHAIN_ID_LIMIT {
        return Err(E2eError::Malformed);
    }
    Ok(chain_id)
}

fn distribution_id(bytes: &[u8]) -> Result<[u8; DISTRIBUTION_ID_LEN], E2eError> {
    bytes.try_into().map_err(|_| E2eError::Malformed)
}

/// Our sender key in one group. Not `Clone`: two copies would encrypt two
/// messages under one message key.
#[derive(Serialize, Deserialize)]
pub struct OwnSenderKey {
    group_id: Vec<u8>,
    state: SenderKeyState,
}

impl OwnSenderKey {
    /// A new sender key for `group_id` (1 to [`MAX_GROUP_ID_LEN`] bytes):
    /// random distribution id, chain id, chain key and signing key.
    pub fn create(group_id: &[u8]) -> Result<Self, E2eError> {
        check_group_id(group_id)?;
        let mut distribution_id = [0u8; DISTRIBUTION_ID_LEN];
        rand::rng().fill_bytes(&mut distribution_id);
        Ok(OwnSenderKey {
            group_id: group_id.to_vec(),
            state: fresh_state(distribution_id, None),
        })
    }

    /// Encrypts one group message: the encoded `SenderKeyMessage`, the same
    /// bytes for every member.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        self.state.encrypt(&self.group_id, plaintext)
    }

    /// The encoded `SenderKeyDistribution` of the current chain at its next
    /// iteration: whoever gets it reads our messages from now on, not before.
    /// It holds the chain key: send it only inside a pairwise secret session.
    pub fn distribution(&self) -> Zeroizing<Vec<u8>> {
        let s = &self.state;
        let chain_key = Zeroizing::new(s.chain.key_bytes().to_vec());
        Zeroizing::new(
            v1::SenderKeyDistribution {
                version: SENDER_KEY_VERSION,
                distribution_id: Bytes::copy_from_slice(&s.distribution_id),
                chain_id: s.chain_id,
                iteration: s.chain.iteration(),
                // Shared, not copied, so it is zeroized with `chain_key`.
                chain_key: Bytes::from_owner(chain_key),
                signing_key: Bytes::copy_from_slice(&s.signing.public_bytes()),
            }
            .encode_to_vec(),
        )
    }

    /// Replaces the sender key by a new one (new chain id, chain key and
    /// signing key; same distribution id), as when a member leaves: whoever
    /// held the old one cannot read what follows. Send the new
    /// [`distribution`](Self::distribution) to the remaining members.
    pub fn rotate(&mut self) {
        self.state = fresh_state(self.state.distribution_id, Some(self.state.chain_id));
    }

    pub fn group_id(&self) -> &[u8] {
        &self.group_id
    }

    /// The current chain id.
    pub fn chain_id(&self) -> u32 {
        self.state.chain_id
    }

    /// The iteration the next message will carry.
    pub fn iteration(&self) -> u32 {
        self.state.chain.iteration()
    }
}

#[cfg(test)]
impl OwnSenderKey {
    /// Takes `steps` real steps along the chain without sending anything.
    pub(super) fn advance_for_test(&mut self, steps: u32) {
        for _ in 0..steps {
            self.state.chain = self.state.chain.next().expect("not at the chain's end");
        }
    }

    /// Labels the chain's current key with `iteration`, as if the chain had
    /// come that far: only distributions made afterwards match it.
    pub(super) fn relabel_for_test(&mut self, iteration: u32) {
        self.state.chain = SenderChainKey::new(iteration, *self.state.chain.key_bytes());
    }

    /// Signs any header and ciphertext with this sender key, as a malicious
    /// member can with its own.
    pub(super) fn sign_for_test(&self, header: &[u8], ciphertext: &[u8]) -> Vec<u8> {
        self.state
            .signing
            .sign(&signed_bytes(header, ciphertext))
            .expect("our own key signs")
            .to_bytes()
            .to_vec()
    }
}

/// A new chain of ours: random chain id (31-bit, not `previous`), chain key
/// and signing key, at iteration 0.
fn fresh_state(
    distribution_id: [u8; DISTRIBUTION_ID_LEN],
    previous: Option<u32>,
) -> SenderKeyState {
    let mut rng = rand::rng();
    let chain_id = loop {
        let id = rng.next_u32() >> 1;
        if Some(id) != previous {
            break id;
        }
    };
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());
    SenderKeyState {
        distribution_id,
        chain_id,
        chain: SenderChainKey::new(0, *key),
        signing: SenderSigningKey::generate(),
        skipped: VecDeque::new(),
    }
}

/// What [`SenderKeyRecord::process_distribution`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistributionOutcome {
    /// A new sender key, now the newest (the oldest evicted beyond
    /// [`MAX_SENDER_KEY_STATES`]).
    Added,
    /// The chain was already held: the state we have is kept as it is.
    AlreadyHeld,
}

/// One member's sender keys in one group, as the other members hold them
/// (verifying keys only), newest first.
#[derive(Clone, Serialize, Deserialize)]
pub struct SenderKeyRecord {
    group_id: Vec<u8>,
    #[serde(deserialize_with = "at_most_states")]
    states: VecDeque<SenderKeyState>,
}

impl SenderKeyRecord {
    /// An empty record for a member of `group_id` (1 to [`MAX_GROUP_ID_LEN`] bytes).
    pub fn new(group_id: &[u8]) -> Result<Self, E2eError> {
        check_group_id(group_id)?;
        Ok(SenderKeyRecord {
            group_id: group_id.to_vec(),
            states: VecDeque::new(),
        })
    }

    /// Takes a member's `SenderKeyDistribution` (from our pairwise session
    /// with that member). A chain id already held keeps the state we have,
    /// whatever iteration the distribution names: that state already derives
    /// every later key, and taking an earlier iteration would let messages
    /// we already read be read again (a replay), while taking a later one
    /// would throw away keys of messages still on their way. The same chain
    /// id with another signing or distribution id is refused as a conflict.
    /// On error nothing changed.
    pub fn process_distribution(
        &mut self,
        distribution: &[u8],
    ) -> Result<DistributionOutcome, E2eError> {
        // Decoded from a buffer that is zeroized once the chain key, which
        // points into it, is dropped.
        let wire = Bytes::from_owner(Zeroizing::new(distribution.to_vec()));
        let d = v1::SenderKeyDistribution::decode(wire).map_err(|_| E2eError::Malformed)?;
        check_version(d.version)?;
        let distribution_id = distribution_id(&d.distribution_id)?;
        let chain_id = check_chain_id(d.chain_id)?;
        let chain_key: &[u8; 32] = d
            .chain_key
            .as_ref()
            .try_into()
            .map_err(|_| E2eError::Malformed)?;
        let signing = SenderSigningKey::from_public(&d.signing_key)?;
        if let Some(held) = self.states.iter().find(|s| s.chain_id == chain_id) {
            if held.distribution_id != distribution_id
                || held.signing.public_bytes() != signing.public_bytes()
            {
                return Err(E2eError::SenderKeyConflict);
            }
            return Ok(DistributionOutcome::AlreadyHeld);
        }
        self.states.push_front(SenderKeyState {
            distribution_id,
            chain_id,
            chain: SenderChainKey::new(d.iteration, *chain_key),
            signing,
            skipped: VecDeque::new(),
        });
        self.states.truncate(MAX_SENDER_KEY_STATES);
        Ok(DistributionOutcome::Added)
    }

    /// Decrypts one of this member's group messages (an encoded
    /// `SenderKeyMessage`). The header must name this record's group and a
    /// sender key we hold, and the signature must verify, before any key is
    /// derived. On error the record is unchanged.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let message = v1::SenderKeyMessage::decode(message).map_err(|_| E2eError::Malformed)?;
        // The header is parsed from the bytes that were signed, never re-encoded.
        let header = v1::GroupMessageHeader::decode(message.header.clone())
            .map_err(|_| E2eError::Malformed)?;
        check_version(header.version)?;
        if header.group_id.as_ref() != self.group_id.as_slice() {
            return Err(E2eError::WrongGroup);
        }
        let distribution_id = distribution_id(&header.distribution_id)?;
        let chain_id = check_chain_id(header.chain_id)?;
        let state = self
            .states
            .iter_mut()
            .find(|s| s.chain_id == chain_id && s.distribution_id == distribution_id)
            .ok_or(E2eError::UnknownSenderKey)?;
        state.signing.verify(
            &signed_bytes(&message.header, &message.ciphertext),
            &message.signature,
        )?;
        state.decrypt(header.iteration, &message.header, &message.ciphertext)
    }

    pub fn group_id(&self) -> &[u8] {
        &self.group_id
    }

    /// The chain ids held, newest first.
    pub fn chain_ids(&self) -> Vec<u32> {
        self.states.iter().map(|s| s.chain_id).collect()
    }

    /// The number of skipped message keys stored for `chain_id`.
    #[cfg(test)]
    pub(super) fn skipped_len(&self, chain_id: u32) -> Option<usize> {
        self.states
            .iter()
            .find(|s| s.chain_id == chain_id)
            .map(|s| s.skipped.len())
    }
}

fn at_most_message_keys<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<VecDeque<SenderMessageKey>, D::Error> {
    at_most(d, MAX_MESSAGE_KEYS)
}

fn at_most_states<'de, D: Deserializer<'de>>(d: D) -> Result<VecDeque<SenderKeyState>, D::Error> {
    at_most(d, MAX_SENDER_KEY_STATES)
}

/// A stored list, refused when longer than its bound.
fn at_most<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    bound: usize,
) -> Result<VecDeque<T>, D::Error> {
    let items = VecDeque::<T>::deserialize(d)?;
    if items.len() > bound {
        return Err(serde::de::Error::custom(format!(
            "a stored sender key list holds {} entries, more than its bound {bound}",
            items.len()
        )));
    }
    Ok(items)
}
