//! The storage trait and its implementations: the one place that opens the store.
//!
//! Everything the relay keeps goes through [`Store`], a small ordered key-value
//! interface over named [`Tree`]s with atomic guarded batches. fjall 3 is the
//! embedded default ([`FjallStore`]), sled 0.34 is kept ([`SledStore`]); both
//! pass one conformance suite (`conformance`, with the power-cut double in
//! `power_cut`). A multi-node deployment would put an existing distributed
//! engine behind the same trait. Values handed to the store are
//! already sealed (see [`crate::seal`]): the store never sees plaintext.

mod fjall_store;
mod sled_store;

#[cfg(test)]
mod conformance;
#[cfg(test)]
pub(crate) mod faulty;
#[cfg(test)]
mod power_cut;

#[cfg(test)]
pub(crate) use conformance::implementations;
#[cfg(test)]
pub(crate) use power_cut::PowerCut;

pub use fjall_store::FjallStore;
pub use sled_store::SledStore;

use thiserror::Error;

/// The store's trees. Each holds one kind of record; see the variant docs for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Relay metadata: wrapped data key, sealed relay keys.
    Meta,
    /// blind(username) → sealed account.
    Accounts,
    /// blind(group) → sealed group.
    Groups,
    /// segment: first message id(8) → the sealed normal records of one write batch.
    Messages,
    /// blind(user)(16) ‖ last id(8) → a chunk of that user's postings (which
    /// messages they took part in), written at each archive checkpoint.
    ByParticipant,
    /// blind(user)(16) → the id up to which the user acknowledged normal messages.
    Inbox,
    /// blind(sender)(16) → the client ids of the sender's latest normal
    /// messages and their ids (for duplicates), written at each archive checkpoint.
    ClientIds,
    /// key(user)(16) → sealed prekey set; key(user, id)(16) → one sealed
    /// one-time ML-KEM-1024 prekey (both keyed blinds, see `prekeys`).
    Prekeys,
    /// blind(recipient)(16) ‖ id(8) → sealed secret envelope (ciphertext only).
    /// Its time-to-live and duplicate index live in memory, rebuilt from it.
    SecretQueue,
    /// blind(recipient)(16) → the last secret envelope id given to that
    /// recipient (sealed): ids count per recipient, never relay-wide.
    SecretCounters,
    /// Warrant ids ever seen, and the pseudonyms each disclosure issued.
    Warrants,
}

impl Tree {
    pub const ALL: [Tree; 11] = [
        Tree::Meta,
        Tree::Accounts,
        Tree::Groups,
        Tree::Messages,
        Tree::ByParticipant,
        Tree::Inbox,
        Tree::ClientIds,
        Tree::Prekeys,
        Tree::SecretQueue,
        Tree::SecretCounters,
        Tree::Warrants,
    ];

    /// The tree's name on disk; also part of every sealed record's associated data.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Accounts => "accounts",
            Tree::Groups => "groups",
            Tree::Messages => "messages",
            Tree::ByParticipant => "by_participant",
            Tree::Inbox => "inbox",
            Tree::ClientIds => "client_ids",
            Tree::Prekeys => "prekeys",
            Tree::SecretQueue => "secret_queue",
            Tree::SecretCounters => "secret_counters",
            Tree::Warrants => "warrants",
        }
    }

    pub(crate) fn index(self) -> usize {
        Tree::ALL
            .iter()
            .position(|t| *t == self)
            .expect("every tree is listed in ALL")
    }
}

/// One write in a [`Batch`].
#[derive(Debug, Clone)]
pub enum Op {
    Put(Tree, Vec<u8>, Vec<u8>),
    Delete(Tree, Vec<u8>),
}

/// Writes applied all together or not at all. With a guard, the batch applies
/// only if the guard's key is absent, and the guard's value is written with it.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub guard: Option<(Tree, Vec<u8>, Vec<u8>)>,
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn guarded(tree: Tree, key: Vec<u8>, value: Vec<u8>) -> Self {
        Batch {
            guard: Some((tree, key, value)),
            ops: Vec::new(),
        }
    }

    pub fn put(&mut self, tree: Tree, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put(tree, key, value));
    }

    pub fn delete(&mut self, tree: Tree, key: Vec<u8>) {
        self.ops.push(Op::Delete(tree, key));
    }
}

/// What applying a guarded batch did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Written,
    /// The guard's key was present: nothing was written; here is its value.
    GuardExists(Vec<u8>),
}

#[derive(Debug, Clone, Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Backend(String),
    /// Another process holds the store (a relay running on the directory).
    #[error(
        "{0} is in use by another process (is a relay already running on this data directory?)"
    )]
    InUse(String),
}

/// One key-value pair of a tree.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Key-value pairs read from a tree, in key order.
pub type Entries = Vec<Entry>;

/// Ordered key-value storage with atomic batches and durable flushes.
pub trait Store: Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Hands the value under `key`, if there is one, to `visit` without
    /// copying it out of the store. Callers use [`Store::read`](trait.Store.html#method.read).
    fn visit(&self, tree: Tree, key: &[u8], visit: &mut dyn FnMut(&[u8]))
    -> Result<(), StoreError>;

    /// Entries with `from <= key < to`, in key order, at most `limit` of them.
    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError>;

    /// The entry with the largest key in `from <= key < to`, if any.
    fn last(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StoreError>;

    /// Applies a batch atomically (see [`Batch`]). Not yet durable: see [`Store::flush`].
    fn apply(&self, batch: Batch) -> Result<Applied, StoreError>;

    /// Applies each write on its own, in order, not atomically as a whole:
    /// cheaper than [`Store::apply`], for writes that stand alone (one key per
    /// request) or can be written again after a crash. Not yet durable.
    fn apply_each(&self, ops: Vec<Op>) -> Result<(), StoreError>;

    /// A fresh id, larger than every id handed out before, also across restarts.
    fn next_id(&self) -> Result<u64, StoreError>;

    /// Blocks until everything applied so far is on disk.
    fn flush(&self) -> Result<(), StoreError>;

    /// Number of entries in a tree (for tests and metrics; may be slow).
    fn count(&self, tree: Tree) -> Result<usize, StoreError>;
}

/// Stores this process has opened: only their locks are worth waiting for.
static OPENED_HERE: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Opens a store with `open`. If its lock is held by a store this process
/// opened before (an in-process restart: the old one's threads may hold it a
/// moment longer), waits a little; if another process holds it, says so at once.
pub(crate) fn open_waiting_for_lock<T, E: std::fmt::Display>(
    path: &std::path::Path,
    mut open: impl FnMut() -> Result<T, E>,
    locked: impl Fn(&E) -> bool,
) -> Result<T, StoreError> {
    const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let identity = || std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let opened_here = || {
        let me = identity();
        OPENED_HERE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&me)
    };
    loop {
        match open() {
            Ok(store) => {
                let me = identity();
                let mut opened = OPENED_HERE.lock().unwrap_or_else(|p| p.into_inner());
                if !opened.contains(&me) {
                    opened.push(me);
                }
                return Ok(store);
            }
            Err(e) if locked(&e) && opened_here() && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) if locked(&e) => {
                return Err(StoreError::InUse(path.display().to_string()));
            }
            Err(e) => return Err(StoreError::Backend(e.to_string())),
        }
    }
}

impl dyn Store {
    /// What `read` makes of the value under `key`, read in place; `None`
    /// when there is no value. It does not rely on the implementation to call
    /// `read`: one that does not simply yields `None`.
    pub fn read<T>(
        &self,
        tree: Tree,
        key: &[u8],
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, StoreError> {
        let mut read = Some(read);
        let mut out = None;
        self.visit(tree, key, &mut |value| {
            if let Some(read) = read.take() {
                out = Some(read(value));
            }
        })?;
        Ok(out)
    }
}

/// A store and sealer in a temporary directory, for the crate's unit tests.
#[cfg(test)]
pub(crate) struct TestDir {
    dir: tempfile::TempDir,
    pub sealer: std::sync::Arc<crate::seal::Sealer>,
}

#[cfg(test)]
impl TestDir {
    pub fn new() -> Self {
        let master = crate::seal::MasterKey::generate();
        let sealer = master.unwrap_data_key(&master.wrap_new_data_key()).unwrap();
        TestDir {
            dir: tempfile::tempdir().unwrap(),
            sealer: std::sync::Arc::new(sealer),
        }
    }

    /// The temporary directory (the store is in `db/` inside it).
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Opens the store (again: as a restarted relay finds it).
    pub fn store(&self) -> std::sync::Arc<dyn Store> {
        std::sync::Arc::new(SledStore::open(&self.dir.path().join("db")).unwrap())
    }
}
