//! Every session with one peer: the current one, which sends, and up to
//! [`MAX_PREVIOUS`] earlier ones, which still receive (Signal keeps the same
//! number). Messages sent on a session the other side has since replaced, or
//! crossing a session reset, still decrypt.
//!
//! Simultaneous initiation converges: when both sides started a session
//! before hearing from the other, each keeps the one with the smaller base
//! key as current, so both send on the same session from then on.
//!
//! [`SeenBaseKeys`] remembers the base keys of first messages accepted, so a
//! first message replayed after its session is gone is refused, not answered
//! with a new session.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sotto_proto::v1;
use zeroize::Zeroizing;

use super::E2eError;
use super::session::Session;

/// How many replaced sessions with one peer are kept for receiving.
pub const MAX_PREVIOUS: usize = 40;
/// How many accepted first messages' base keys are remembered.
pub const MAX_SEEN_BASE_KEYS: usize = 4096;

#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct PeerSessions {
    current: Session,
    previous: VecDeque<Session>,
}

/// What the vault holds: the set, or (from before there were sets) one session.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Set {
        current: Session,
        previous: VecDeque<Session>,
    },
    Single(Session),
}

impl From<Stored> for PeerSessions {
    fn from(stored: Stored) -> Self {
        match stored {
            Stored::Set { current, previous } => PeerSessions { current, previous },
            Stored::Single(current) => PeerSessions::new(current),
        }
    }
}

impl PeerSessions {
    pub fn new(current: Session) -> Self {
        PeerSessions {
            current,
            previous: VecDeque::new(),
        }
    }

    /// The session messages are sent on.
    pub fn current(&self) -> &Session {
        &self.current
    }

    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<v1::SecretPayload, E2eError> {
        self.current.encrypt(plaintext)
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Session> {
        std::iter::once(&mut self.current).chain(self.previous.iter_mut())
    }

    /// Decrypts with whichever kept session the message belongs to. Nothing
    /// changes on failure; the first error is returned.
    pub fn decrypt(
        &mut self,
        message: &v1::RatchetMessage,
    ) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let mut first_error = None;
        for session in self.all_mut() {
            match session.decrypt(message) {
                Ok(plaintext) => return Ok(plaintext),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(E2eError::Decrypt))
    }

    /// The session a first message with this base key belongs to, if kept.
    pub fn with_base_key(&mut self, base_key: &[u8]) -> Option<&mut Session> {
        self.all_mut().find(|s| s.base_key().as_slice() == base_key)
    }

    /// A session the peer started (from its first message). It becomes
    /// current, unless ours is an initiation the peer has not answered and
    /// has the smaller base key: then the peer, seeing ours, makes the same
    /// choice, and both keep ours. An unanswered classical (pre-PQXDH)
    /// initiation never wins: the peer refuses its first message, so it
    /// would never be answered, and it is not post-quantum.
    pub fn add_inbound(&mut self, session: Session) {
        if self.current.is_unanswered()
            && self.current.is_post_quantum()
            && self.current.base_key() < session.base_key()
        {
            self.keep_previous(session);
        } else {
            let old = std::mem::replace(&mut self.current, session);
            self.keep_previous(old);
        }
    }

    /// A fresh session we started (a session reset): it sends from now on.
    pub fn restart(&mut self, session: Session) {
        let old = std::mem::replace(&mut self.current, session);
        self.keep_previous(old);
    }

    fn keep_previous(&mut self, session: Session) {
        self.previous.push_front(session);
        self.previous.truncate(MAX_PREVIOUS);
    }

    /// Drops every session made with another identity key than `key`.
    /// Returns false when the current one was among them (none is left to send on).
    pub fn retain_identity(&mut self, key: &[u8; 32]) -> bool {
        self.previous.retain(|s| &s.peer_identity() == key);
        &self.current.peer_identity() == key
    }
}

/// Base keys of first messages this device accepted, most recent last.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct SeenBaseKeys(VecDeque<[u8; 32]>);

impl SeenBaseKeys {
    pub fn contains(&self, base_key: &[u8]) -> bool {
        self.0.iter().any(|k| k.as_slice() == base_key)
    }

    pub fn insert(&mut self, base_key: [u8; 32]) {
        if !self.contains(&base_key) {
            self.0.push_back(base_key);
            while self.0.len() > MAX_SEEN_BASE_KEYS {
                self.0.pop_front();
            }
        }
    }
}
