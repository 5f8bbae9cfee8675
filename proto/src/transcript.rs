//! The exact bytes each signature in sotto covers. Every transcript starts with a
//! distinct context string, so a signature made for one purpose can never be
//! presented for another.

/// What a login (or registration) signs: the relay's fresh nonce and keying
/// material exported from this connection's TLS session, so a captured login
/// cannot be replayed on another connection.
pub fn login(username: &str, nonce: &[u8], exporter: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + username.len() + nonce.len() + exporter.len());
    out.extend_from_slice(b"sotto/1 login\0");
    push_field(&mut out, username.as_bytes());
    push_field(&mut out, nonce);
    push_field(&mut out, exporter);
    out
}

/// What the identity key signs to vouch for its X25519 identity DH key.
pub fn identity_dh(public_key: &[u8]) -> Vec<u8> {
    tagged(b"sotto/1 identity dh\0", public_key)
}

/// What the identity key signs to vouch for a signed prekey.
pub fn signed_prekey(public_key: &[u8]) -> Vec<u8> {
    tagged(b"sotto/1 signed prekey\0", public_key)
}

/// The KEM every PQ prekey is for; part of what its signature covers.
pub const PQ_KEM: &str = "ML-KEM-1024";

/// What the identity key signs to vouch for a post-quantum (ML-KEM-1024)
/// prekey: its own context string, which names the KEM, then the prekey's
/// id and key. A curve key's signature (identity dh, signed prekey) covers
/// other bytes, so neither can be presented as the other.
pub fn pq_prekey(id: u32, public_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + public_key.len());
    out.extend_from_slice(b"sotto/1 pq prekey\0");
    push_field(&mut out, PQ_KEM.as_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    push_field(&mut out, public_key);
    out
}

/// What an authority signs: the exact encoded `Warrant`.
pub fn warrant(encoded: &[u8]) -> Vec<u8> {
    tagged(b"sotto/1 warrant\0", encoded)
}

/// What an authority signs to ask for pseudonyms to be revealed.
pub fn unmask(encoded: &[u8]) -> Vec<u8> {
    tagged(b"sotto/1 unmask\0", encoded)
}

/// What an authority signs to postpone a warrant's notices.
pub fn notice_extension(encoded: &[u8]) -> Vec<u8> {
    tagged(b"sotto/1 notice extension\0", encoded)
}

/// What the relay's disclosure key signs: the exact encoded `Disclosure`.
pub fn disclosure(encoded: &[u8]) -> Vec<u8> {
    tagged(b"sotto/1 disclosure\0", encoded)
}

/// What the relay's disclosure key signs to answer an unmask request: the exact encoded `Unmasked`.
pub fn unmasked(encoded: &[u8]) -> Vec<u8> {
    tagged(b"sotto/1 unmasked\0", encoded)
}

/// What the relay's audit key signs: a tree head of its transparency log
/// (RFC 9162 tree size, root hash, and the time it was signed, ms since the epoch).
pub fn tree_head(size: u64, root: &[u8; 32], time_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"sotto/1 tree head\0");
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.extend_from_slice(root);
    out
}

/// What the relay's disclosure key signs to vouch for its audit key, so an
/// investigator who knows the relay by its disclosure key (the warrant names
/// it) can check the tree heads in its receipts.
pub fn audit_key(public_key: &[u8]) -> Vec<u8> {
    tagged(b"sotto/1 audit key\0", public_key)
}

/// HKDF info of the key a disclosure bundle is encrypted under: X25519 between
/// the relay's ephemeral key and the warrant's delivery key, salt = ephemeral
/// public ‖ delivery public, then XChaCha20-Poly1305 with that salt as AD.
pub const DISCLOSURE_SEAL_INFO: &[u8] = b"sotto/1 disclosure seal";

/// HKDF info of the key an unmask answer is encrypted under (as a disclosure otherwise).
pub const UNMASKED_SEAL_INFO: &[u8] = b"sotto/1 unmasked seal";

fn tagged(tag: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + body.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(body);
    out
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_transcript_separates_fields() {
        // "ab" + "c" and "a" + "bc" must not sign the same bytes.
        assert_ne!(login("abc", b"d", b""), login("ab", b"cd", b""));
    }

    #[test]
    fn purposes_never_share_bytes() {
        assert_ne!(identity_dh(b"k"), signed_prekey(b"k"));
        for curve in [identity_dh(&[7; 32]), signed_prekey(&[7; 32])] {
            assert!(!curve.starts_with(b"sotto/1 pq prekey"));
            assert_ne!(curve, pq_prekey(0, &[7; 32]));
        }
        assert_ne!(warrant(b"w"), unmask(b"w"));
        assert_ne!(unmask(b"w"), notice_extension(b"w"));
        assert_ne!(warrant(b"w"), notice_extension(b"w"));
        assert_ne!(audit_key(b"k"), signed_prekey(b"k"));
        assert!(tree_head(0, &[0; 32], 0).starts_with(b"sotto/1 tree head\0"));
        assert_ne!(disclosure(b"d"), unmasked(b"d"));
    }
}
