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
    /// Flushes still let through while flushes are held.
    let_through: AtomicUsize,
    changed: Condvar,
    reads: Gate,
    writes: Gate,
}

/// Where reads or writes wait while they are held: whether they are, and
/// how many wait now.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    fn hold(&self, hold: bool) {
        self.state.lock().unwrap().0 = hold;
        self.changed.notify_all();
    }

    fn wait_for_held(&self, n: usize, patience: std::time::Duration) -> usize {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, patience, |s| s.1 < n)
            .unwrap();
        state.1
    }

    /// Returns at once, or once the gate opens if it is held.
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        if !state.0 {
            return;
        }
        state.1 += 1;
        self.changed.notify_all();
        while state.0 {
            state = self.changed.wait(state).unwrap();
        }
        state.1 -= 1;
    }
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
            let_through: AtomicUsize::new(0),
            changed: Condvar::new(),
            reads: Gate::default(),
            writes: Gate::default(),
        }
    }

    /// Holds (`true`) or lets through (`false`) every write (`apply`,
    /// `apply_each`): a disk that takes its time.
    pub fn hold_writes(&self, hold: bool) {
        self.writes.hold(hold);
    }

    /// Waits until `n` writes are held at once, or `patience` has passed;
    /// returns how many are held.
    pub fn wait_for_held_writes(&self, n: usize, patience: std::time::Duration) -> usize {
        self.writes.wait_for_held(n, patience)
    }

    /// Holds (`true`) or lets through (`false`) every read (`get`).
    pub fn hold_reads(&self, hold: bool) {
        self.reads.hold(hold);
    }

    /// Waits until `n` reads are held at once, or `patience` has passed;
    /// returns how many are held.
    pub fn wait_for_held_reads(&self, n: usize, patience: std::time::Duration) -> usize {
        self.reads.wait_for_held(n, patience)
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

    /// Lets the next `n` flushes through, then holds every flush (until
    /// [`Faulty::hold_flushes`]`(false)`): the flush of a given step.
    pub fn hold_flushes_after(&self, n: usize) {
        self.let_through.store(n, Ordering::SeqCst);
        self.hold_flushes(true);
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
        self.reads.pass();
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
        self.writes.pass();
        self.take_write()?;
        self.inner.apply(batch)
    }

    fn apply_each(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.writes.pass();
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
            let free = self
                .let_through
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            while gate.0 && !free {
                gate = self.changed.wait(gate).unwrap();
            }
        }
        self.inner.flush()
    }

    fn count(&self, tree: Tree) -> Result<usize, StoreError> {
        self.inner.count(tree)
    }
}
