//! The audit log: every warrant and unmask request, granted or refused, one
//! JSON object a line in `audit.log`, as the leaves of an RFC 9162 Merkle
//! tree (the transparency log); after every entry the relay signs a tree head
//! with its audit key and appends it to `audit.heads`.
//!
//! Invariants: an entry and the head that covers it are written and synced to
//! disk before the requester gets an answer (with a receipt: the entry, that
//! head, the inclusion proof); a line of `audit.log` is exactly the bytes the
//! tree hashes (`SHA-256(0x00 ‖ line)`), so anyone can recompute the root;
//! entries hold ids, case references, authorities, targets (named by the
//! warrant, by design), windows, the relay named, decisions, reasons, unmask
//! reasons, counts and the bundle's hash, never message text and never the
//! identity of anyone who is not a target. Requests no registered authority
//! signed (and replays) are `unverifiable` entries: one a request up to a
//! small budget, then one entry a minute that counts the rest. Each entry's
//! `seq` is its line number, so a moved line is named; an edited or removed
//! one no longer matches the heads the relay signed, nor any head it
//! published, nor an investigator's receipt.
//!
//! A log from before (a SHA-256 hash chain, each line with `prev` and `hash`,
//! and no `audit.heads`) is migrated at the first open: its chain is checked,
//! a copy is kept as `audit.log.chain-<time>`, and its lines, unchanged,
//! become the first leaves. A broken chain is not migrated: the relay would
//! be signing over the alteration.
//!
//! The files alone cannot stop an operator who edits the log and empties or
//! deletes `audit.heads`: the relay would sign a fresh head over the edit.
//! So the relay also keeps an [`Anchor`] where the files' editor cannot
//! reach it (sealed in its store): the size and root it last signed, and the
//! leaf it is about to append. A log that does not extend that tree (an
//! entry edited, removed, reordered, or one appended by hand) is refused at
//! open with [`LogRefused`], and nothing is signed over it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::Clock;
use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sotto_warrant::transparency::{Hash, ProofError, SignedTreeHead, Tree, TreeHead};

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// "warrant", "collect" (a disclosure fetched), "review" (an operator's
    /// decision), "unmask", "extension" (notices postponed), "notice"
    /// (people told of a warrant; see `count`), or "unverifiable" (no
    /// registered authority's signature verified, or a replay; see `count`).
    pub kind: String,
    pub warrant_id: String,
    pub case: String,
    /// The registered authority that signed it, when one did.
    pub authority: String,
    /// "granted" or "refused"; "pending" for a warrant held for review; for
    /// `review` entries "approved" (more approvals needed), "granted",
    /// "rejected", or "refused" (it no longer passes the automatic checks).
    pub decision: String,
    /// The refusal code (empty when granted).
    pub reason: String,
    /// Accounts the warrant targets (names: targets are named by the warrant).
    pub targets: Vec<String>,
    pub records: u64,
    pub conversations: u64,
    pub pseudonyms: u64,
    /// Pseudonyms an unmask request asked for, and how many it revealed.
    pub unmask_requested: u64,
    pub unmask_revealed: u64,
    /// Secret-mode items disclosed: always 0, recorded to say so.
    pub secret_items: u64,
    /// SHA-256 of the sealed bundle handed out (empty when refused).
    pub bundle_sha256: String,
    // Fields added later are left out when empty, so entries written before
    // them hash the same as they did.
    /// The disclosure window the warrant asked for, seconds since the epoch.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub window_from: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub window_until: i64,
    /// Hex of the relay disclosure key the warrant names.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub relay: String,
    /// The reason an unmask request gave.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unmask_reason: String,
    /// For `unverifiable` entries: the request kind ("warrant", "unmask"), or
    /// empty for a minute's count of the requests over the budget.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request: String,
    /// Hex of the SHA-256 of the signed request as received (the encoded
    /// `SignedWarrant` or `SignedUnmaskRequest`): what ties an investigator's
    /// receipt to their own request, whatever else the entry says.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_sha256: String,
    /// For `unverifiable` entries: how many requests the entry stands for;
    /// for `notice` entries, how many people were told.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: u64,
    /// For `review` entries: the operator who decided, how many operators
    /// have approved the warrant so far, and a rejection's reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operator: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub approvals: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub review_reason: String,
    /// A monitoring warrant's delivery number, and whether it was the last.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delivery: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_delivery: bool,
    /// When the people disclosed are told (seconds): what a warrant asked
    /// (0: the relay's default), what an extension set, or when a notice was due.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notify_after: i64,
    /// The reason a notice extension gave.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub extension_reason: String,
    /// Of a hash-chained log (before the transparency log): the hash of the
    /// line before, and of this one. Empty, and left out, in entries since.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prev: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl AuditEntry {
    /// What a caller fills in; sequence and time are the log's.
    pub fn new(kind: &str, decision: &str) -> Self {
        AuditEntry {
            seq: 0,
            time: String::new(),
            kind: kind.to_owned(),
            warrant_id: String::new(),
            case: String::new(),
            authority: String::new(),
            decision: decision.to_owned(),
            reason: String::new(),
            targets: Vec::new(),
            records: 0,
            conversations: 0,
            pseudonyms: 0,
            unmask_requested: 0,
            unmask_revealed: 0,
            secret_items: 0,
            bundle_sha256: String::new(),
            window_from: 0,
            window_until: 0,
            relay: String::new(),
            unmask_reason: String::new(),
            request: String::new(),
            request_sha256: String::new(),
            count: 0,
            operator: String::new(),
            approvals: 0,
            review_reason: String::new(),
            delivery: 0,
            final_delivery: false,
            notify_after: 0,
            extension_reason: String::new(),
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// The hash a hash-chained log gave this line: over `prev` and the line
    /// with `"hash":""` as its last field (as that log always wrote it).
    pub(crate) fn chain_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = String::new();
        let mut body = serde_json::to_string(&unhashed).expect("an audit entry always encodes");
        body.pop();
        body.push_str(",\"hash\":\"\"}");
        hex::encode(
            Sha256::new()
                .chain_update(self.prev.as_bytes())
                .chain_update(body)
                .finalize(),
        )
    }
}

/// What appending an entry gave: its index, its exact bytes, the head that
/// covers it, and the inclusion proof: a receipt's makings.
#[derive(Debug, Clone)]
pub struct Logged {
    pub index: u64,
    pub entry: AuditEntry,
    pub line: Vec<u8>,
    pub head: SignedTreeHead,
    pub inclusion: Vec<Hash>,
}

struct LogState {
    tree: Tree,
    head: SignedTreeHead,
}

pub struct AuditLog {
    path: PathBuf,
    heads: PathBuf,
    audit_key: SigningKey,
    anchor: Option<Box<dyn Anchor>>,
    state: Mutex<LogState>,
    /// Entries' and heads' times.
    clock: Clock,
}

/// What the relay last vouched for: the tree of `size` entries with `root`
/// was signed, and the entry after it, if written, hashes to `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchored {
    pub size: u64,
    pub root: Hash,
    pub next: Option<Hash>,
}

/// Where the relay keeps its [`Anchored`] tree, out of reach of whoever can
/// edit `audit.log` and `audit.heads` (the relay's sealed store). `save`
/// returns once it is durable.
pub trait Anchor: Send + Sync {
    fn load(&self) -> Result<Option<Anchored>>;
    fn save(&self, anchored: &Anchored) -> Result<()>;
}

/// The log on disk is not the one the relay last signed: it refuses to sign
/// over it (and so to serve any request it would have to log).
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} is not the transparency log this relay signed: {why}. The relay signs nothing over it \
     and serves no warrant or unmask request until the log and audit.heads are restored (from a backup)"
)]
pub struct LogRefused {
    pub path: String,
    pub why: String,
}

/// Where the relay's signed heads of the log at `log` are kept: `audit.heads` beside `audit.log`.
pub fn heads_path(log: &Path) -> PathBuf {
    log.with_extension("heads")
}

impl AuditLog {
    /// Opens the log at `path` (it need not exist yet), migrating a hash-chained
    /// log first, and signs a head for it if its last one does not cover it all.
    /// A log that does not match the heads signed before does not stop the relay
    /// (its users are not at fault): it is reported, and `audit verify` keeps
    /// naming the entry. Without an anchor: for tools and tests; the relay
    /// opens its log with [`AuditLog::open_anchored`].
    pub fn open(path: &Path, audit_key: SigningKey) -> Result<Self> {
        Self::open_with(path, audit_key, None, Clock::system())
    }

    /// As [`AuditLog::open`], and checks the log against `anchor`, what the
    /// relay last signed: a log that does not extend it fails with
    /// [`LogRefused`] before anything is signed or written.
    pub fn open_anchored(
        path: &Path,
        audit_key: SigningKey,
        anchor: Box<dyn Anchor>,
        clock: Clock,
    ) -> Result<Self> {
        Self::open_with(path, audit_key, Some(anchor), clock)
    }

    fn open_with(
        path: &Path,
        audit_key: SigningKey,
        anchor: Option<Box<dyn Anchor>>,
        clock: Clock,
    ) -> Result<Self> {
        let heads = heads_path(path);
        let anchored = match &anchor {
            Some(anchor) => anchor.load()?,
            None => None,
        };
        // With an anchor, the log is a transparency log already: missing
        // heads were removed, not a chain to migrate.
        let migrated = path.exists() && !heads.exists() && anchored.is_none();
        if migrated {
            migrate_chain(path)?;
        }
        // A line torn by a crash was never answered with: cut it off, so the
        // next one starts on a line of its own.
        cut_torn_line(path)?;
        cut_torn_line(&heads)?;
        let tree = read_tree(path)?;
        if let Some(anchored) = &anchored {
            check_anchored(&tree, anchored).map_err(|why| LogRefused {
                path: path.display().to_string(),
                why,
            })?;
        } else if anchor.is_some() && !tree.is_empty() && !migrated {
            // No anchor, yet a log: a relay from before anchors, whose last
            // head covers its log exactly, or an anchor someone removed from
            // the store (which takes no key). Then only the heads can say
            // the log is what the relay signed.
            check_unanchored(&tree, &heads, &audit_key).map_err(|why| LogRefused {
                path: path.display().to_string(),
                why,
            })?;
        }
        if let Verified::Broken { line, why } = verify(path)? {
            tracing::error!(entry = line, why = %why, "the audit log does not match what the relay signed; `sotto-relay audit verify` shows where");
        }
        let size = tree.len();
        let head = match last_head(&heads)? {
            Some(head)
                if head.size() == size
                    && head.key() == &audit_key.verifying_key()
                    && tree.root(size).ok().as_ref() == Some(head.root()) =>
            {
                head
            }
            _ => {
                let head = sign_head(&tree, &audit_key, &clock)?;
                append_line(&heads, head.to_json().as_bytes())?;
                head
            }
        };
        if let Some(anchor) = &anchor {
            let now = Anchored {
                size,
                root: *head.root(),
                next: None,
            };
            if anchored != Some(now) {
                anchor.save(&now)?;
            }
        }
        Ok(AuditLog {
            path: path.to_owned(),
            heads,
            audit_key,
            anchor,
            state: Mutex::new(LogState { tree, head }),
            clock,
        })
    }

    /// Appends `entry` (its `seq` the next line number), syncs it, signs and
    /// syncs the head that covers it, and returns the receipt's makings.
    pub fn append(&self, mut entry: AuditEntry) -> Result<Logged> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let index = state.tree.len();
        entry.seq = index + 1;
        entry.time = self.clock.now_rfc3339();
        entry.prev = String::new();
        entry.hash = String::new();
        let line = serde_json::to_vec(&entry).context("cannot encode an audit entry")?;
        if let Some(anchor) = &self.anchor {
            // Said before it is written: a line found after the anchored
            // tree at the next open is this one, or the log was edited.
            anchor.save(&Anchored {
                size: index,
                root: state.tree.root(index)?,
                next: Some(sotto_warrant::transparency::merkle::leaf_hash(&line)),
            })?;
        }
        let before = append_line(&self.path, &line)?;
        state.tree.push(&line);
        let head = sign_head(&state.tree, &self.audit_key, &self.clock)?;
        if let Err(e) = append_line(&self.heads, head.to_json().as_bytes()) {
            // No head covers the entry: take it back, so that the log on
            // disk is what the tree in memory and the heads say.
            truncate(&self.path, before)?;
            state.tree = read_tree(&self.path)?;
            return Err(e);
        }
        state.head = head.clone();
        if let Some(anchor) = &self.anchor {
            // Now the entry is signed, removing it is an edit too. Should
            // this fail, the announced entry still checks at the next open.
            let signed = Anchored {
                size: head.size(),
                root: *head.root(),
                next: None,
            };
            if let Err(e) = anchor.save(&signed) {
                tracing::warn!(error = %format!("{e:#}"), "cannot anchor the transparency log's new head in the store");
            }
        }
        let inclusion = state.tree.inclusion_proof(index, index + 1)?;
        Ok(Logged {
            index,
            entry,
            line,
            head,
            inclusion,
        })
    }

    /// The latest signed tree head.
    pub fn head(&self) -> SignedTreeHead {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .head
            .clone()
    }

    /// The proof that the log of `to` entries extends the one of `from`.
    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tree
            .consistency_proof(from, to)
    }
}

/// Why `tree`, found without an anchor, is not covered exactly by the last
/// head in `heads` that `audit_key` signed.
fn check_unanchored(
    tree: &Tree,
    heads: &Path,
    audit_key: &SigningKey,
) -> std::result::Result<(), String> {
    let size = tree.len();
    let refuse = |what: String| {
        format!(
            "the store holds no anchor for this log of {size} entries, and {what}: the anchor was \
             removed from the store, or the log written by an older relay was changed since"
        )
    };
    let head = match last_head(heads) {
        Ok(Some(head)) => head,
        Ok(None) => return Err(refuse("no head the relay signed covers it".into())),
        Err(e) => return Err(refuse(format!("its heads cannot be read ({e:#})"))),
    };
    if head.key() != &audit_key.verifying_key() {
        return Err(refuse(
            "its last head was signed by another audit key".into(),
        ));
    }
    if head.size() != size || tree.root(size).ok().as_ref() != Some(head.root()) {
        return Err(refuse(format!(
            "its last signed head covers {} entries with another root",
            head.size()
        )));
    }
    Ok(())
}

/// Why `tree` is not the anchored one extended (by at most the entry it announced).
fn check_anchored(tree: &Tree, anchored: &Anchored) -> std::result::Result<(), String> {
    let size = tree.len();
    if size < anchored.size {
        return Err(format!(
            "it holds {size} entries, but the relay signed {} (entries were removed)",
            anchored.size
        ));
    }
    if tree.root(anchored.size).ok() != Some(anchored.root) {
        return Err(format!(
            "its first {} entries are not those the relay signed (an entry was edited, removed or moved)",
            anchored.size
        ));
    }
    match size - anchored.size {
        0 => Ok(()),
        1 if tree.leaf(anchored.size) == anchored.next => Ok(()),
        extra => Err(format!(
            "{extra} entries after the {} the relay signed were not written by the relay",
            anchored.size
        )),
    }
}

fn sign_head(tree: &Tree, audit_key: &SigningKey, clock: &Clock) -> Result<SignedTreeHead> {
    let size = tree.len();
    Ok(TreeHead {
        size,
        root: tree.root(size)?,
        time_ms: clock.now_ms(),
    }
    .sign(audit_key))
}

/// Appends one line and syncs it to disk; returns the file's length before.
/// A write that fails is taken back (the file cut to that length), so a
/// half-written line never precedes the next one.
fn append_line(path: &Path, line: &[u8]) -> Result<u64> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let before = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line);
    bytes.push(b'\n');
    if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
        let _ = file.set_len(before).and_then(|()| file.sync_data());
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(before)
}

/// Cuts `path` back to `len` bytes, durably.
fn truncate(path: &Path, len: u64) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.set_len(len)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot cut {} back", path.display()))
}

/// Cuts off a last line without its newline (a write a crash tore).
fn cut_torn_line(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(file = %path.display(), "cutting off a line a crash tore");
    truncate(path, keep as u64)
}

/// The complete lines of a file: a last line without its newline was being
/// written when the relay stopped, was never answered with, and is left out.
fn lines(path: &Path) -> Result<Vec<Vec<u8>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    // After the last newline: empty, or a torn line.
    lines.pop();
    Ok(lines)
}

fn read_tree(path: &Path) -> Result<Tree> {
    let mut tree = Tree::new();
    for line in lines(path)? {
        tree.push(&line);
    }
    Ok(tree)
}

/// The relay's signed heads, in the order it signed them; fails on a line that is not one.
fn read_heads(path: &Path) -> Result<Vec<std::result::Result<SignedTreeHead, String>>> {
    Ok(lines(path)?
        .iter()
        .map(|line| {
            SignedTreeHead::parse(&String::from_utf8_lossy(line)).map_err(|e| e.to_string())
        })
        .collect())
}

/// The latest head the relay signed for the log at `log`, if it signed one.
pub fn latest_head(log: &Path) -> Result<Option<SignedTreeHead>> {
    last_head(&heads_path(log))
}

fn last_head(path: &Path) -> Result<Option<SignedTreeHead>> {
    Ok(read_heads(path)?.into_iter().rev().find_map(|h| h.ok()))
}

/// Moves a hash-chained log into the Merkle log: its lines stay, unchanged,
/// as the first leaves; a copy of the file is kept as `audit.log.chain-<time>`.
fn migrate_chain(path: &Path) -> Result<()> {
    if let Verified::Broken { line, why } = verify_chain(path)? {
        bail!(
            "{} is a hash-chained audit log broken at line {line} ({why}); it is not migrated into \
             the transparency log, which would sign over the alteration: keep it for inspection, \
             move it aside, and start the relay again to begin a new log",
            path.display()
        );
    }
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let kept = path.with_extension(format!("log.chain-{stamp}"));
    std::fs::copy(path, &kept).with_context(|| {
        format!(
            "cannot keep a copy of {} before migrating it",
            path.display()
        )
    })?;
    tracing::info!(kept = %kept.display(), "migrated the hash-chained audit log into the transparency log");
    Ok(())
}

/// The result of checking a log.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// Every entry in order, every head the relay signed matching (and the
    /// published head, when checked against one).
    Intact {
        entries: u64,
        root: Hash,
        heads: u64,
    },
    /// `line` is the first entry found bad (from 1), `why` says how.
    Broken { line: u64, why: String },
}

/// Reads every entry of the log (for reports). Fails on a line that is not an entry.
pub fn entries(path: &Path) -> Result<Vec<AuditEntry>> {
    lines(path)?
        .iter()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice(line)
                .with_context(|| format!("line {} is not an audit entry", i + 1))
        })
        .collect()
}

/// Checks the whole log: every line an entry in sequence, and every head the
/// relay signed (in `audit.heads`) matching the tree of the lines, under one
/// audit key. Names the first bad entry. A log not yet migrated is checked as
/// the hash chain it is.
pub fn verify(path: &Path) -> Result<Verified> {
    let heads = heads_path(path);
    if path.exists() && !heads.exists() {
        return verify_chain(path);
    }
    let mut tree = Tree::new();
    for (i, line) in lines(path)?.iter().enumerate() {
        let n = i as u64 + 1;
        let broken = |why: &str| Verified::Broken {
            line: n,
            why: why.to_owned(),
        };
        let Ok(entry) = serde_json::from_slice::<AuditEntry>(line) else {
            return Ok(broken("not an audit entry"));
        };
        if entry.seq != n {
            return Ok(broken(
                "out of sequence (an entry was removed, inserted or moved)",
            ));
        }
        tree.push(line);
    }
    let size = tree.len();
    let mut good = 0u64;
    let mut key = None;
    let heads = read_heads(&heads)?;
    for head in &heads {
        let head = match head {
            Ok(head) => head,
            Err(why) => {
                return Ok(Verified::Broken {
                    line: good + 1,
                    why: format!("a signed head after entry {good} does not check: {why}"),
                });
            }
        };
        if *key.get_or_insert(*head.key()) != *head.key() {
            return Ok(Verified::Broken {
                line: good + 1,
                why: "a head after it is signed by another audit key".into(),
            });
        }
        if let Some(broken) = mismatch(&tree, head, good, "the relay's signed head") {
            return Ok(broken);
        }
        good = good.max(head.size());
    }
    Ok(Verified::Intact {
        entries: size,
        root: tree.root(size)?,
        heads: heads.len() as u64,
    })
}

/// Where `head` (signed over the first `head.size()` entries) and the tree
/// disagree, if they do; `good` entries are known to match already.
fn mismatch(tree: &Tree, head: &SignedTreeHead, good: u64, whose: &str) -> Option<Verified> {
    let size = tree.len();
    if head.size() > size {
        return Some(Verified::Broken {
            line: size + 1,
            why: format!(
                "removed: the log ends at entry {size}, but {whose} covers {} entries (truncated)",
                head.size()
            ),
        });
    }
    if tree.root(head.size()).ok().as_ref() == Some(head.root()) {
        return None;
    }
    let first = good.min(head.size()) + 1;
    Some(Verified::Broken {
        line: first,
        why: if first == head.size() {
            format!("edited: it does not match {whose} of size {}", head.size())
        } else {
            format!(
                "edited: the entries {first} to {} do not match {whose} of size {} \
                 (one of them was changed, removed or moved)",
                head.size(),
                head.size()
            )
        },
    })
}

/// Checks the log as [`verify`] does, then that it extends `published`, a
/// head the relay signed earlier: the same audit key, and the log's first
/// `published.size()` entries hash to its root.
pub fn verify_against(path: &Path, published: &SignedTreeHead) -> Result<Verified> {
    let verified = verify(path)?;
    if let Verified::Broken { .. } = verified {
        return Ok(verified);
    }
    if let Some(own) = last_head(&heads_path(path))?
        && own.key() != published.key()
    {
        return Ok(Verified::Broken {
            line: 1,
            why: format!(
                "the published head was signed by audit key {}, this log by {}: another relay's head, or the key was replaced",
                hex::encode(published.key().as_bytes()),
                hex::encode(own.key().as_bytes())
            ),
        });
    }
    let tree = read_tree(path)?;
    Ok(mismatch(&tree, published, 0, "the published head").unwrap_or(verified))
}

/// The check of a log from before the transparency log: each line chained
/// to the one before by hash. Names the first broken line.
fn verify_chain(path: &Path) -> Result<Verified> {
    let mut prev = GENESIS.to_owned();
    let mut tree = Tree::new();
    for (i, line) in lines(path)?.iter().enumerate() {
        let n = i as u64 + 1;
        let broken = |why: &str| Verified::Broken {
            line: n,
            why: why.to_owned(),
        };
        let Ok(entry) = serde_json::from_slice::<AuditEntry>(line) else {
            return Ok(broken("not an audit entry"));
        };
        if entry.seq != n {
            return Ok(broken("out of sequence (a line was removed or inserted)"));
        }
        if entry.prev != prev {
            return Ok(broken("does not chain to the line before"));
        }
        if entry.chain_hash() != entry.hash {
            return Ok(broken("its content does not match its hash (edited)"));
        }
        prev = entry.hash;
        tree.push(line);
    }
    let size = tree.len();
    Ok(Verified::Intact {
        entries: size,
        root: tree.root(size)?,
        heads: 0,
    })
}

/// Counts of one half-year, for the transparency report.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Period {
    pub period: String,
    pub warrants_received: u64,
    pub warrants_granted: u64,
    pub warrants_refused: u64,
    pub refused_by_reason: BTreeMap<String, u64>,
    /// Warrants that passed every automatic check and were held for the
    /// operators' review, and of those, the ones the operators rejected.
    pub warrants_held_for_review: u64,
    pub warrants_approved_in_review: u64,
    pub warrants_rejected_in_review: u64,
    /// The median time from a warrant's submission to the operators'
    /// decision (approval or rejection), over the decisions of the period.
    pub median_secs_to_decision: Option<i64>,
    /// Deliveries made (each delivery once, however often fetched).
    pub deliveries: u64,
    pub accounts_targeted: u64,
    pub records_disclosed: u64,
    pub pseudonyms_issued: u64,
    pub unmask_requests_received: u64,
    pub unmask_requests_granted: u64,
    pub pseudonyms_unmasked: u64,
    /// Requests no registered authority's signature verified, and replays:
    /// counted apart, never as warrants received.
    pub unverifiable_requests: u64,
    /// Notice extensions granted; people told of warrants (targets and
    /// those unmasked), and the warrants they were told of.
    pub notice_extensions_granted: u64,
    pub people_notified: u64,
    pub warrants_notified: u64,
    pub secret_items_disclosed: u64,
}

/// What the log says is still open, across every period.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Outstanding {
    /// Warrants held for review with no decision yet.
    pub pending_review: u64,
    /// Warrants disclosed whose people have not been told yet.
    pub awaiting_notice: u64,
}

/// Seconds since the epoch of an entry's RFC 3339 time.
fn entry_secs(time: &str) -> Option<i64> {
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// What is still open: warrants awaiting a decision, and disclosed warrants
/// whose people were not told yet.
pub fn outstanding(entries: &[AuditEntry]) -> Outstanding {
    let mut held = std::collections::BTreeSet::new();
    let mut decided = std::collections::BTreeSet::new();
    let mut disclosed = std::collections::BTreeSet::new();
    let mut notified = std::collections::BTreeSet::new();
    for e in entries {
        let id = (e.authority.as_str(), e.warrant_id.as_str());
        match (e.kind.as_str(), e.decision.as_str()) {
            ("warrant", "pending") => {
                held.insert(id);
            }
            ("warrant", "granted") | ("review", "granted") => {
                decided.insert(id);
                disclosed.insert(id);
            }
            ("review", "rejected") => {
                decided.insert(id);
            }
            ("notice", _) => {
                notified.insert(id);
            }
            _ => {}
        }
    }
    Outstanding {
        pending_review: held.difference(&decided).count() as u64,
        awaiting_notice: disclosed.difference(&notified).count() as u64,
    }
}

fn median(mut values: Vec<i64>) -> Option<i64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some(values[n / 2 - 1] + (values[n / 2] - values[n / 2 - 1]) / 2),
    }
}

/// The transparency report: per half-year (`2026-H2`), computed from the log.
pub fn transparency(entries: &[AuditEntry]) -> Vec<Period> {
    let mut periods: BTreeMap<String, Period> = BTreeMap::new();
    let mut targeted: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    // When each held warrant was submitted, and how long each decision took.
    let mut submitted: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut waits: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut delivered = std::collections::BTreeSet::new();
    for e in entries {
        let id = (e.authority.as_str(), e.warrant_id.as_str());
        let period = half_year(&e.time);
        let p = periods.entry(period.clone()).or_insert_with(|| Period {
            period: period.clone(),
            ..Period::default()
        });
        let granted = e.decision == "granted";
        let mut disclosed = |p: &mut Period| {
            p.warrants_granted += 1;
            p.records_disclosed += e.records;
            p.pseudonyms_issued += e.pseudonyms;
            targeted
                .entry(period.clone())
                .or_default()
                .extend(e.targets.iter().cloned());
        };
        match (e.kind.as_str(), e.decision.as_str()) {
            ("warrant", "pending") => {
                p.warrants_received += 1;
                p.warrants_held_for_review += 1;
                if let Some(at) = entry_secs(&e.time) {
                    submitted.entry(id).or_insert(at);
                }
            }
            ("warrant", _) => {
                p.warrants_received += 1;
                if granted {
                    disclosed(p);
                } else {
                    p.warrants_refused += 1;
                    *p.refused_by_reason.entry(e.reason.clone()).or_default() += 1;
                }
            }
            // Held warrants are decided in review; collecting one counts nothing.
            ("review", "granted") | ("review", "rejected") => {
                if e.decision == "granted" {
                    p.warrants_approved_in_review += 1;
                    disclosed(p);
                } else {
                    p.warrants_rejected_in_review += 1;
                }
                if let (Some(from), Some(at)) = (submitted.get(&id), entry_secs(&e.time)) {
                    waits.entry(period.clone()).or_default().push(at - from);
                }
            }
            ("extension", "granted") => p.notice_extensions_granted += 1,
            ("notice", _) => {
                p.people_notified += e.count;
                p.warrants_notified += 1;
            }
            ("unmask", _) => {
                p.unmask_requests_received += 1;
                if granted {
                    p.unmask_requests_granted += 1;
                    p.pseudonyms_unmasked += e.unmask_revealed;
                }
            }
            ("unverifiable", _) => p.unverifiable_requests += e.count.max(1),
            _ => {}
        }
        if granted
            && e.delivery > 0
            && matches!(e.kind.as_str(), "warrant" | "review" | "collect")
            && delivered.insert((id, e.delivery))
        {
            p.deliveries += 1;
        }
        p.secret_items_disclosed += e.secret_items;
    }
    for (period, waited) in waits {
        if let Some(p) = periods.get_mut(&period) {
            p.median_secs_to_decision = median(waited);
        }
    }
    for (period, accounts) in targeted {
        if let Some(p) = periods.get_mut(&period) {
            p.accounts_targeted = accounts.len() as u64;
        }
    }
    periods.into_values().collect()
}

fn half_year(time: &str) -> String {
    let year = time.get(..4).unwrap_or("????");
    let month: u32 = time.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    format!("{year}-H{}", if month <= 6 { 1 } else { 2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn log_of(path: &Path, ids: &[&str]) -> AuditLog {
        let log = AuditLog::open(path, key(1)).unwrap();
        for id in ids {
            let mut e = AuditEntry::new("warrant", "granted");
            e.warrant_id = (*id).into();
            e.records = 3;
            log.append(e).unwrap();
        }
        log
    }

    fn rewrite(path: &Path, edit: impl Fn(usize, &str) -> Option<String>) {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| edit(i, l))
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    /// What a curious operator with the audit key does after editing: signs
    /// fresh heads over the edited log, so the relay's own heads agree with it.
    fn resign(path: &Path) {
        std::fs::remove_file(heads_path(path)).unwrap();
        let tree = read_tree(path).unwrap();
        let mut partial = Tree::new();
        for i in 0..tree.len() {
            partial.push_leaf_hash(tree.leaf(i).unwrap());
            append_line(
                &heads_path(path),
                sign_head(&partial, &key(1), &Clock::system())
                    .unwrap()
                    .to_json()
                    .as_bytes(),
            )
            .unwrap();
        }
    }

    #[test]
    fn every_append_is_covered_by_a_signed_head_and_a_receipt_proof() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = log_of(&path, &["W-1", "W-2"]);
        let logged = log.append(AuditEntry::new("unmask", "refused")).unwrap();
        assert_eq!((logged.index, logged.entry.seq), (2, 3));
        assert_eq!(logged.head.size(), 3);
        sotto_warrant::transparency::merkle::verify_inclusion(
            2,
            3,
            &sotto_warrant::transparency::merkle::leaf_hash(&logged.line),
            &logged.inclusion,
            logged.head.root(),
        )
        .unwrap();
        // The line on disk is exactly the leaf.
        let text = std::fs::read(&path).unwrap();
        assert!(text.ends_with(&[logged.line.as_slice(), b"\n"].concat()));
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Intact {
                entries: 3,
                heads: 4,
                ..
            }
        ));
        // Reopened: the same head, not a new one.
        drop(log);
        let again = AuditLog::open(&path, key(1)).unwrap();
        assert_eq!(again.head(), logged.head);
    }

    #[test]
    fn an_edit_without_the_audit_key_is_named_by_the_relays_own_heads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        drop(log_of(&path, &["W-1", "W-2", "W-3"]));
        rewrite(&path, |i, l| {
            Some(if i == 1 {
                l.replace("\"records\":3", "\"records\":0")
            } else {
                l.to_owned()
            })
        });
        assert_eq!(
            verify(&path).unwrap(),
            Verified::Broken {
                line: 2,
                why: "edited: it does not match the relay's signed head of size 2".into()
            }
        );
        // The relay still starts and logs, and the log stays broken.
        let reopened = AuditLog::open(&path, key(1)).unwrap();
        assert_eq!(
            reopened
                .append(AuditEntry::new("unmask", "refused"))
                .unwrap()
                .entry
                .seq,
            4
        );
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Broken { line: 2, .. }
        ));
    }

    #[test]
    fn curious_operator_who_edits_and_resigns_is_caught_by_a_published_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = log_of(&path, &["W-1", "W-2", "W-3"]);
        let published = log.head();
        log.append(AuditEntry::new("warrant", "refused")).unwrap();
        drop(log);
        assert!(matches!(
            verify_against(&path, &published).unwrap(),
            Verified::Intact { entries: 4, .. }
        ));
        rewrite(&path, |i, l| {
            Some(if i == 1 {
                l.replace("\"records\":3", "\"records\":0")
            } else {
                l.to_owned()
            })
        });
        resign(&path);
        // Its own heads now agree with it: only the published head catches it.
        assert!(matches!(verify(&path).unwrap(), Verified::Intact { .. }));
        assert!(matches!(
            verify_against(&path, &published).unwrap(),
            Verified::Broken { line: 1, ref why } if why.contains("entries 1 to 3")
        ));
    }

    #[test]
    fn curious_operator_who_truncates_the_newest_entries_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let published = log_of(&path, &["W-1", "W-2", "W-3"]).head();
        rewrite(&path, |i, l| (i < 2).then(|| l.to_owned()));
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Broken { line: 3, ref why } if why.starts_with("removed")
        ));
        resign(&path);
        assert!(matches!(
            verify_against(&path, &published).unwrap(),
            Verified::Broken { line: 3, ref why } if why.contains("truncated")
        ));
    }

    #[test]
    fn curious_operator_who_reorders_entries_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let published = log_of(&path, &["W-1", "W-2", "W-3"]).head();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1])).unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Broken { line: 2, ref why } if why.contains("out of sequence")
        ));
        // Renumbered and re-signed: still not the published log.
        let swapped = [
            lines[0].to_owned(),
            lines[2].replace("\"seq\":3", "\"seq\":2"),
            lines[1].replace("\"seq\":2", "\"seq\":3"),
        ];
        std::fs::write(&path, swapped.join("\n") + "\n").unwrap();
        resign(&path);
        assert!(matches!(verify(&path).unwrap(), Verified::Intact { .. }));
        assert!(matches!(
            verify_against(&path, &published).unwrap(),
            Verified::Broken { .. }
        ));
    }

    #[test]
    fn a_head_of_another_key_is_not_this_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = log_of(&path, &["W-1"]);
        let h = log.head();
        let forged = TreeHead {
            size: h.size(),
            root: *h.root(),
            time_ms: 0,
        }
        .sign(&key(2));
        assert!(matches!(
            verify_against(&path, &forged).unwrap(),
            Verified::Broken { ref why, .. } if why.contains("another relay's head")
        ));
    }

    #[test]
    fn a_torn_last_line_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        drop(log_of(&path, &["W-1"]));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"seq\":2,\"ti").unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Intact { entries: 1, .. }
        ));
        assert_eq!(entries(&path).unwrap().len(), 1);
    }

    /// A log as the relay wrote it before: each line chained to the one before.
    fn write_chain(path: &Path, n: u64) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        let mut lines = Vec::new();
        for seq in 1..=n {
            let mut e = AuditEntry::new("warrant", "granted");
            e.seq = seq;
            e.time = "2025-03-01T00:00:00Z".into();
            e.warrant_id = format!("OLD-{seq}");
            e.prev = prev;
            e.hash = e.chain_hash();
            prev = e.hash.clone();
            lines.push(serde_json::to_string(&e).unwrap());
        }
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
        lines
    }

    #[test]
    fn a_hash_chained_log_is_migrated_in_order_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let old = write_chain(&path, 3);
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Intact {
                entries: 3,
                heads: 0,
                ..
            }
        ));
        let log = AuditLog::open(&path, key(1)).unwrap();
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("audit.log.chain-"))
            .collect();
        assert_eq!(kept.len(), 1, "the old log is kept");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&kept[0])).unwrap(),
            old.join("\n") + "\n"
        );
        assert_eq!(log.head().size(), 3);
        let next = log.append(AuditEntry::new("unmask", "refused")).unwrap();
        assert_eq!(next.entry.seq, 4);
        let all = entries(&path).unwrap();
        let ids: Vec<&str> = all.iter().map(|e| e.warrant_id.as_str()).collect();
        assert_eq!(ids, ["OLD-1", "OLD-2", "OLD-3", ""]);
        // The old lines are the first leaves, byte for byte.
        let mut tree = Tree::new();
        for line in &old {
            tree.push(line.as_bytes());
        }
        tree.push(&next.line);
        assert_eq!(tree.root(4).unwrap(), *next.head.root());
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Intact { entries: 4, .. }
        ));
    }

    #[test]
    fn a_broken_chain_is_not_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_chain(&path, 3);
        rewrite(&path, |i, l| {
            Some(if i == 1 {
                l.replace("granted", "refused")
            } else {
                l.to_owned()
            })
        });
        let e = AuditLog::open(&path, key(1)).err().unwrap();
        assert!(format!("{e:#}").contains("broken at line 2"), "{e:#}");
        assert!(!heads_path(&path).exists());
    }

    #[test]
    fn removing_the_heads_does_not_get_an_edited_log_signed() {
        // The heads file gone, the relay takes the log for an old chain: its
        // entries since have no chain, so it refuses to sign over them.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        drop(log_of(&path, &["W-1", "W-2"]));
        std::fs::remove_file(heads_path(&path)).unwrap();
        assert!(AuditLog::open(&path, key(1)).is_err());
    }

    #[test]
    fn periods_are_half_years() {
        assert_eq!(half_year("2026-03-01T00:00:00Z"), "2026-H1");
        assert_eq!(half_year("2026-11-30T00:00:00Z"), "2026-H2");
    }
}

#[cfg(test)]
mod torn_lines {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn warrant(id: &str) -> AuditEntry {
        let mut e = AuditEntry::new("warrant", "granted");
        e.warrant_id = id.into();
        e.records = 3;
        e
    }

    fn tear(path: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    /// Found in review: the next entry was appended to the torn line, so
    /// the log on disk no longer matched the receipt just given.
    #[test]
    fn power_loss_mid_line_then_the_next_entry_keeps_the_log_and_its_receipt_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, key(1)).unwrap();
        log.append(warrant("W-1")).unwrap();
        drop(log);
        tear(&path, b"{\"seq\":2,\"ti");
        let log = AuditLog::open(&path, key(1)).unwrap();
        let logged = log.append(warrant("W-2")).unwrap();
        drop(log);
        let v = verify(&path).unwrap();
        assert!(matches!(v, Verified::Intact { entries: 2, .. }), "{v:?}");
        assert_eq!(
            read_tree(&path).unwrap().root(2).unwrap(),
            *logged.head.root()
        );
    }

    #[test]
    fn power_loss_mid_head_then_the_next_head_keeps_verify_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, key(1)).unwrap();
        log.append(warrant("W-1")).unwrap();
        drop(log);
        tear(&heads_path(&path), b"{\"size\":2,\"ro");
        let log = AuditLog::open(&path, key(1)).unwrap();
        log.append(warrant("W-2")).unwrap();
        drop(log);
        let v = verify(&path).unwrap();
        assert!(matches!(v, Verified::Intact { entries: 2, .. }), "{v:?}");
    }
}
