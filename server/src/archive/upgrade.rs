//! From layout 2 to 3: the archive of an older relay, whose indexes were in
//! clear, is sealed in place when a newer relay first opens it.
//!
//! Layout 2 keyed segments by their first message id and kept postings,
//! client id windows, inbox cursors and the checkpoint mark in clear. The
//! upgrade renumbers the segments (re-sealing each record, padded, under its
//! new place), seals the inbox cursors, and drops the clear postings, windows
//! and mark: [`NormalArchive::recover`] rebuilds them from the segments, and
//! the next checkpoint writes them sealed. Each step can be repeated, so a
//! crash in the middle only means it runs again at the next open.

use prost::Message;

use super::segment::{record_key, segment_key};
use super::{FORMAT, FORMAT_KEY, read_u64};
use crate::RelayError;
use crate::records::SegmentRecord;
use crate::seal::Sealer;
use crate::store::{Batch, Op, Store, Tree};

/// Segment numbers stay far below this; layout 2's keys (message ids:
/// milliseconds since 1970 shifted left by 16) are all above it.
const NUMBERS_BELOW: u64 = 1 << 48;

pub(super) fn from_layout_2(store: &dyn Store, sealer: &Sealer) -> Result<(), RelayError> {
    renumber_segments(store, sealer)?;
    seal_inbox_cursors(store, sealer)?;
    for tree in [Tree::ByParticipant, Tree::ClientIds] {
        delete_all(store, tree)?;
    }
    let mut batch = Batch::default();
    batch.delete(Tree::Meta, super::checkpoint::CHECKPOINT_KEY.to_vec());
    store.apply(batch)?;
    // Nothing above may be lost once the format says it is done.
    store.flush()?;
    let mut batch = Batch::default();
    batch.put(
        Tree::Meta,
        FORMAT_KEY.to_vec(),
        FORMAT.to_be_bytes().to_vec(),
    );
    store.apply(batch)?;
    store.flush()?;
    Ok(())
}

/// Moves every segment still keyed by its first id to the next number, in
/// id order, one atomic batch each (the new copy in, the old one out).
fn renumber_segments(store: &dyn Store, sealer: &Sealer) -> Result<(), RelayError> {
    let mut next = match store.last(Tree::Messages, &[], &segment_key(NUMBERS_BELOW))? {
        Some((key, _)) => read_u64(&key, "a segment key")? + 1,
        None => 1,
    };
    loop {
        let rows = store.range(Tree::Messages, &segment_key(NUMBERS_BELOW), &[0xff; 9], 64)?;
        if rows.is_empty() {
            return Ok(());
        }
        for (key, value) in rows {
            let first = read_u64(&key, "a segment key")?;
            let old = SegmentRecord::decode(value.as_slice())?;
            let mut sealed = Vec::with_capacity(old.sealed.len());
            for (index, record) in old.sealed.iter().enumerate() {
                let index =
                    u16::try_from(index).map_err(|_| RelayError::Corrupt("segment size"))?;
                let plain = sealer.open(Tree::Messages, &record_key(first, index), record)?;
                sealed.push(sealer.seal_padded(Tree::Messages, &record_key(next, index), &plain));
            }
            let mut batch = Batch::default();
            batch.put(
                Tree::Messages,
                segment_key(next).to_vec(),
                SegmentRecord { sealed }.encode_to_vec(),
            );
            batch.delete(Tree::Messages, key);
            store.apply(batch)?;
            next += 1;
        }
    }
}

/// Seals every cursor still stored in clear (eight bytes; sealed ones are
/// longer), under its new key.
fn seal_inbox_cursors(store: &dyn Store, sealer: &Sealer) -> Result<(), RelayError> {
    let mut cursor = Vec::new();
    loop {
        let rows = store.range(Tree::Inbox, &cursor, &[0xff; 17], 1024)?;
        let Some((last, _)) = rows.last() else {
            return Ok(());
        };
        cursor = last.clone();
        cursor.push(0);
        // Keyed by the user's blind itself in layout 2; by a key of its own
        // now (see `Sealer::tree_key`): the new one goes in, then the old out.
        let mut ops = Vec::new();
        for (key, value) in rows.into_iter().filter(|(_, value)| value.len() == 8) {
            let blind: [u8; 16] = key
                .as_slice()
                .try_into()
                .map_err(|_| RelayError::Corrupt("an inbox key"))?;
            let new = sealer.tree_key(Tree::Inbox, &blind);
            ops.push(Op::Put(
                Tree::Inbox,
                new.to_vec(),
                sealer.seal(Tree::Inbox, &new, &value),
            ));
            ops.push(Op::Delete(Tree::Inbox, key));
        }
        store.apply_each(ops)?;
    }
}

fn delete_all(store: &dyn Store, tree: Tree) -> Result<(), RelayError> {
    loop {
        let rows = store.range(tree, &[], &[0xff; 33], 1024)?;
        if rows.is_empty() {
            return Ok(());
        }
        store.apply_each(
            rows.into_iter()
                .map(|(key, _)| Op::Delete(tree, key))
                .collect(),
        )?;
    }
}
