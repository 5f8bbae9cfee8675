//! Segments and ids: one segment is one write batch of sealed records, keyed
//! by its number (1, 2, …: neither an id nor a time); ids are time-ordered,
//! so a time window is an id range.

use crate::RelayError;

/// Bits of an id below its millisecond.
const ID_SHIFT: u32 = 16;

/// A segment's key: its number.
pub(super) fn segment_key(segment: u64) -> [u8; 8] {
    segment.to_be_bytes()
}

/// The associated data of one record: its segment and its index there.
pub(super) fn record_key(segment: u64, index: u16) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..8].copy_from_slice(&segment.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The `index`-th sealed record of an encoded `SegmentRecord`, found
/// without decoding (or copying) the others.
pub(super) fn segment_entry(segment: &[u8], index: u16) -> Result<Option<&[u8]>, RelayError> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut buf = segment;
    let mut seen = 0u16;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag != 1 || wire_type != WireType::LengthDelimited {
            return Err(RelayError::Corrupt("a segment"));
        }
        let len = usize::try_from(decode_varint(&mut buf)?)
            .map_err(|_| RelayError::Corrupt("a segment"))?;
        if len > buf.len() {
            return Err(RelayError::Corrupt("a segment"));
        }
        let (entry, rest) = buf.split_at(len);
        if seen == index {
            return Ok(Some(entry));
        }
        seen += 1;
        buf = rest;
    }
    Ok(None)
}

/// The first id of millisecond `ms` (saturating: far-future windows are open-ended).
pub(super) fn first_id_of(ms: i64) -> u64 {
    let ms = ms.max(0) as u64;
    if ms > u64::MAX >> ID_SHIFT {
        u64::MAX
    } else {
        ms << ID_SHIFT
    }
}

pub(super) fn sent_at_of(id: u64) -> i64 {
    (id >> ID_SHIFT) as i64
}
