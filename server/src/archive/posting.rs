//! Postings: which messages one person took part in, in id order. A chunk of
//! them is one value of `ByParticipant`; the newest live in memory.

use crate::RelayError;

/// One message a user took part in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Posting {
    pub id: u64,
    /// The segment (its number) that holds it,
    pub segment: u64,
    /// and its place there.
    pub index: u16,
    /// The user sent it (so it is not in their inbox).
    pub sent: bool,
    /// Its sender's blind and its conversation's (a pair's or a group's):
    /// enough to tell its sender of a delivery without reading the message
    /// itself but once a conversation.
    pub from: [u8; 16],
    pub conversation: [u8; 16],
}

const POSTING_LEN: usize = 51;

impl Posting {
    pub fn encode_all(postings: &[Posting]) -> Vec<u8> {
        let mut out = Vec::with_capacity(postings.len() * POSTING_LEN);
        for p in postings {
            out.extend_from_slice(&p.id.to_be_bytes());
            out.extend_from_slice(&p.segment.to_be_bytes());
            out.extend_from_slice(&p.index.to_be_bytes());
            out.push(u8::from(p.sent));
            out.extend_from_slice(&p.from);
            out.extend_from_slice(&p.conversation);
        }
        out
    }

    pub fn decode_all(bytes: &[u8]) -> Result<Vec<Posting>, RelayError> {
        if !bytes.len().is_multiple_of(POSTING_LEN) {
            return Err(RelayError::Corrupt("a chunk of postings"));
        }
        Ok(bytes
            .chunks_exact(POSTING_LEN)
            .map(|c| Posting {
                id: u64::from_be_bytes(c[..8].try_into().expect("8 bytes")),
                segment: u64::from_be_bytes(c[8..16].try_into().expect("8 bytes")),
                index: u16::from_be_bytes(c[16..18].try_into().expect("2 bytes")),
                sent: c[18] == 1,
                from: c[19..35].try_into().expect("16 bytes"),
                conversation: c[35..51].try_into().expect("16 bytes"),
            })
            .collect())
    }
}

/// Postings gathered in id order by `NormalArchive::postings`.
pub(super) struct Found<F> {
    pub keep: F,
    pub limit: usize,
    pub out: Vec<Posting>,
    /// The newest id offered: chunks rewritten after a crash may overlap, and
    /// recent postings may also be in a chunk just written; ids only grow.
    pub newest: Option<u64>,
    /// See `NormalArchive::postings`.
    pub rejected_to: u64,
}

impl<F: Fn(&Posting) -> bool> Found<F> {
    pub fn full(&self) -> bool {
        self.out.len() >= self.limit
    }

    /// Takes the next posting (a repeat is ignored); false once full.
    pub fn offer(&mut self, p: Posting) -> bool {
        if self.newest.is_some_and(|n| p.id <= n) {
            return !self.full();
        }
        self.newest = Some(p.id);
        if (self.keep)(&p) {
            self.out.push(p);
        } else if self.out.is_empty() {
            self.rejected_to = p.id;
        }
        !self.full()
    }
}
