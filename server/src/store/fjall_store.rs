//! [`Store`] on fjall 3: one keyspace per [`Tree`], batches as fjall write
//! batches (atomic across keyspaces), the journal persisted only when asked.
//!
//! Durability: the journal is written with `manual_journal_persist`, and
//! [`FjallStore::flush`] persists it with `fdatasync` (`PersistMode::SyncData`):
//! once per writer batch, before any answer.
//!
//! Guards: fjall's plain batches have no compare-and-set, so every write goes
//! through one lock; a guarded batch checks its guard and commits under it.
//! Reads take no lock.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Applied, Batch, Entries, Entry, Op, Store, StoreError, Tree};

/// How many ids are reserved at once (one write of the ceiling per block).
const ID_BLOCK: u64 = 1024;
const ID_CEILING_KEY: &[u8] = b"store_id_ceiling";

pub struct FjallStore {
    db: Database,
    keyspaces: Vec<Keyspace>,
    writes: Mutex<()>,
    /// The next id to hand out, and the ceiling persisted ahead of it.
    next_id: AtomicU64,
    ceiling: Mutex<u64>,
}

/// The secret queue's in-memory table, before fjall writes it out (its default
/// is 64 MiB). Every envelope is a put of a random key and, once delivered, a
/// tombstone: in a 64 MiB table each of them walked a skip list of some
/// hundred thousand entries, cache miss after cache miss (7% of the relay's
/// time in secret mode). fjall keeps a keyspace's options from its creation:
/// data directories made before keep 64 MiB.
const SECRET_QUEUE_MEMTABLE: u64 = 4 << 20;

/// The secret counters' in-memory table: one small key per recipient, written
/// again at each batch with an envelope for them, so that the default 64 MiB
/// table holds thousands of versions of each. Measured side by side, eight
/// rounds of the load generator: secret mode 9% faster with 1 MiB.
const SECRET_COUNTERS_MEMTABLE: u64 = 1 << 20;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl FjallStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = super::open_waiting_for_lock(
            path,
            || Database::builder(path).manual_journal_persist(true).open(),
            |e| matches!(e, fjall::Error::Locked),
        )?;
        let keyspaces =
            Tree::ALL
                .iter()
                .map(|t| {
                    db.keyspace(t.name(), || match t {
                        Tree::SecretQueue => KeyspaceCreateOptions::default()
                            .max_memtable_size(SECRET_QUEUE_MEMTABLE),
                        Tree::SecretCounters => KeyspaceCreateOptions::default()
                            .max_memtable_size(SECRET_COUNTERS_MEMTABLE),
                        _ => KeyspaceCreateOptions::default(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
        let meta = &keyspaces[Tree::Meta.index()];
        let ceiling = match meta.get(ID_CEILING_KEY).map_err(backend)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Backend("a damaged id ceiling".into()))?,
            ),
            None => 0,
        };
        Ok(FjallStore {
            db,
            keyspaces,
            writes: Mutex::new(()),
            // Ids below the persisted ceiling may have been handed out before a restart.
            next_id: AtomicU64::new(ceiling),
            ceiling: Mutex::new(ceiling),
        })
    }

    fn keyspace(&self, tree: Tree) -> &Keyspace {
        &self.keyspaces[tree.index()]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether no two of `ops` write the same key of the same tree.
fn distinct_keys(ops: &[Op]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    ops.iter().all(|op| {
        let (tree, key) = match op {
            Op::Put(tree, key, _) | Op::Delete(tree, key) => (*tree, key.as_slice()),
        };
        seen.insert((tree.index(), key))
    })
}

impl Store for FjallStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .keyspace(tree)
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn visit(
        &self,
        tree: Tree,
        key: &[u8],
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        if let Some(value) = self.keyspace(tree).get(key).map_err(backend)? {
            visit(&value);
        }
        Ok(())
    }

    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        self.keyspace(tree)
            .range(from..to)
            .take(limit)
            .map(|guard| {
                let (k, v) = guard.into_inner().map_err(backend)?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn last(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StoreError> {
        if from >= to {
            return Ok(None);
        }
        self.keyspace(tree)
            .range(from..to)
            .next_back()
            .map(|guard| {
                let (k, v) = guard.into_inner().map_err(backend)?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .transpose()
    }

    fn apply(&self, batch: Batch) -> Result<Applied, StoreError> {
        let _writing = self.lock();
        let mut write = self.db.batch();
        if let Some((tree, key, value)) = batch.guard {
            if let Some(existing) = self.keyspace(tree).get(&key).map_err(backend)? {
                return Ok(Applied::GuardExists(existing.to_vec()));
            }
            write.insert(self.keyspace(tree), key, value);
        }
        for op in batch.ops {
            match op {
                Op::Put(tree, key, value) => write.insert(self.keyspace(tree), key, value),
                Op::Delete(tree, key) => write.remove(self.keyspace(tree), key),
            }
        }
        if !write.is_empty() {
            write.commit().map_err(backend)?;
        }
        Ok(Applied::Written)
    }

    fn apply_each(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let _writing = self.lock();
        // One write batch costs fjall one journal entry instead of one per
        // write, and is atomic, which is more than asked. Within a batch,
        // two writes of one key would not keep their order: those go one by one.
        if ops.len() > 1 && distinct_keys(&ops) {
            let mut write = self.db.batch();
            for op in ops {
                match op {
                    Op::Put(tree, key, value) => write.insert(self.keyspace(tree), key, value),
                    Op::Delete(tree, key) => write.remove(self.keyspace(tree), key),
                }
            }
            return write.commit().map_err(backend);
        }
        for op in ops {
            match op {
                Op::Put(tree, key, value) => self.keyspace(tree).insert(key, value),
                Op::Delete(tree, key) => self.keyspace(tree).remove(key),
            }
            .map_err(backend)?;
        }
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut ceiling = self.ceiling.lock().unwrap_or_else(|p| p.into_inner());
        if id >= *ceiling {
            // Written ahead of any use of the ids below it: the journal is
            // sequential, so a write that uses one is never persisted without it.
            let new = id.saturating_add(ID_BLOCK);
            let _writing = self.lock();
            self.keyspace(Tree::Meta)
                .insert(ID_CEILING_KEY, new.to_be_bytes())
                .map_err(backend)?;
            *ceiling = new;
        }
        Ok(id)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncData).map_err(backend)
    }

    fn count(&self, tree: Tree) -> Result<usize, StoreError> {
        self.keyspace(tree).len().map_err(backend)
    }
}
