//! A test double that models a power cut: it wraps a real [`Store`] and
//! remembers every write in the order the store took it, and how far the
//! store's own [`Store::flush`] had reached when it returned. A power cut keeps
//! exactly that prefix: whatever was written but not covered by a returned
//! flush is dropped, as a disk's volatile cache would drop it.
//!
//! The double does not prove that `flush` reaches the platter (the strace
//! audit in `tests/tests/durability.rs` shows each flush is an `fdatasync`);
//! it proves that nobody is answered before a flush covering their write has
//! returned, whatever moment the power goes.

use std::sync::{Arc, Mutex};

use super::{Applied, Batch, Entries, Entry, Op, Store, StoreError, Tree};

/// Writes the store took at once (one atomic batch, or one single write).
type Unit = Vec<Op>;

#[derive(Default)]
struct Journal {
    units: Vec<Unit>,
    /// `units[..flushed]` were all written before a flush that has returned.
    flushed: usize,
}

/// The moment of a power cut: how much of the journal survives it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    surviving: usize,
}

pub(crate) struct PowerCut {
    inner: Arc<dyn Store>,
    journal: Mutex<Journal>,
}

impl PowerCut {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        PowerCut {
            inner,
            journal: Mutex::new(Journal::default()),
        }
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power goes now.
    pub fn cut(&self) -> Cut {
        Cut {
            surviving: self.journal().flushed,
        }
    }

    /// Writes what survived `cut` into `fresh` (an empty store of the same
    /// kind): the store a restarted relay would find.
    pub fn restore(&self, cut: Cut, fresh: &dyn Store) -> Result<(), StoreError> {
        let units: Vec<Unit> = self.journal().units[..cut.surviving].to_vec();
        for unit in units {
            fresh.apply_each(unit)?;
        }
        fresh.flush()
    }
}

impl Store for PowerCut {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key)
    }

    fn visit(
        &self,
        tree: Tree,
        key: &[u8],
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        self.inner.visit(tree, key, visit)
    }

    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.inner.range(tree, from, to, limit)
    }

    fn last(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.inner.last(tree, from, to)
    }

    fn apply(&self, batch: Batch) -> Result<Applied, StoreError> {
        // Held across the write, so the journal's order is the store's.
        let mut journal = self.journal();
        let mut unit: Unit = batch
            .guard
            .iter()
            .map(|(t, k, v)| Op::Put(*t, k.clone(), v.clone()))
            .collect();
        unit.extend(batch.ops.iter().cloned());
        let applied = self.inner.apply(batch)?;
        if applied == Applied::Written {
            journal.units.push(unit);
        }
        Ok(applied)
    }

    fn apply_each(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut journal = self.journal();
        for op in ops {
            self.inner.apply_each(vec![op.clone()])?;
            journal.units.push(vec![op]);
        }
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.inner.next_id()
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Only what was written before the call is covered by it.
        let covered = self.journal().units.len();
        self.inner.flush()?;
        let mut journal = self.journal();
        journal.flushed = journal.flushed.max(covered);
        Ok(())
    }

    fn count(&self, tree: Tree) -> Result<usize, StoreError> {
        self.inner.count(tree)
    }
}
