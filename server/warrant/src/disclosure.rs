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
    let w = &checked.warrant;
    let took_part = |r: &ArchivedRecord, target: &str| {
        r.from == target || r.participants.iter().any(|p| p == target)
    };
    let mut records = BTreeMap::new();
    for target in &w.targets {
        for record in archive.records_of(target, &checked.window)? {
            if checked.window.contains(record.sent_at) && took_part(&record, target) {
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
            v1::DisclosedRecord {
                conversation,
                from: names.name(&r.from),
                participants: r.participants.iter().map(|p| names.name(p)).collect(),
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
        },
        pseudonyms,
        conversations: conversations.len(),
    })
}
