//! `sotto-relay migrate --to fjall|sled`: copies the data directory's store
//! into a new store of the other kind, checks the copy, and puts it in place.
//!
//! Values are copied as they are: still sealed, under the same keys, so the
//! copy needs no key and the master key never leaves its place. The source is
//! never deleted: it is renamed beside the new store (`db.<kind>-<time>`), for
//! the operator to remove once the relay has run on the copy.
//!
//! A migration holds the data directory's lock, as a relay does: a relay
//! running on the directory refuses it, and a relay started during it waits.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::config::StoreKind;
use crate::datadir::{existing_store, open_store_of};
use crate::store::{Entry, Op, Store, Tree};

/// Where per-recipient secret envelope ids start (see `secret_queue`).
const SECRET_ID_BASE: &[u8] = crate::secret_queue::ID_BASE_KEY;
/// Pairs copied per read and per write.
const PAGE: usize = 4096;
/// Past every key the relay writes (keys are at most a few dozen bytes).
const KEY_END: [u8; 256] = [0xff; 256];
/// At most this many values are compared byte for byte after the copy, spread over the trees.
const SAMPLE: usize = 2_000;

/// What a migration did.
#[derive(Debug)]
pub struct Migrated {
    pub from: StoreKind,
    pub to: StoreKind,
    /// Entries per tree, in [`Tree::ALL`] order.
    pub entries: Vec<(Tree, usize)>,
    /// Values compared byte for byte after the copy.
    pub sampled: usize,
    /// Where the source store now is.
    pub kept: PathBuf,
}

/// What a migration would start from, or why there is nothing to do.
pub enum Plan {
    Migrate { from: StoreKind, total: u64 },
    AlreadyThere,
}

/// Looks at `data`'s store: its kind, and how many entries a copy moves.
pub fn plan(data: &Path, to: StoreKind) -> Result<Plan> {
    if to == StoreKind::Nats {
        bail!(
            "migrate copies between the embedded stores (fjall, sled); a relay's records are not \
             copied onto a cluster yet"
        );
    }
    let db = data.join("db");
    let Some(from) = existing_store(&db)? else {
        bail!("there is no store in {} to migrate", db.display());
    };
    if from == to {
        return Ok(Plan::AlreadyThere);
    }
    let source = open_store_of(&db, from)?;
    let mut total = 0u64;
    for tree in Tree::ALL {
        total += source.count(tree)? as u64;
    }
    Ok(Plan::Migrate { from, total })
}

/// Copies `data/db` into a new `to` store, verifies it, and swaps it in.
/// `progress` hears the number of entries copied so far.
pub fn migrate(data: &Path, to: StoreKind, mut progress: impl FnMut(u64)) -> Result<Migrated> {
    // Held until both renames are done: a relay started meanwhile waits,
    // and then opens the new store, never the one being moved away.
    let _held = crate::datadir::lock(data)?;
    let db = data.join("db");
    let Some(from) = existing_store(&db)? else {
        bail!("there is no store in {} to migrate", db.display());
    };
    ensure!(
        to != StoreKind::Nats,
        "migrate copies between the embedded stores (fjall, sled); a relay's records are not \
         copied onto a cluster yet"
    );
    ensure!(from != to, "{} already holds a {to} store", db.display());
    let target_path = data.join(format!("db.{to}-migrating"));
    ensure!(
        !target_path.exists(),
        "{} is left from an earlier migration that did not finish: move it away (nothing in it is \
         the only copy) and run the migration again",
        target_path.display()
    );
    let source = open_store_of(&db, from)
        .with_context(|| format!("cannot open the {from} store in {}", db.display()))?;
    let target = open_store_of(&target_path, to)
        .with_context(|| format!("cannot make a {to} store in {}", target_path.display()))?;

    let mut copied = 0u64;
    let mut entries = Vec::new();
    for tree in Tree::ALL {
        let n = copy_tree(&*source, &*target, tree, |n| {
            copied += n as u64;
            progress(copied);
        })?;
        entries.push((tree, n));
    }
    target.flush()?;

    // The copy is checked as a restarted relay would find it: reopened.
    drop(target);
    let target = open_store_of(&target_path, to)?;
    let sampled = verify(&*source, &*target, &entries)?;
    // A directory from before per-recipient envelope ids has no id base yet:
    // fix it now, from the source's relay-wide counter, which the copy does
    // not carry (each store keeps its own), so no id a client has seen is
    // handed out again.
    if source.get(Tree::Meta, SECRET_ID_BASE)?.is_none() {
        let base = source.next_id()?;
        target.apply_each(vec![Op::Put(
            Tree::Meta,
            SECRET_ID_BASE.to_vec(),
            base.to_be_bytes().to_vec(),
        )])?;
    }
    target.flush()?;
    drop((source, target));

    let kept = data.join(format!("db.{from}-{}", stamp()));
    std::fs::rename(&db, &kept)
        .with_context(|| format!("cannot move {} to {}", db.display(), kept.display()))?;
    if let Err(e) = std::fs::rename(&target_path, &db) {
        // Put the source back: the relay must find a store where it looks.
        let _ = std::fs::rename(&kept, &db);
        return Err(e).with_context(|| format!("cannot move the copy to {}", db.display()));
    }
    sync_dir(data)?;
    Ok(Migrated {
        from,
        to,
        entries,
        sampled,
        kept,
    })
}

/// Copies one tree page by page; returns how many entries it copied.
fn copy_tree(
    source: &dyn Store,
    target: &dyn Store,
    tree: Tree,
    mut copied: impl FnMut(usize),
) -> Result<usize> {
    let mut from = Vec::new();
    let mut total = 0;
    loop {
        let page = source.range(tree, &from, &KEY_END, PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(total);
        };
        from = last.clone();
        from.push(0);
        let n = page.len();
        target.apply_each(page.into_iter().map(|(k, v)| Op::Put(tree, k, v)).collect())?;
        total += n;
        copied(n);
    }
}

/// Checks that every tree has as many entries in `target` as the copy wrote
/// and `source` holds, and compares a sample of values byte for byte.
fn verify(source: &dyn Store, target: &dyn Store, copied: &[(Tree, usize)]) -> Result<usize> {
    let total: usize = copied.iter().map(|(_, n)| n).sum();
    let every = total.div_ceil(SAMPLE).max(1);
    let mut sampled = 0;
    for &(tree, n) in copied {
        let (in_source, in_target) = (source.count(tree)?, target.count(tree)?);
        ensure!(
            in_source == n && in_target == n,
            "the {} tree has {in_source} entries in the source, {n} copied, {in_target} in the copy: \
             the copy is not used",
            tree.name()
        );
        let mut from = Vec::new();
        let mut index = 0usize;
        loop {
            let page: Vec<Entry> = source.range(tree, &from, &KEY_END, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            from = last.clone();
            from.push(0);
            for (key, value) in page {
                // The first and last of each tree, and one in `every` between.
                if index.is_multiple_of(every) || index + 1 == n {
                    ensure!(
                        target.get(tree, &key)?.as_deref() == Some(value.as_slice()),
                        "a value in the {} tree differs in the copy: the copy is not used",
                        tree.name()
                    );
                    sampled += 1;
                }
                index += 1;
            }
        }
    }
    Ok(sampled)
}

/// `20261130T214903Z`: the time now (UTC), for a directory name.
fn stamp() -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_else(|_| crate::now_ms().to_string())
}

/// Makes the renames themselves durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayConfig;

    #[test]
    fn a_directory_in_use_is_not_migrated_and_then_is() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("relay");
        let opened = crate::datadir::open(&data, &RelayConfig::default()).unwrap();
        let err = migrate(&data, StoreKind::Sled, |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("in use"), "{err:#}");
        drop(opened);
        let done = migrate(&data, StoreKind::Sled, |_| {}).unwrap();
        assert_eq!((done.from, done.to), (StoreKind::Fjall, StoreKind::Sled));
        assert!(done.kept.exists());
    }

    #[test]
    fn an_older_directory_keeps_envelope_ids_above_its_relay_wide_counter() {
        // A store from before per-recipient ids: a relay-wide counter that
        // handed out ids, and no id base.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("relay");
        std::fs::create_dir(&data).unwrap();
        let before = {
            let store = open_store_of(&data.join("db"), StoreKind::Sled).unwrap();
            let last = (0..300).map(|_| store.next_id().unwrap()).max().unwrap();
            store
                .apply_each(vec![Op::Put(Tree::Accounts, b"k".to_vec(), b"v".to_vec())])
                .unwrap();
            store.flush().unwrap();
            last
        };
        migrate(&data, StoreKind::Fjall, |_| {}).unwrap();
        let store = open_store_of(&data.join("db"), StoreKind::Fjall).unwrap();
        let base = store.get(Tree::Meta, SECRET_ID_BASE).unwrap().unwrap();
        assert!(u64::from_be_bytes(base.try_into().unwrap()) > before);
    }
}
