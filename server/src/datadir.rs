//! The relay's data directory: laid out at first start, opened at every start.
//!
//! ```text
//! relay.toml        configuration (defaults written at init, with comments)
//! tls/              self-signed certificate and its key (0600)
//! db/               the embedded store (fjall, or sled); every value sealed
//! authorities.toml  registered warrant authorities
//! audit.log         the transparency log: one audit entry a line (the Merkle leaves)
//! audit.heads       the tree heads the relay signed with its audit key, one a line
//! master.key        the at-rest master key (0600) unless kept elsewhere
//! lock              held by the relay (or a migration) using the directory
//! cluster.keys      on a cluster's node (`store = "nats"`): the relay's keys as
//!                   its store holds them (the data key wrapped by the master key,
//!                   the disclosure and audit keys sealed), so that a new node
//!                   joins with `init --join` while this one runs (0600)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::config::{RelayConfig, StoreKind};
use crate::files::{create_private_dir, write_private};
use crate::seal::{MasterKey, Sealer};
use crate::store::{Applied, Batch, FjallStore, SledStore, Store, Tree};
use crate::tls::TlsIdentity;

const DATA_KEY: &[u8] = b"data_key";
const DISCLOSURE_KEY: &[u8] = b"disclosure_key";
const AUDIT_KEY: &[u8] = b"audit_key";
/// A cluster node's own id (random, not secret), made at its first start:
/// the warrant desk is claimed by it, and a data directory that has one
/// has served as a node, never as a single relay.
const NODE_ID: &[u8] = b"cluster_node_id";

/// Environment variable that carries the master key instead of a file.
pub const MASTER_KEY_ENV: &str = "SOTTO_MASTER_KEY";

/// The data directory held by this process (an exclusive lock on its
/// `lock` file): one relay, or one migration, at a time. Released when dropped.
pub struct DirLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says at once that another process holds it.
pub fn lock(root: &Path) -> Result<DirLock> {
    let path = root.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(crate::store::StoreError::InUse(root.display().to_string()).into())
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Everything the relay needs from its data directory, opened once.
pub struct OpenedDir {
    /// Held for as long as the directory is in use.
    pub lock: DirLock,
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
    pub tls: TlsIdentity,
    pub disclosure_key: SigningKey,
    /// Signs the transparency log's tree heads.
    pub audit_key: SigningKey,
    /// Said once to the operator when the master key sits beside the data it protects.
    pub warnings: Vec<String>,
}

pub fn config_path(root: &Path) -> PathBuf {
    root.join("relay.toml")
}

pub fn authorities_path(root: &Path) -> PathBuf {
    root.join("authorities.toml")
}

pub fn audit_path(root: &Path) -> PathBuf {
    root.join("audit.log")
}

/// Opens the data directory at `root`, laying out whatever is missing first.
pub fn open(root: &Path, config: &RelayConfig) -> Result<OpenedDir> {
    let mut warnings = Vec::new();
    create_private_dir(root)?;
    let lock = lock(root)?;
    let config_file = config_path(root);
    if !config_file.exists() {
        std::fs::write(&config_file, RelayConfig::commented_default())
            .with_context(|| format!("cannot write {}", config_file.display()))?;
    }
    let authorities = authorities_path(root);
    if !authorities.exists() {
        std::fs::write(
            &authorities,
            "# Warrant authorities, managed with `sotto-relay authority add|list|remove`.\n",
        )
        .with_context(|| format!("cannot write {}", authorities.display()))?;
    }

    let tls_dir = root.join("tls");
    let tls = if tls_dir.join("cert.der").exists() {
        TlsIdentity::load(&tls_dir)?
    } else {
        create_private_dir(&tls_dir)?;
        let tls = TlsIdentity::generate()?;
        tls.save(&tls_dir)?;
        tls
    };

    let master = master_key(root, config, &mut warnings)?;
    let store = open_store(&root.join("db"), config.store, &mut warnings)
        .with_context(|| format!("cannot open the store in {}", root.display()))?;
    let on_cluster = config.store == StoreKind::Nats;
    if on_cluster {
        import_cluster_keys(root, &*store)?;
    }
    let wrapped = match store.get(Tree::Meta, DATA_KEY)? {
        Some(wrapped) => wrapped,
        None => {
            let wrapped = master.wrap_new_data_key();
            store.apply(Batch::guarded(
                Tree::Meta,
                DATA_KEY.to_vec(),
                wrapped.clone(),
            ))?;
            store.flush()?;
            wrapped
        }
    };
    let sealer = Arc::new(master.unwrap_data_key(&wrapped).context(
        "the master key does not open this relay's data key: is it the key this data directory was made with?",
    )?);
    let disclosure_key = signing_key(&*store, &sealer, DISCLOSURE_KEY, "disclosure")?;
    // Made here for a data directory from before the transparency log too.
    let audit_key = signing_key(&*store, &sealer, AUDIT_KEY, "audit")?;
    if on_cluster {
        export_cluster_keys(root, &*store)?;
    }
    Ok(OpenedDir {
        lock,
        store,
        sealer,
        tls,
        disclosure_key,
        audit_key,
        warnings,
    })
}

/// This node's id on its cluster, if the data directory has served as one.
pub(crate) fn node_id(store: &dyn Store) -> Result<Option<Vec<u8>>> {
    Ok(store.get(Tree::Meta, NODE_ID)?)
}

/// This node's id on its cluster, made (and on stable storage) if it has none.
pub(crate) fn make_node_id(store: &dyn Store) -> Result<Vec<u8>> {
    if let Some(id) = node_id(store)? {
        return Ok(id);
    }
    let mut id = vec![0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    store.apply(Batch::guarded(Tree::Meta, NODE_ID.to_vec(), id.clone()))?;
    store.flush()?;
    // A guarded put keeps a value already there: read what won.
    node_id(store)?.context("the node id was not kept")
}

/// The keys every node of a cluster shares, as the store holds them.
const CLUSTER_KEYS: [&[u8]; 3] = [DATA_KEY, DISCLOSURE_KEY, AUDIT_KEY];

pub fn cluster_keys_path(root: &Path) -> PathBuf {
    root.join("cluster.keys")
}

/// Writes `cluster.keys` from the store, unless it is there: one line per
/// key, its name and its stored (wrapped or sealed) value in hex.
fn export_cluster_keys(root: &Path, store: &dyn Store) -> Result<()> {
    let path = cluster_keys_path(root);
    if path.exists() {
        return Ok(());
    }
    let mut text = String::from(
        "# The relay's keys as its store holds them (wrapped by the master key, or sealed):\n\
         # `sotto-relay init --join` gives them to a new node. Useless without the master key.\n",
    );
    for name in CLUSTER_KEYS {
        let value = store
            .get(Tree::Meta, name)?
            .with_context(|| format!("the store holds no {}", String::from_utf8_lossy(name)))?;
        text.push_str(&format!(
            "{} {}\n",
            String::from_utf8_lossy(name),
            hex::encode(value)
        ));
    }
    write_private(&path, text.as_bytes())
}

/// Puts the keys of `cluster.keys` (a node it joined gave them) into a
/// store that holds none yet; a store with other keys is refused.
fn import_cluster_keys(root: &Path, store: &dyn Store) -> Result<()> {
    let path = cluster_keys_path(root);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, _)| n))
        .collect();
    for name in CLUSTER_KEYS {
        let name = String::from_utf8_lossy(name);
        ensure!(
            names.contains(&name.as_ref()),
            "{} lacks the {name}: copy it whole from a node of the cluster",
            path.display()
        );
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, value) = line
            .split_once(' ')
            .with_context(|| format!("{} is damaged: a line without a value", path.display()))?;
        ensure!(
            CLUSTER_KEYS.contains(&name.as_bytes()),
            "{} names an unknown key {name:?}",
            path.display()
        );
        let value = hex::decode(value.trim())
            .with_context(|| format!("{} is damaged: the value of {name}", path.display()))?;
        match store.apply(Batch::guarded(
            Tree::Meta,
            name.as_bytes().to_vec(),
            value.clone(),
        ))? {
            Applied::Written => {}
            Applied::GuardExists(held) if held == value => {}
            Applied::GuardExists(_) => bail!(
                "this node's store holds another {name} than {}: it belongs to another relay",
                path.display()
            ),
        }
    }
    store.flush()?;
    Ok(())
}

/// Lays out a new node's data directory at `root` with what it shares with
/// the cluster's node at `from`: its configuration, certificate, master key
/// (when kept there), NATS passwords and keys. `from` may be serving.
pub fn join(root: &Path, from: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    ensure!(
        cluster_keys_path(from).exists(),
        "{} is not a cluster node's data directory (it has no cluster.keys: is its relay.toml \
         store = \"nats\", and has it started once?)",
        from.display()
    );
    ensure!(
        !root.join("db").exists() && !config_path(root).exists(),
        "{} already holds a relay: --join lays out a new one",
        root.display()
    );
    let config = RelayConfig::load(&config_path(from))?;
    let mut files: Vec<PathBuf> = vec![
        PathBuf::from("relay.toml"),
        PathBuf::from("authorities.toml"),
        PathBuf::from("cluster.keys"),
        PathBuf::from("tls/cert.der"),
        PathBuf::from("tls/key.der"),
    ];
    for file in [
        &config.master_key_file,
        &config.nats_password_file,
        &config.nats_warrant_password_file,
    ] {
        if file.is_relative() {
            files.push(file.clone());
        } else {
            notes.push(format!(
                "{} is outside the data directory: give the new node the same one",
                file.display()
            ));
        }
    }
    // Everything checked before anything is written: a refusal leaves no
    // half a node. Only plain names inside the directory (no `..`), and
    // nothing reached through a link in the source.
    for file in &files {
        ensure!(
            file.components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{} in {}'s relay.toml is not a plain path inside its data directory: \
             give the new node that file yourself",
            file.display(),
            from.display()
        );
        let mut walked = from.to_path_buf();
        for part in file.components() {
            walked.push(part);
            ensure!(
                !std::fs::symlink_metadata(&walked).is_ok_and(|m| m.file_type().is_symlink()),
                "{} is a link: --join copies only what is in the data directory itself",
                walked.display()
            );
        }
    }
    create_private_dir(root)?;
    create_private_dir(&root.join("tls"))?;
    for file in files {
        let source = from.join(&file);
        if !source.exists() {
            notes.push(format!(
                "{} has no {}: give the new node its own (or the environment variable)",
                from.display(),
                file.display()
            ));
            continue;
        }
        let bytes = Zeroizing::new(
            std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?,
        );
        write_private(&root.join(&file), &bytes)?;
    }
    Ok(notes)
}

/// The kind of store `db` holds, if it holds one (sled leaves a `conf`
/// file, fjall does not).
pub fn existing_store(db: &Path) -> Result<Option<StoreKind>> {
    Ok(if db.join("conf").exists() {
        Some(StoreKind::Sled)
    } else if db.exists() && std::fs::read_dir(db)?.next().is_some() {
        Some(StoreKind::Fjall)
    } else {
        None
    })
}

/// Opens (or makes) a store of `kind` at `db` (for a cluster's node, the
/// embedded store it keeps its own records in).
pub fn open_store_of(db: &Path, kind: StoreKind) -> Result<Arc<dyn Store>> {
    Ok(match kind.local() {
        StoreKind::Sled => Arc::new(SledStore::open(db)?),
        _ => Arc::new(FjallStore::open(db)?),
    })
}

/// The store in `db/`: the one it holds if it exists, else a new one of `wanted`'s kind.
fn open_store(db: &Path, wanted: StoreKind, warnings: &mut Vec<String>) -> Result<Arc<dyn Store>> {
    let wanted = wanted.local();
    let existing = existing_store(db)?;
    let kind = existing.unwrap_or(wanted);
    if existing.is_some_and(|e| e != wanted) {
        warnings.push(format!(
            "relay.toml asks for the {wanted} store, but this data directory holds a {kind} store: it is kept \
             (data is never moved silently; `sotto-relay migrate --to {wanted}` copies it)"
        ));
    }
    open_store_of(db, kind)
}

fn master_key(root: &Path, config: &RelayConfig, warnings: &mut Vec<String>) -> Result<MasterKey> {
    if let Ok(hex) = std::env::var(MASTER_KEY_ENV) {
        let hex = Zeroizing::new(hex);
        return MasterKey::from_hex(&hex)
            .with_context(|| format!("{MASTER_KEY_ENV} is not a master key"));
    }
    let path = if config.master_key_file.is_absolute() {
        config.master_key_file.clone()
    } else {
        root.join(&config.master_key_file)
    };
    if !path.exists() {
        if root.join("db").exists() {
            bail!(
                "the master key {} is missing, and the store exists: without its key the store cannot be read",
                path.display()
            );
        }
        write_private(&path, MasterKey::generate().to_hex().as_bytes())?;
    }
    if path.starts_with(root) {
        warnings.push(format!(
            "the master key is at {}, inside the data directory: in production keep it elsewhere \
             (master_key_file in relay.toml, or {MASTER_KEY_ENV})",
            path.display()
        ));
    }
    Ok(MasterKey::load(&path)?)
}

/// The relay's Ed25519 key stored sealed under `name` in the Meta tree, made on first use.
fn signing_key(store: &dyn Store, sealer: &Sealer, name: &[u8], what: &str) -> Result<SigningKey> {
    if let Some(sealed) = store.get(Tree::Meta, name)? {
        let secret = sealer.open(Tree::Meta, name, &sealed)?;
        let bytes: [u8; 32] = secret
            .as_slice()
            .try_into()
            .with_context(|| format!("the stored {what} key is damaged"))?;
        return Ok(SigningKey::from_bytes(&bytes));
    }
    let key = SigningKey::generate(&mut rand::rng());
    let sealed = sealer.seal(Tree::Meta, name, key.as_bytes());
    if let Applied::GuardExists(_) =
        store.apply(Batch::guarded(Tree::Meta, name.to_vec(), sealed))?
    {
        bail!("the {what} key was made twice at once");
    }
    store.flush()?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster node's data directory, as `join` reads it, with `extra` in its relay.toml.
    fn node(extra: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            config_path(dir.path()),
            format!("store = \"nats\"\nnats_urls = [\"nats://127.0.0.1:4222\"]\n{extra}"),
        )
        .unwrap();
        std::fs::write(cluster_keys_path(dir.path()), "data_key 00\n").unwrap();
        std::fs::write(dir.path().join("master.key"), "k").unwrap();
        dir
    }

    #[test]
    fn hostile_source_cannot_make_join_write_outside_the_new_directory() {
        let target = tempfile::tempdir().unwrap();
        for extra in [
            "nats_password_file = \"../../../tmp/escaped\"\n",
            "master_key_file = \"tls/../../escaped\"\n",
        ] {
            let from = node(extra);
            let new = target.path().join("new");
            let refused = join(&new, from.path()).unwrap_err();
            assert!(
                refused.to_string().contains("not a plain path"),
                "{refused}"
            );
            assert!(!new.exists(), "a refused join left a half node");
        }
        // A link inside the source, to a file elsewhere, is not followed.
        let from = node("");
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("secret"), "not the relay's").unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("secret"),
            from.path().join("nats.password"),
        )
        .unwrap();
        let new = target.path().join("linked");
        let refused = join(&new, from.path()).unwrap_err();
        assert!(refused.to_string().contains("is a link"), "{refused}");
        assert!(!new.exists());
    }

    #[test]
    fn a_cluster_keys_file_without_every_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(cluster_keys_path(dir.path()), "data_key 00\n").unwrap();
        let store = FjallStore::open(&dir.path().join("db")).unwrap();
        let refused = import_cluster_keys(dir.path(), &store).unwrap_err();
        assert!(
            refused.to_string().contains("lacks the disclosure_key"),
            "{refused}"
        );
    }
}
