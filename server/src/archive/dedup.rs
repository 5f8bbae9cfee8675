//! Retries: each sender's latest message ids, so that a retry is answered
//! with the first store's id and stored once.

use crate::RelayError;

/// How many of a sender's latest client ids are remembered, so that a retry
/// is recognised (and not stored twice) as long as the first store is among
/// the sender's latest this many messages. A client retries what it has
/// not heard back about before it sends anything newer, so the window only
/// has to cover what a client can have in flight, with a wide margin.
pub const DEDUP_WINDOW: usize = 256;
/// client id(16) ‖ message id(8).
const WINDOW_ENTRY: usize = 24;

/// The message id stored under `client_id` in a sender's window, if any.
pub(super) fn window_find(window: &[u8], client_id: &[u8]) -> Result<Option<u64>, RelayError> {
    if !window.len().is_multiple_of(WINDOW_ENTRY) {
        return Err(RelayError::Corrupt("a client id window"));
    }
    Ok(window
        .chunks_exact(WINDOW_ENTRY)
        .find(|entry| &entry[..16] == client_id)
        .map(|entry| u64::from_be_bytes(entry[16..].try_into().expect("8 bytes"))))
}

/// `window` followed by `latest` (oldest first; ids the window already holds
/// are skipped, as after a checkpoint written twice), cut to the newest
/// [`DEDUP_WINDOW`] entries.
pub(super) fn window_extend(window: &[u8], latest: &[(&[u8], u64)]) -> Result<Vec<u8>, RelayError> {
    if !window.len().is_multiple_of(WINDOW_ENTRY) {
        return Err(RelayError::Corrupt("a client id window"));
    }
    let newest = window.chunks_exact(WINDOW_ENTRY).last().map_or(0, |entry| {
        u64::from_be_bytes(entry[16..].try_into().expect("8 bytes"))
    });
    let mut out = window.to_vec();
    for (client_id, id) in latest.iter().filter(|(_, id)| *id > newest) {
        out.extend_from_slice(client_id);
        out.extend_from_slice(&id.to_be_bytes());
    }
    let keep = DEDUP_WINDOW * WINDOW_ENTRY;
    if out.len() > keep {
        out.drain(..out.len() - keep);
    }
    Ok(out)
}
