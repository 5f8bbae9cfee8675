//! `Fetch`: what arrived for this account and is not acknowledged yet: normal
//! messages from the inbox, secret envelopes from the secret queue, and the
//! relay's notices of warrants that disclosed this account's records (issued
//! here once due: people are told when they next look). A batch stays well
//! under the frame limit; `more` says when the rest waits.

use prost::Message;
use sotto_proto::v1::{Batch, Fetch, response};
use tracing::warn;

use super::{Handled, normal_message};
use crate::state::RelayState;

/// Room kept in a frame for everything but the items.
const FRAME_HEADROOM: usize = 16 * 1024;

pub async fn handle(state: &RelayState, user: &str, fetch: Fetch) -> Handled {
    let limit = fetch.limit.clamp(1, sotto_proto::MAX_FETCH) as usize;
    if state.warrants.notices_may_be_due()
        && let Err(e) = super::off_the_workers(state.warrants.notify_due()).await
    {
        // The notices wait for the next look; the messages need not.
        warn!(error = %format!("{e:#}"), "warrant notices are late");
    }
    let notices = state.notices.waiting(user)?;
    let (entries, mut more) = state.archive.inbox(user, limit)?;
    let (envelopes, more_secret) = state.secret_queue.pending(user, limit)?;
    more |= more_secret;
    // As many notices as one batch hands out: there may be more.
    more |= notices.len() >= crate::warrant::notices::MAX_HANDED_OUT;
    let mut budget = state.config.max_frame_bytes.saturating_sub(FRAME_HEADROOM);
    let normal = within(
        entries.iter().map(|e| normal_message(e.seq, &e.record)),
        &mut budget,
        &mut more,
    );
    let notices = within(notices, &mut budget, &mut more);
    let secret = within(envelopes, &mut budget, &mut more);
    // What was read may have been written and not yet flushed (its sender
    // not yet answered, a notice another fetch's sweep is flushing): hand
    // it out only once it is on disk, so a crash cannot take back something
    // delivered, or an id handed out.
    if !normal.is_empty() || !secret.is_empty() || !notices.is_empty() {
        state.writer.durable().await?;
    }
    let left = state.prekeys.left(user).await?;
    Ok(response::Kind::Batch(Batch {
        normal,
        secret,
        more,
        prekeys_low: left.low().then(|| left.prekeys_low()),
        notices,
    }))
}

/// The items, in order, that fit in what is left of the frame (`budget`);
/// sets `more` when one did not fit (it and those after it wait).
fn within<T: Message>(
    items: impl IntoIterator<Item = T>,
    budget: &mut usize,
    more: &mut bool,
) -> Vec<T> {
    let mut kept = Vec::new();
    for item in items {
        let size = item.encoded_len() + 8;
        if size > *budget {
            *more = true;
            break;
        }
        *budget -= size;
        kept.push(item);
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sotto_proto::v1::{self, Fetch, SendNormal, request, response, send_normal};

    use crate::fuzzing::Harness;
    use crate::store::faulty::Faulty;

    #[test]
    fn a_fetch_hands_out_only_what_is_on_stable_storage() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Mutex::new(None);
        let harness = Harness::wrapping(dir.path(), |store| {
            let faulty = Arc::new(Faulty::new(store));
            *slot.lock().unwrap() = Some(faulty.clone());
            faulty
        })
        .unwrap();
        let disk = slot.lock().unwrap().take().unwrap();
        let (ann, bob) = (harness.session(Some(0)), harness.session(Some(1)));
        let send = v1::Request {
            kind: Some(request::Kind::SendNormal(SendNormal {
                client_id: vec![1; 16].into(),
                to: Some(send_normal::To::User("bob".into())),
                text: "on disk first".into(),
            })),
        };
        let fetch = v1::Request {
            kind: Some(request::Kind::Fetch(Fetch { limit: 10 })),
        };
        // A slow disk: the writer has written ann's message and waits for its flush.
        disk.hold_flushes(true);
        let asked = disk.flushes_asked();
        std::thread::scope(|s| {
            let sent = s.spawn(|| harness.dispatch(&ann, send));
            disk.wait_for_flushes(asked + 1);
            let fetched = s.spawn(|| harness.dispatch(&bob, fetch));
            // bob's fetch reads the message, but may not hand it out (nor
            // may ann hear it is stored) until the disk has it.
            std::thread::sleep(Duration::from_millis(300));
            let early = (fetched.is_finished(), sent.is_finished());
            disk.hold_flushes(false);
            assert!(!early.0, "a fetch answered before the flush");
            assert!(!early.1, "a send was answered before the flush");
            let fetched = fetched.join().unwrap();
            match &fetched[0].kind {
                Some(response::Kind::Batch(b)) => assert_eq!(b.normal[0].text, "on disk first"),
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                sent.join().unwrap()[0].kind,
                Some(response::Kind::Stored(_))
            ));
        });
    }
}
