//! [`Store`] on sled 0.34: one sled tree per [`Tree`], guarded batches as sled
//! multi-tree transactions.
//!
//! Durability: sled's own `flush` is not enough for an acknowledgement. It
//! writes its log with `pwrite` + `sync_file_range`, which neither flushes the
//! disk's write cache nor the file's metadata, and writes large values to
//! `blobs/` files with no sync at all. So [`SledStore::flush`] follows it with
//! `fdatasync` of the log file, of every blob file written since the last
//! flush, and of the blob folder, before it returns.

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Applied, Batch, Entries, Entry, Op, Store, StoreError, Tree};

pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// sled's log file, to `fdatasync` after each flush.
    log: std::fs::File,
    blobs: std::path::PathBuf,
    /// The newest blob (by sled's log sequence number) already synced, and
    /// the blob folder's modification time then (unchanged: nothing new).
    synced_blob: std::sync::Mutex<(u64, Option<std::time::SystemTime>)>,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let config = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            // Flushes are explicit (group commit); no background timer needed.
            .flush_every_ms(None);
        let db = super::open_waiting_for_lock(path, || config.open(), locked)?;
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let log = std::fs::File::open(path.join("db")).map_err(io_error)?;
        Ok(SledStore {
            db,
            trees,
            log,
            blobs: path.join("blobs"),
            synced_blob: std::sync::Mutex::new((0, None)),
        })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }
}

/// True when sled could not take the store's file lock (someone holds it).
fn locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().contains("could not acquire lock"))
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("cannot sync the store to disk: {e}"))
}

impl SledStore {
    /// `fdatasync` of what sled's flush left in the page cache or the disk's
    /// cache: the log file, new blob files, the blob folder's entries.
    fn sync_to_disk(&self) -> Result<(), StoreError> {
        self.log.sync_data().map_err(io_error)?;
        let mut synced = self.synced_blob.lock().unwrap_or_else(|p| p.into_inner());
        let modified = match std::fs::metadata(&self.blobs) {
            Ok(meta) => meta.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(e)),
        };
        if modified.is_some() && modified == synced.1 {
            // No file was added or removed since the last look.
            return Ok(());
        }
        let mut newest = synced.0;
        for entry in std::fs::read_dir(&self.blobs).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if lsn > synced.0 {
                // A blob sled removed meanwhile needs no sync.
                match std::fs::File::open(entry.path()) {
                    Ok(f) => f.sync_data().map_err(io_error)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(e)),
                }
                newest = newest.max(lsn);
            }
        }
        std::fs::File::open(&self.blobs)
            .and_then(|d| d.sync_all())
            .map_err(io_error)?;
        *synced = (newest, modified);
        Ok(())
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)
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
        if let Some(value) = self.tree(tree).get(key).map_err(backend)? {
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
        self.tree(tree)
            .range(from..to)
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn last(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.tree(tree)
            .range(from..to)
            .next_back()
            .transpose()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .map_err(backend)
    }

    fn apply(&self, batch: Batch) -> Result<Applied, StoreError> {
        if batch.guard.is_none() && batch.ops.len() <= 1 {
            // One write is atomic by itself: no batch, so no global write lock.
            return self.apply_each(batch.ops).map(|()| Applied::Written);
        }
        // A transaction costs per tree it spans: span only the trees written,
        // and a batch without a guard on one tree needs none at all.
        let mut involved: Vec<Tree> = batch
            .guard
            .iter()
            .map(|(t, _, _)| *t)
            .chain(batch.ops.iter().map(|op| match op {
                Op::Put(t, _, _) | Op::Delete(t, _) => *t,
            }))
            .collect();
        involved.sort_by_key(|t| t.index());
        involved.dedup();
        if batch.guard.is_none() && involved.len() == 1 {
            let mut single = sled::Batch::default();
            for op in batch.ops {
                match op {
                    Op::Put(_, key, value) => single.insert(key, value),
                    Op::Delete(_, key) => single.remove(key),
                }
            }
            self.tree(involved[0])
                .apply_batch(single)
                .map_err(backend)?;
            return Ok(Applied::Written);
        }
        let slot = |tree: Tree| {
            involved
                .iter()
                .position(|t| *t == tree)
                .expect("every written tree is in the transaction")
        };
        let trees: Vec<sled::Tree> = involved.iter().map(|t| self.tree(*t).clone()).collect();
        let result = trees.as_slice().transaction(|views| {
            if let Some((tree, key, value)) = &batch.guard {
                let view = &views[slot(*tree)];
                if let Some(existing) = view.get(key)? {
                    return Err(ConflictableTransactionError::Abort(existing.to_vec()));
                }
                view.insert(key.as_slice(), value.as_slice())?;
            }
            for op in &batch.ops {
                match op {
                    Op::Put(tree, key, value) => {
                        views[slot(*tree)].insert(key.as_slice(), value.as_slice())?;
                    }
                    Op::Delete(tree, key) => {
                        views[slot(*tree)].remove(key.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(Applied::Written),
            Err(TransactionError::Abort(existing)) => Ok(Applied::GuardExists(existing)),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }

    fn apply_each(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        // Plain writes: no batch holds sled's global write lock meanwhile, so
        // other writes and flushes go on between them.
        for op in ops {
            match op {
                Op::Put(tree, key, value) => self.tree(tree).insert(key, value).map(drop),
                Op::Delete(tree, key) => self.tree(tree).remove(key).map(drop),
            }
            .map_err(backend)?;
        }
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.db.generate_id().map_err(backend)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        self.sync_to_disk()
    }

    fn count(&self, tree: Tree) -> Result<usize, StoreError> {
        Ok(self.tree(tree).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_guarded_batch_writes_once() {
        let (_dir, store) = store();
        let mut batch = Batch::guarded(Tree::ClientIds, b"id".to_vec(), b"first".to_vec());
        batch.put(Tree::Messages, b"m1".to_vec(), b"v".to_vec());
        assert_eq!(store.apply(batch).unwrap(), Applied::Written);

        let mut again = Batch::guarded(Tree::ClientIds, b"id".to_vec(), b"second".to_vec());
        again.put(Tree::Messages, b"m2".to_vec(), b"v".to_vec());
        assert_eq!(
            store.apply(again).unwrap(),
            Applied::GuardExists(b"first".to_vec())
        );
        assert!(store.get(Tree::Messages, b"m2").unwrap().is_none());
    }

    #[test]
    fn an_empty_batch_writes_nothing_and_succeeds() {
        let (_dir, store) = store();
        assert_eq!(store.apply(Batch::default()).unwrap(), Applied::Written);
    }

    #[test]
    fn range_is_half_open_and_limited() {
        let (_dir, store) = store();
        let mut batch = Batch::default();
        for i in 0u8..5 {
            batch.put(Tree::Inbox, vec![i], vec![i]);
        }
        store.apply(batch).unwrap();
        let got = store.range(Tree::Inbox, &[1], &[4], 10).unwrap();
        assert_eq!(got.iter().map(|(k, _)| k[0]).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(store.range(Tree::Inbox, &[0], &[9], 2).unwrap().len(), 2);
        assert_eq!(
            store.last(Tree::Inbox, &[1], &[4]).unwrap(),
            Some((vec![3], vec![3]))
        );
        assert_eq!(store.last(Tree::Inbox, &[7], &[9]).unwrap(), None);
    }

    #[test]
    fn writes_applied_each_on_their_own_land_in_order() {
        let (_dir, store) = store();
        store
            .apply_each(vec![
                Op::Put(Tree::Inbox, b"a".to_vec(), b"1".to_vec()),
                Op::Put(Tree::Accounts, b"a".to_vec(), b"2".to_vec()),
                Op::Delete(Tree::Inbox, b"a".to_vec()),
                Op::Put(Tree::Inbox, b"b".to_vec(), b"3".to_vec()),
            ])
            .unwrap();
        assert_eq!(store.get(Tree::Inbox, b"a").unwrap(), None);
        assert_eq!(store.get(Tree::Inbox, b"b").unwrap(), Some(b"3".to_vec()));
        assert_eq!(
            store.get(Tree::Accounts, b"a").unwrap(),
            Some(b"2".to_vec())
        );
    }

    #[test]
    fn a_store_in_use_is_refused_with_a_clear_reason() {
        let (dir, _store) = store();
        let err = SledStore::open(&dir.path().join("db"))
            .err()
            .expect("the lock is held");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }

    #[test]
    fn ids_grow_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let store = SledStore::open(&dir.path().join("db")).unwrap();
            let id = store.next_id().unwrap();
            store.flush().unwrap();
            id
        };
        let store = SledStore::open(&dir.path().join("db")).unwrap();
        assert!(store.next_id().unwrap() > first);
    }
}
