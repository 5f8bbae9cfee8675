//! The Double Ratchet message header: the sender's current ratchet public key,
//! the length of its previous sending chain (PN), and the message number (N).
//! Encoded as 40 bytes: key ‖ PN (u32 BE) ‖ N (u32 BE).

use x25519_dalek::PublicKey;

pub(super) const HEADER_LEN: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub dh: [u8; 32],
    pub pn: u32,
    pub n: u32,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(&self.dh);
        out[32..36].copy_from_slice(&self.pn.to_be_bytes());
        out[36..].copy_from_slice(&self.n.to_be_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != HEADER_LEN {
            return None;
        }
        let mut dh = [0u8; 32];
        dh.copy_from_slice(&bytes[..32]);
        Some(Header {
            dh,
            pn: u32::from_be_bytes(bytes[32..36].try_into().ok()?),
            n: u32::from_be_bytes(bytes[36..].try_into().ok()?),
        })
    }

    pub(super) fn public_key(&self) -> PublicKey {
        PublicKey::from(self.dh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_refuses_other_lengths() {
        let h = Header {
            dh: [7; 32],
            pn: 3,
            n: 70_000,
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
        assert_eq!(Header::decode(&h.encode()[..39]), None);
    }
}
