//! The transparency log's anchor in the relay's store: the size and root of
//! the tree the relay last signed, and the leaf it is about to append, sealed
//! in the `Meta` tree. Whoever can edit `audit.log` and `audit.heads` cannot
//! move it without the master key, so a log edited behind the relay's back
//! (and its heads emptied) is refused at open instead of signed again.

use std::sync::Arc;

use anyhow::{Context, Result};
use sotto_warrant::transparency::Hash;

use super::audit::{Anchor, Anchored};
use crate::seal::Sealer;
use crate::store::{Batch, Store, Tree};

const AUDIT_ANCHOR: &[u8] = b"audit_anchor";

/// size (8, big-endian) ‖ root (32) ‖ 1 and the next leaf (32), or 0.
const NONE_NEXT: usize = 8 + 32 + 1;
const WITH_NEXT: usize = NONE_NEXT + 32;

pub(crate) struct StoredAnchor {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

impl StoredAnchor {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Self {
        StoredAnchor { store, sealer }
    }
}

impl Anchor for StoredAnchor {
    fn load(&self) -> Result<Option<Anchored>> {
        let Some(sealed) = self.store.get(Tree::Meta, AUDIT_ANCHOR)? else {
            return Ok(None);
        };
        let plain = self
            .sealer
            .open(Tree::Meta, AUDIT_ANCHOR, &sealed)
            .context("the transparency log's anchor in the store does not open")?;
        decode(&plain)
            .map(Some)
            .context("the transparency log's anchor in the store is damaged")
    }

    fn save(&self, anchored: &Anchored) -> Result<()> {
        let sealed = self
            .sealer
            .seal(Tree::Meta, AUDIT_ANCHOR, &encode(anchored));
        let mut batch = Batch::default();
        batch.put(Tree::Meta, AUDIT_ANCHOR.to_vec(), sealed);
        self.store.apply(batch)?;
        self.store.flush()?;
        Ok(())
    }
}

pub(crate) fn encode(a: &Anchored) -> Vec<u8> {
    let mut out = Vec::with_capacity(WITH_NEXT);
    out.extend_from_slice(&a.size.to_be_bytes());
    out.extend_from_slice(&a.root);
    match &a.next {
        Some(next) => {
            out.push(1);
            out.extend_from_slice(next);
        }
        None => out.push(0),
    }
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Anchored> {
    let hash = |b: &[u8]| -> Result<Hash> { Ok(b.try_into()?) };
    let (next, len) = match bytes.get(40) {
        Some(0) => (None, NONE_NEXT),
        Some(1) => (
            Some(hash(bytes.get(41..WITH_NEXT).unwrap_or_default())?),
            WITH_NEXT,
        ),
        _ => anyhow::bail!("its flag is neither 0 nor 1"),
    };
    anyhow::ensure!(bytes.len() == len, "it is {} bytes long", bytes.len());
    Ok(Anchored {
        size: u64::from_be_bytes(bytes[..8].try_into()?),
        root: hash(&bytes[8..40])?,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;
    use crate::warrant::audit::{self, AuditEntry, AuditLog, LogRefused};
    use ed25519_dalek::SigningKey;
    use std::path::Path;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[1; 32])
    }

    fn open(dir: &TestDir, path: &Path) -> anyhow::Result<AuditLog> {
        let anchor = StoredAnchor::new(dir.store(), dir.sealer.clone());
        AuditLog::open_anchored(path, key(), Box::new(anchor), crate::Clock::system())
    }

    /// A relay's log of three granted warrants, closed.
    fn three_warrants(dir: &TestDir, path: &Path) {
        let log = open(dir, path).unwrap();
        for id in ["W-1", "W-2", "W-3"] {
            let mut e = AuditEntry::new("warrant", "granted");
            e.warrant_id = id.into();
            e.records = 3;
            log.append(e).unwrap();
        }
    }

    fn refused(opened: anyhow::Result<AuditLog>) -> String {
        match opened {
            Err(e) if e.downcast_ref::<LogRefused>().is_some() => e.to_string(),
            Err(e) => panic!("refused for another reason: {e:#}"),
            Ok(_) => panic!("the relay opened (and signed) an altered log"),
        }
    }

    fn edit_line(path: &Path, n: usize, edit: impl Fn(&str) -> String) {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| if i == n { edit(l) } else { l.to_owned() })
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn curious_operator_who_edits_the_log_and_empties_the_heads_gets_nothing_signed() {
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        edit_line(&path, 1, |l| l.replace("\"records\":3", "\"records\":0"));
        std::fs::write(audit::heads_path(&path), b"").unwrap();
        let why = refused(open(&dir, &path));
        assert!(why.contains("edited"), "{why}");
        assert_eq!(
            std::fs::read(audit::heads_path(&path)).unwrap(),
            b"",
            "no head was signed over the edit"
        );
    }

    #[test]
    fn curious_operator_who_deletes_the_heads_and_rechains_the_log_gets_nothing_signed() {
        // Without the anchor, a log that is a valid hash chain and has no
        // heads is migrated, and signed: a chain needs no key to forge.
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        let mut prev = "0".repeat(64);
        let mut lines = Vec::new();
        for (i, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
            let mut e: AuditEntry = serde_json::from_str(line).unwrap();
            if i == 1 {
                e.decision = "refused".into();
            }
            e.prev = prev;
            e.hash = e.chain_hash();
            prev = e.hash.clone();
            lines.push(serde_json::to_string(&e).unwrap());
        }
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        std::fs::remove_file(audit::heads_path(&path)).unwrap();
        assert!(matches!(
            audit::verify(&path).unwrap(),
            audit::Verified::Intact { heads: 0, .. }
        ));
        refused(open(&dir, &path));
        assert!(!audit::heads_path(&path).exists());
    }

    /// Removes the anchor from the store, as anyone with the disk can: no key is needed.
    fn remove_anchor(dir: &TestDir) {
        let mut batch = crate::store::Batch::default();
        batch.delete(Tree::Meta, AUDIT_ANCHOR.to_vec());
        dir.store().apply(batch).unwrap();
    }

    #[test]
    fn a_log_an_older_relay_left_without_an_anchor_opens_when_its_heads_cover_it() {
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        remove_anchor(&dir);
        let log = open(&dir, &path).unwrap();
        assert_eq!(log.head().size(), 3);
        drop(log);
        // And it is anchored from then on.
        remove_anchor(&dir);
        edit_line(&path, 1, |l| l.replace("\"records\":3", "\"records\":1"));
        refused(open(&dir, &path));
    }

    #[test]
    fn curious_operator_who_removes_the_anchor_edits_the_log_and_empties_the_heads_gets_nothing_signed()
     {
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        edit_line(&path, 1, |l| l.replace("\"records\":3", "\"records\":0"));
        remove_anchor(&dir);
        std::fs::write(audit::heads_path(&path), b"").unwrap();
        assert!(refused(open(&dir, &path)).contains("no anchor"));
        assert_eq!(std::fs::read(audit::heads_path(&path)).unwrap(), b"");
        // Heads kept but the log edited: its last head no longer covers it.
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        edit_line(&path, 1, |l| l.replace("\"records\":3", "\"records\":0"));
        remove_anchor(&dir);
        assert!(refused(open(&dir, &path)).contains("another root"));
        // Or appended to.
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap().to_owned();
        std::fs::write(&path, format!("{text}{last}\n")).unwrap();
        remove_anchor(&dir);
        refused(open(&dir, &path));
    }

    #[test]
    fn curious_operator_who_truncates_the_log_and_its_heads_gets_nothing_signed() {
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.lines().take(2).collect();
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
        let heads = std::fs::read_to_string(audit::heads_path(&path)).unwrap();
        let kept: Vec<&str> = heads.lines().take(3).collect();
        std::fs::write(audit::heads_path(&path), kept.join("\n") + "\n").unwrap();
        assert!(refused(open(&dir, &path)).contains("removed"));
        // Emptied altogether: the same.
        std::fs::write(&path, b"").unwrap();
        std::fs::write(audit::heads_path(&path), b"").unwrap();
        refused(open(&dir, &path));
    }

    #[test]
    fn curious_operator_who_appends_an_entry_by_hand_gets_nothing_signed() {
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        let mut forged = AuditEntry::new("warrant", "refused");
        forged.seq = 4;
        forged.warrant_id = "W-4".into();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(
            &mut file,
            format!("{}\n", serde_json::to_string(&forged).unwrap()).as_bytes(),
        )
        .unwrap();
        assert!(refused(open(&dir, &path)).contains("not written by the relay"));
    }

    #[test]
    fn an_intact_log_reopens_and_a_crash_before_its_last_head_is_not_an_edit() {
        let dir = TestDir::new();
        let path = dir.path().join("audit.log");
        three_warrants(&dir, &path);
        let log = open(&dir, &path).unwrap();
        assert_eq!(log.head().size(), 3);
        log.append(AuditEntry::new("unmask", "refused")).unwrap();
        drop(log);
        // The crash: the entry's line is on disk, the head that covers it is not.
        let heads = std::fs::read_to_string(audit::heads_path(&path)).unwrap();
        let kept: Vec<&str> = heads.lines().collect();
        std::fs::write(
            audit::heads_path(&path),
            kept[..kept.len() - 1].join("\n") + "\n",
        )
        .unwrap();
        assert_eq!(open(&dir, &path).unwrap().head().size(), 4);
        // Heads lost but the log intact: signed again, nothing refused.
        std::fs::remove_file(audit::heads_path(&path)).unwrap();
        assert_eq!(open(&dir, &path).unwrap().head().size(), 4);
    }

    #[test]
    fn an_anchor_reads_back_as_it_was_saved() {
        let dir = crate::store::TestDir::new();
        let anchor = StoredAnchor::new(dir.store(), dir.sealer.clone());
        assert_eq!(anchor.load().unwrap(), None);
        for a in [
            Anchored {
                size: 0,
                root: [3; 32],
                next: None,
            },
            Anchored {
                size: u64::MAX,
                root: [4; 32],
                next: Some([5; 32]),
            },
        ] {
            anchor.save(&a).unwrap();
            assert_eq!(anchor.load().unwrap(), Some(a));
        }
        assert!(decode(&[0; 40]).is_err());
        assert!(decode(&[0; 42]).is_err());
    }
}
