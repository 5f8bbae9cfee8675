//! Building a disclosure from a read-only view of the normal archive.
//!
//! The view is the [`NormalRecords`] trait: the normal records one user took
//! part in within a window, nothing else. The relay implements it over its
//! normal archive; there is no trait here through which anything could reach
//! the secret queue, and this crate cannot name the relay's store at all.
//!
//! Every record is checked again here, whatever the view returned: only
//! records inside the warrant's window that a target took part in are
//! disclosed, and every participant who is not a target is a pseudonym.

use std::collections::{BTreeMap, BTreeSet};

use sotto_proto::v1;

use crate::check::CheckedWarrant;
use crate::pseudonym::{PseudonymKey, Pseudonymizer};
use crate::window::Window;

/// One normal-mode message as the archive hands it to a disclosure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRecord {
    /// The archive's id of the message (unique, orders records sent at the same time).
    pub id: u64,
    /// The conversation it belongs to (opaque bytes; disclosed only as a label).
    pub conversation: Vec<u8>,
    pub from: String,
    /// Everyone in the conversation when it was sent, sender included.
    pub participants: Vec<String>,
    /// Milliseconds since the epoch.
    pub sent_at: i64,
    pub text: String,
}

/// The read-only view of normal records a warrant is served from.
pub trait NormalRecords {
    type Error;

    /// Every normal record `user` took part in (as sender or participant)
    /// with `window.from_ms() <= sent_at < window.until_ms()`.
    fn records_of(&self, user: &str, window: &Window) -> Result<Vec<ArchivedRecord>, Self::Error>;
}

/// A disclosure and what the relay keeps and logs about it.
pub struct Outcome {
    pub disclosure: v1::Disclosure,
    /// Pseudonym → username, to be sealed and kept for unmask requests.
    pub pseudonyms: BTreeMap<String, String>,
    pub conversations: usize,
}

/// Every normal record in the warrant's window that a target took part in,
/// with everyone else pseudonymized.
pub fn disclose<R: NormalRecords>(
    archive: &R,
    checked: &CheckedWarrant,
    key: &PseudonymKey,
    now_ms: i64,
) -> Result<Outcome, R::Error> {
    disclose_within(archive, checked, &checked.window, key, now_ms)
}

/// As [`disclose`], for the records of `window` only (one delivery of a
/// monitoring warrant; made by [`Window::within`] of the warrant's window,
/// so it never reaches outside it). Pseudonyms are the warrant's, the same
/// in every delivery.
pub fn disclose_within<R: NormalRecords>(
    archive: &R,
    checked: &CheckedWarrant,
    window: &Window,
    key: &PseudonymKey,
    now_ms: i64,
) -> Result<Outcome, R::Error> {
    let w = &checked.warrant;
    let took_part = |r: &ArchivedRecord, target: &str| {
        r.from == target || r.participants.iter().any(|p| p == target)
    };
    let mut records = BTreeMap::new();
    for target in w.targets.iter().filter(|_| !window.is_empty()) {
        for record in archive.records_of(target, window)? {
            if window.contains(record.sent_at)
                && checked.window.contains(record.sent_at)
                && took_part(&record, target)
            {
                records.insert((record.sent_at, record.id), record);
            }
        }
    }
    let mut names = Pseudonymizer::new(key, &checked.authority, &w.id, &w.targets);
    let mut conversations = BTreeSet::new();
    let disclosed = records
        .into_values()
        .map(|r| {
            let conversation = names.conversation(&r.conversation);
            conversations.insert(r.conversation);
            // Sorted as shown, not as stored: the stored order is by
            // username, and would tell where each hidden name sorts.
            let mut participants: Vec<String> =
                r.participants.iter().map(|p| names.name(p)).collect();
            participants.sort();
            participants.dedup();
            v1::DisclosedRecord {
                conversation,
                from: names.name(&r.from),
                participants,
                sent_at: r.sent_at,
                text: r.text,
            }
        })
        .collect();
    let pseudonyms = names.issued();
    Ok(Outcome {
        disclosure: v1::Disclosure {
            warrant_id: w.id.clone(),
            case_reference: w.case_reference.clone(),
            generated_at: now_ms,
            targets: w.targets.clone(),
            records: disclosed,
            pseudonyms: pseudonyms.keys().cloned().collect(),
            part: 0,
            parts: 1,
            covers_from: window.from_ms(),
            covers_until: window.until_ms(),
            ..Default::default()
        },
        pseudonyms,
        conversations: conversations.len(),
    })
}

/// The most a disclosure part's records take, encoded: far under a frame.
pub const PART_BYTES: usize = 256 * 1024;

/// Splits a disclosure into parts of at most about `max_bytes` of records
/// each (a record larger than that is a part of its own); every part carries
/// the header and the pseudonyms its records use. Never fewer than one part.
pub fn split(disclosure: v1::Disclosure, max_bytes: usize) -> Vec<v1::Disclosure> {
    let header = |records: Vec<v1::DisclosedRecord>| {
        let used: BTreeSet<&str> = records
            .iter()
            .flat_map(|r| std::iter::once(&r.from).chain(&r.participants))
            .map(String::as_str)
            .collect();
        v1::Disclosure {
            pseudonyms: disclosure
                .pseudonyms
                .iter()
                .filter(|p| used.contains(p.as_str()))
                .cloned()
                .collect(),
            records,
            ..v1::Disclosure {
                warrant_id: disclosure.warrant_id.clone(),
                case_reference: disclosure.case_reference.clone(),
                generated_at: disclosure.generated_at,
                targets: disclosure.targets.clone(),
                delivery: disclosure.delivery,
                covers_from: disclosure.covers_from,
                covers_until: disclosure.covers_until,
                is_final: disclosure.is_final,
                ..Default::default()
            }
        }
    };
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for record in &disclosure.records {
        let len = prost::Message::encoded_len(record);
        if !current.is_empty() && size + len > max_bytes {
            parts.push(header(std::mem::take(&mut current)));
            size = 0;
        }
        size += len;
        current.push(record.clone());
    }
    parts.push(header(current));
    let count = parts.len() as u32;
    for (i, part) in parts.iter_mut().enumerate() {
        part.part = i as u32;
        part.parts = count;
    }
    parts
}

/// Why parts do not make one disclosure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    #[error("no part arrived")]
    Empty,
    #[error("part {0} is from another disclosure")]
    Mismatch(u32),
    #[error("part {0} arrived twice or is out of range")]
    BadPart(u32),
    #[error("{missing} of {parts} parts are missing")]
    Missing { missing: usize, parts: u32 },
}

/// Joins the parts of one disclosure, checking they belong together and
/// that each part `0..parts` is there exactly once.
pub fn join(mut parts: Vec<v1::Disclosure>) -> Result<v1::Disclosure, JoinError> {
    let first = parts.first().ok_or(JoinError::Empty)?.clone();
    let count = first.parts.max(1);
    let mut seen = BTreeSet::new();
    for p in &parts {
        let same = p.warrant_id == first.warrant_id
            && p.case_reference == first.case_reference
            && p.generated_at == first.generated_at
            && p.targets == first.targets
            && p.delivery == first.delivery
            && (p.covers_from, p.covers_until, p.is_final)
                == (first.covers_from, first.covers_until, first.is_final)
            && p.parts.max(1) == count;
        if !same {
            return Err(JoinError::Mismatch(p.part));
        }
        if p.part >= count || !seen.insert(p.part) {
            return Err(JoinError::BadPart(p.part));
        }
    }
    if seen.len() != count as usize {
        return Err(JoinError::Missing {
            missing: count as usize - seen.len(),
            parts: count,
        });
    }
    parts.sort_by_key(|p| p.part);
    let mut pseudonyms = BTreeSet::new();
    let mut records = Vec::new();
    for p in parts {
        pseudonyms.extend(p.pseudonyms);
        records.extend(p.records);
    }
    Ok(v1::Disclosure {
        records,
        pseudonyms: pseudonyms.into_iter().collect(),
        part: 0,
        parts: 1,
        ..first
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disclosure(records: usize, text: usize) -> v1::Disclosure {
        v1::Disclosure {
            warrant_id: "W-1".into(),
            case_reference: "case".into(),
            generated_at: 7,
            targets: vec!["alice".into()],
            records: (0..records)
                .map(|i| v1::DisclosedRecord {
                    conversation: "conv-1".into(),
                    from: "alice".into(),
                    participants: vec!["alice".into(), format!("anon-{i:024x}")],
                    sent_at: i as i64,
                    text: "x".repeat(text),
                })
                .collect(),
            pseudonyms: (0..records).map(|i| format!("anon-{i:024x}")).collect(),
            part: 0,
            parts: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_disclosure_too_large_for_a_frame_splits_and_joins_whole() {
        let whole = disclosure(40, 64 * 1024);
        assert!(prost::Message::encoded_len(&whole) > sotto_proto::DEFAULT_MAX_FRAME);
        let parts = split(whole.clone(), PART_BYTES);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(prost::Message::encoded_len(p) < sotto_proto::DEFAULT_MAX_FRAME / 2);
            assert_eq!(p.parts as usize, parts.len());
        }
        let mut shuffled = parts.clone();
        shuffled.reverse();
        assert_eq!(join(shuffled).unwrap(), whole);
        assert_eq!(split(disclosure(0, 0), PART_BYTES).len(), 1);
    }

    #[test]
    fn malicious_relay_missing_doubled_or_foreign_parts_do_not_join() {
        let parts = split(disclosure(40, 64 * 1024), PART_BYTES);
        let mut missing = parts.clone();
        missing.pop();
        assert!(matches!(join(missing), Err(JoinError::Missing { .. })));
        let mut doubled = parts.clone();
        let again = doubled[0].clone();
        doubled[1] = again;
        assert!(matches!(join(doubled), Err(JoinError::BadPart(0))));
        let mut foreign = parts;
        foreign[1].warrant_id = "W-2".into();
        assert!(matches!(join(foreign), Err(JoinError::Mismatch(1))));
        assert_eq!(join(Vec::new()), Err(JoinError::Empty));
    }
}
