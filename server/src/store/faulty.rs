//! A test double that wraps a real [`Store`] and misbehaves on demand: its
//! writes start failing after a budget of single writes (a disk filling up
//! in the middle of a call), and its flushes, its reads or its writes can be
//! held at a gate (a slow disk), so a test can look at what the relay does
//! meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::{Applied, Batch, Entries, Entry, Op, Store, StoreError, Tree};

pub(crate) struct Faulty {
    inner: Arc<dyn Store>,
    /// Single writes left before writes fail (`usize::MAX`: never),
    writes_left: AtomicUsize,
    /// and how many fail then (`usize::MAX`: all).
    failures: AtomicUsize,
    /// Whether flushes are held, and how many have been asked for.
    gate: Mutex<(bool, usize)>,
    changed: Condvar,
    /// Whether reads are held, and how many are held now.
    reads: Mutex<(bool, usize)>,
    reads_changed: Condvar,
    /// Whether writes are held, and how many are held now.
    writes: Mutex<(bool, usize)>,
    writes_changed: Condvar,
}

fn full() -> StoreError {
    StoreError::Backend("no space left on device (a test double)".into())
}

impl Faulty {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Faulty {
            inner,
            writes_left: AtomicUsize::new(usize::MAX),
            failures: AtomicUsize::new(usize::MAX),
            gate: Mutex::new((false, 0)),
            changed: Condvar::new(),
            reads: Mutex::new((false, 0)),
            reads_changed: Condvar::new(),
            writes: Mutex::new((false, 0)),
            writes_changed: Condvar::new(),
        }
    }

    /// Holds (`true`) or lets through (`false`) every write (`apply`,
    /// `apply_each`): a disk that takes its time.
    pub fn hold_writes(&self, hold: bool) {
        let mut writes = self.writes.lock().unwrap();
        writes.0 = hold;
        self.writes_changed.notify_all();
    }

    /// Waits until `n` writes are held at once, or `patience` has passed;
    /// returns how many are held.
    pub fn wait_for_held_writes(&self, n: usize, patience: std::time::Duration) -> usize {
        let writes = self.writes.lock().unwrap();
        let (writes, _) = self
            .writes_changed
            .wait_timeout_while(writes, patience, |w| w.1 < n)
            .unwrap();
        writes.1
    }

    fn pass_write(&self) {
        let mut writes = self.writes.lock().unwrap();
        if !writes.0 {
            return;
        }
        writes.1 += 1;
        self.writes_changed.notify_all();
        while writes.0 {
            writes = self.writes_changed.wait(writes).unwrap();
        }
        writes.1 -= 1;
    }

    /// Holds (`true`) or lets through (`false`) every read (`get`).
    pub fn hold_reads(&self, hold: bool) {
        let mut reads = self.reads.lock().unwrap();
        reads.0 = hold;
        self.reads_changed.notify_all();
    }

    /// Waits until `n` reads are held at once, or `patience` has passed;
    /// returns how many are held.
    pub fn wait_for_held_reads(&self, n: usize, patience: std::time::Duration) -> usize {
        let reads = self.reads.lock().unwrap();
        let (reads, _) = self
            .reads_changed
            .wait_timeout_while(reads, patience, |r| r.1 < n)
            .unwrap();
        reads.1
    }

    fn pass_read(&self) {
        let mut reads = self.reads.lock().unwrap();
        if !reads.0 {
            return;
        }
        reads.1 += 1;
        self.reads_changed.notify_all();
        while reads.0 {
            reads = self.reads_changed.wait(reads).unwrap();
        }
        reads.1 -= 1;
    }

    /// From now on, `n` more single writes succeed, then every write fails.
    pub fn fail_after(&self, n: usize) {
        self.failures.store(usize::MAX, Ordering::SeqCst);
        self.writes_left.store(n, Ordering::SeqCst);
    }

    /// From now on, `n` more single writes succeed, the next fails, and
    /// then the disk has room again.
    pub fn fail_once_after(&self, n: usize) {
        self.failures.store(1, Ordering::SeqCst);
        self.writes_left.store(n, Ordering::SeqCst);
    }

    fn take_write(&self) -> Result<(), StoreError> {
        let left = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                usize::MAX | 0 => None,
                n => Some(n - 1),
            });
        match left {
            Ok(_) | Err(usize::MAX) => Ok(()),
            Err(_) => {
                let failures = self.failures.load(Ordering::SeqCst);
                if failures != usize::MAX {
                    if failures <= 1 {
                        self.writes_left.store(usize::MAX, Ordering::SeqCst);
                    }
                    self.failures
                        .store(failures.saturating_sub(1), Ordering::SeqCst);
                }
                Err(full())
            }
        }
    }

    /// Holds (`true`) or lets through (`false`) every flush.
    pub fn hold_flushes(&self, hold: bool) {
        let mut gate = self.gate.lock().unwrap();
        gate.0 = hold;
        self.changed.notify_all();
    }

    /// Waits until at least `n` flushes have been asked for in all.
    pub fn wait_for_flushes(&self, n: usize) {
        let mut gate = self.gate.lock().unwrap();
        while gate.1 < n {
            gate = self.changed.wait(gate).unwrap();
        }
    }

    pub fn flushes_asked(&self) -> usize {
        self.gate.lock().unwrap().1
    }
}

impl Store for Faulty {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.pass_read();
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
        self.pass_write();
        self.take_write()?;
        self.inner.apply(batch)
    }

    fn apply_each(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.pass_write();
        for op in ops {
            self.take_write()?;
            self.inner.apply_each(vec![op])?;
        }
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.inner.next_id()
    }

    fn flush(&self) -> Result<(), StoreError> {
        {
            let mut gate = self.gate.lock().unwrap();
            gate.1 += 1;
            self.changed.notify_all();
            while gate.0 {
                gate = self.changed.wait(gate).unwrap();
            }
        }
        self.inner.flush()
    }

    fn count(&self, tree: Tree) -> Result<usize, StoreError> {
        self.inner.count(tree)
    }
}
