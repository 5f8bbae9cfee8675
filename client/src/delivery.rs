//! ✓✓ on our normal messages. The relay says, for one conversation, up to
//! which of our messages the recipient's client fetched and acknowledged them
//! (in a group: every other member's client). It says so live, with a
//! `Delivered` push, and when asked after a login ([`refresh`]), for what
//! happened while we were away. The history keeps it (`delivered`).
//!
//! Unlike a secret chat's receipt, which the recipient's client encrypts end
//! to end, this is the relay's word: a lying relay can show ✓✓ on a normal
//! message (it reads normal chats anyway).

use std::collections::HashSet;

use anyhow::Result;
use sotto_proto::v1::Delivered;

use crate::profile::{HistoryEntry, Mode, Profile};
use crate::relay::RelayClient;

/// Most of our undelivered messages asked about after a login, newest first;
/// an older one is marked too once a newer one in its chat is delivered.
pub const MAX_ASKED: usize = 4 * sotto_proto::MAX_DELIVERY_QUERY;

/// `entry` is in the conversation `delivered` names.
fn in_conversation(entry: &HistoryEntry, delivered: &Delivered) -> bool {
    match &entry.group {
        Some(group) => !delivered.group.is_empty() && *group == delivered.group,
        None => delivered.group.is_empty() && entry.peer.as_deref() == Some(&delivered.peer),
    }
}

/// `entry` is a normal message of ours that the relay stored, not yet known delivered.
fn undelivered_ours(me: &str, entry: &HistoryEntry) -> bool {
    entry.mode == Mode::Normal && entry.from == me && entry.id != 0 && !entry.delivered
}

/// Marks our normal messages in `delivered`'s conversation, up to and
/// including its message, delivered (saved at the profile's next save).
/// Returns the client ids (hex) of those newly marked.
pub fn apply(profile: &mut Profile, delivered: &Delivered) -> Vec<String> {
    let me = profile.config.username.clone();
    let mut marked = Vec::new();
    profile.update_history(|entry| {
        let now = undelivered_ours(&me, entry)
            && entry.id <= delivered.upto
            && in_conversation(entry, delivered);
        if now {
            entry.delivered = true;
            marked.push(entry.client_id.clone());
        }
        now
    });
    marked
}

/// The relay's ids of our normal messages not yet known delivered, newest first.
fn undelivered(profile: &Profile) -> Vec<u64> {
    let me = &profile.config.username;
    let mut ids: Vec<u64> = profile
        .history()
        .iter()
        .filter(|e| undelivered_ours(me, e))
        .map(|e| e.id)
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

/// Asks the relay which of our normal messages were delivered while we were
/// away, and marks them (saved). Returns the client ids (hex) newly marked.
pub async fn refresh(profile: &mut Profile, client: &RelayClient) -> Result<Vec<String>> {
    let mut asking = undelivered(profile);
    asking.truncate(MAX_ASKED);
    let mut marked = Vec::new();
    for chunk in asking.chunks(sotto_proto::MAX_DELIVERY_QUERY) {
        // What an answer marked already needs no question.
        let open: HashSet<u64> = undelivered(profile).into_iter().collect();
        let ids: Vec<u64> = chunk
            .iter()
            .copied()
            .filter(|id| open.contains(id))
            .collect();
        if ids.is_empty() {
            continue;
        }
        for delivered in client.delivery_status(ids).await? {
            marked.extend(apply(profile, &delivered));
        }
    }
    if !marked.is_empty() {
        profile.save()?;
    }
    Ok(marked)
}
