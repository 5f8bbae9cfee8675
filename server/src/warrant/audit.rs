//! The audit log: every warrant and unmask request, granted or refused, one JSON
//! object a line in `audit.log`, each line chained to the one before by hash.
//!
//! Invariants: an entry is written and synced to disk before the requester gets
//! an answer; entries hold ids, case references, authorities, targets (named by
//! the warrant, by design), windows, the relay named, decisions, reasons,
//! unmask reasons, counts and the bundle's hash, never message text and never
//! the identity of anyone who is not a target. Requests no registered
//! authority signed (and replays) are `unverifiable` entries: one a request up
//! to a small budget, then one entry a minute that counts the rest. Each line carries `prev` (the hash of
//! the line before) and `hash` (SHA-256 of `prev` and the line without its
//! hash), so editing, removing or reordering any line breaks the chain at it.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// "warrant", "unmask", or "unverifiable" (no registered authority's
    /// signature verified, or a replay; see `count`).
    pub kind: String,
    pub warrant_id: String,
    pub case: String,
    /// The registered authority that signed it, when one did.
    pub authority: String,
    /// "granted" or "refused".
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
    /// For `unverifiable` entries: how many requests the entry stands for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: u64,
    pub prev: String,
    pub hash: String,
}

impl AuditEntry {
    /// What a caller fills in; sequence, time and hashes are the log's.
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
            count: 0,
            prev: String::new(),
            hash: String::new(),
        }
    }

    fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = String::new();
        let body = serde_json::to_string(&unhashed).expect("an audit entry always encodes");
        hex::encode(
            Sha256::new()
                .chain_update(self.prev.as_bytes())
                .chain_update(body)
                .finalize(),
        )
    }
}

pub struct AuditLog {
    path: PathBuf,
    /// Sequence number and hash of the last line.
    tail: Mutex<(u64, String)>,
}

impl AuditLog {
    /// Opens the log at `path` (it need not exist yet) after checking its chain.
    /// A broken chain does not stop the relay (its users are not at fault): it
    /// is reported, new entries chain on from the last line, and `audit verify`
    /// keeps naming the broken line.
    pub fn open(path: &Path) -> Result<Self> {
        let tail = match verify(path)? {
            Verified::Intact { entries, head } => (entries, head),
            Verified::Broken { line, why } => {
                tracing::error!(line, why = %why, "the audit log is broken; `sotto-relay audit verify` shows where");
                let last = entries(path).ok().and_then(|all| all.last().cloned());
                last.map_or((0, GENESIS.to_owned()), |e| (e.seq, e.hash))
            }
        };
        Ok(AuditLog {
            path: path.to_owned(),
            tail: Mutex::new(tail),
        })
    }

    /// Appends `entry` (chained to the last line) and syncs it to disk.
    pub fn append(&self, mut entry: AuditEntry) -> Result<AuditEntry> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        entry.seq = tail.0 + 1;
        entry.time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        entry.prev = tail.1.clone();
        entry.hash = entry.compute_hash();
        let mut line = serde_json::to_string(&entry).context("cannot encode an audit entry")?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        *tail = (entry.seq, entry.hash.clone());
        Ok(entry)
    }
}

/// The result of checking a log's chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    Intact { entries: u64, head: String },
    Broken { line: u64, why: String },
}

/// Reads every entry of the log (for reports). Fails on a line that is not an entry.
pub fn entries(path: &Path) -> Result<Vec<AuditEntry>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&line)
                .with_context(|| format!("line {} is not an audit entry", i + 1))
        })
        .collect()
}

/// Checks the whole chain; names the first broken line.
pub fn verify(path: &Path) -> Result<Verified> {
    if !path.exists() {
        return Ok(Verified::Intact {
            entries: 0,
            head: GENESIS.to_owned(),
        });
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut prev = GENESIS.to_owned();
    let mut count = 0u64;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let broken = |why: &str| Verified::Broken {
            line: n,
            why: why.to_owned(),
        };
        let Ok(entry) = serde_json::from_str::<AuditEntry>(&line) else {
            return Ok(broken("not an audit entry"));
        };
        if entry.seq != n {
            return Ok(broken("out of sequence (a line was removed or inserted)"));
        }
        if entry.prev != prev {
            return Ok(broken("does not chain to the line before"));
        }
        if entry.compute_hash() != entry.hash {
            return Ok(broken("its content does not match its hash (edited)"));
        }
        prev = entry.hash;
        count = n;
    }
    Ok(Verified::Intact {
        entries: count,
        head: prev,
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
    pub accounts_targeted: u64,
    pub records_disclosed: u64,
    pub pseudonyms_issued: u64,
    pub unmask_requests_received: u64,
    pub unmask_requests_granted: u64,
    pub pseudonyms_unmasked: u64,
    /// Requests no registered authority's signature verified, and replays:
    /// counted apart, never as warrants received.
    pub unverifiable_requests: u64,
    pub secret_items_disclosed: u64,
}

/// The transparency report: per half-year (`2026-H2`), computed from the log.
pub fn transparency(entries: &[AuditEntry]) -> Vec<Period> {
    let mut periods: BTreeMap<String, Period> = BTreeMap::new();
    let mut targeted: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for e in entries {
        let period = half_year(&e.time);
        let p = periods.entry(period.clone()).or_insert_with(|| Period {
            period: period.clone(),
            ..Period::default()
        });
        let granted = e.decision == "granted";
        match e.kind.as_str() {
            "warrant" => {
                p.warrants_received += 1;
                if granted {
                    p.warrants_granted += 1;
                    p.records_disclosed += e.records;
                    p.pseudonyms_issued += e.pseudonyms;
                    targeted
                        .entry(period)
                        .or_default()
                        .extend(e.targets.iter().cloned());
                } else {
                    p.warrants_refused += 1;
                    *p.refused_by_reason.entry(e.reason.clone()).or_default() += 1;
                }
            }
            "unmask" => {
                p.unmask_requests_received += 1;
                if granted {
                    p.unmask_requests_granted += 1;
                    p.pseudonyms_unmasked += e.unmask_revealed;
                }
            }
            "unverifiable" => p.unverifiable_requests += e.count.max(1),
            _ => {}
        }
        p.secret_items_disclosed += e.secret_items;
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

    #[test]
    fn a_chain_verifies_and_an_edit_breaks_it_at_that_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for id in ["W-1", "W-2", "W-3"] {
            let mut e = AuditEntry::new("warrant", "granted");
            e.warrant_id = id.into();
            e.records = 3;
            log.append(e).unwrap();
        }
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Intact { entries: 3, .. }
        ));
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"records\":3", "\"records\":0");
        let edited: Vec<&str> = text.lines().collect();
        let original = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = original.lines().collect();
        lines[1] = edited[1];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert_eq!(
            verify(&path).unwrap(),
            Verified::Broken {
                line: 2,
                why: "its content does not match its hash (edited)".into()
            }
        );
    }

    #[test]
    fn a_broken_log_still_takes_new_entries_and_stays_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for _ in 0..2 {
            log.append(AuditEntry::new("warrant", "refused")).unwrap();
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replacen("refused", "granted", 1);
        std::fs::write(&path, text).unwrap();
        let reopened = AuditLog::open(&path).unwrap();
        assert_eq!(
            reopened
                .append(AuditEntry::new("unmask", "refused"))
                .unwrap()
                .seq,
            3
        );
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Broken { line: 1, .. }
        ));
    }

    #[test]
    fn a_removed_line_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for _ in 0..3 {
            log.append(AuditEntry::new("unmask", "refused")).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Broken { line: 2, .. }
        ));
    }

    #[test]
    fn periods_are_half_years() {
        assert_eq!(half_year("2026-03-01T00:00:00Z"), "2026-H1");
        assert_eq!(half_year("2026-11-30T00:00:00Z"), "2026-H2");
    }
}
