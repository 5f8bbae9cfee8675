//! Delayed notice: once a disclosed warrant's `notify_after` has passed,
//! each of its targets, and each person whose pseudonym was revealed under
//! it, gets a notice from the relay (see [`super::notices`]); the authority
//! may postpone it by a signed extension, at most twice.
//!
//! Invariant: the `notice` entry is in the transparency log before any
//! notice is written (a crash between the two logs it again, never leaves a
//! notice unlogged); notices say what was disclosed of that person only.

use std::sync::atomic::Ordering;

use ed25519_dalek::Signature;
use prost::Message;
use sotto_proto::v1;
use sotto_warrant::Refusal;
use tracing::{info, warn};

use super::audit::AuditEntry;
use super::held::{HeldWarrant, Stage};
use super::{Answer, DeskError, Served, WarrantDesk, clip, describe, now_secs};
use crate::RelayError;
use crate::store::Batch;

/// How many held warrants the notice sweep reads at once.
const PAGE: usize = 1_000;
/// How long after a failure to issue notices (seconds) they are tried again.
pub(crate) const RETRY_SECS: i64 = 60;

impl WarrantDesk {
    /// When `held`'s notices are due (seconds).
    ///
    /// Never before the warrant expires: until then a delivery or an unmask
    /// could still add to what was disclosed, and a notice must tell all of
    /// it (a notice sent at the window's end, with the final delivery
    /// collected after it, would understate it).
    fn notice_due(&self, held: &HeldWarrant) -> i64 {
        let Some(w) = held
            .signed_warrant()
            .ok()
            .and_then(|s| v1::Warrant::decode(s.warrant.as_ref()).ok())
        else {
            // Unreadable: tried when it says (and failing, said in the
            // relay's log, retried later), never silently skipped.
            return match held.notify_after {
                0 => i64::MAX,
                at => at,
            };
        };
        let asked = match held.notify_after {
            // Held before notices: the relay's default delay after the window.
            0 => self
                .limits
                .notice()
                .due(w.window_until, 0)
                .unwrap_or(i64::MAX),
            at => at,
        };
        asked.max(w.expires)
    }

    /// Whether `held` has people still to tell.
    fn owes_notice(held: &HeldWarrant) -> bool {
        held.stage() == Stage::Disclosed && (held.notified_at == 0 || !held.unmasked.is_empty())
    }

    /// Makes sure the next look for notices is no later than `held`'s.
    pub(super) fn schedule_notice(&self, held: &HeldWarrant) {
        if Self::owes_notice(held) {
            self.next_notice
                .fetch_min(self.notice_due(held), Ordering::SeqCst);
        }
    }

    /// Keeps the names an unmask request revealed under a warrant, so that
    /// those people are told with its targets (or at once, if the targets
    /// were told already). Not yet durable.
    pub(super) async fn remember_unmasked(
        &self,
        authority: &str,
        answer: &v1::Unmasked,
    ) -> Result<(), Served> {
        let _one_at_a_time = self.reviewing.lock().await;
        let Some(mut held) = self.held.get(authority, &answer.warrant_id)? else {
            // Granted before the relay kept warrants: nobody is told of it.
            return Ok(());
        };
        for u in &answer.unmasked {
            held.unmasked
                .insert(u.pseudonym.clone(), u.username.clone());
        }
        self.held.update(&held, &[])?;
        self.schedule_notice(&held);
        Ok(())
    }

    /// Whether some warrant's notices may be due now (one comparison).
    pub fn notices_may_be_due(&self) -> bool {
        now_secs(self.clock.now_ms()) >= self.next_notice.load(Ordering::SeqCst)
    }

    /// Tells the people of every warrant whose notices are due, if any may
    /// be (cheap otherwise: one comparison). How many people were told.
    ///
    /// Every held warrant is looked at, a page at a time (never only the
    /// first of a list with a limit: an authority could hide one behind
    /// thousands it let be rejected). One that cannot be read or told is
    /// tried again [`RETRY_SECS`] later, and holds up nobody else's.
    pub async fn notify_due(&self) -> anyhow::Result<u64> {
        let now_ms = self.clock.now_ms();
        if !self.notices_may_be_due() {
            return Ok(0);
        }
        let Ok(audit) = &self.audit else {
            return Ok(0);
        };
        let _one_at_a_time = self.reviewing.lock().await;
        // Lowered again by every warrant still owing notice, here or by
        // one disclosed meanwhile: no schedule is lost.
        self.next_notice.store(i64::MAX, Ordering::SeqCst);
        let retry = now_secs(now_ms).saturating_add(RETRY_SECS);
        let mut told = 0;
        let mut failed = None;
        let mut after = None;
        loop {
            let (page, next) = match self.held.page(after.as_deref(), PAGE) {
                Ok(page) => page,
                Err(e) => {
                    // Those not looked at yet are looked for again.
                    self.next_notice.fetch_min(retry, Ordering::SeqCst);
                    failed = Some(e.into());
                    break;
                }
            };
            for held in page {
                let outcome = held.map_err(anyhow::Error::from).and_then(|mut held| {
                    if !Self::owes_notice(&held) {
                        return Ok(0);
                    }
                    if self.notice_due(&held) > now_secs(now_ms) {
                        self.schedule_notice(&held);
                        return Ok(0);
                    }
                    self.tell(audit, &mut held, now_ms)
                });
                match outcome {
                    Ok(n) => told += n,
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "cannot issue a warrant's notices; trying again later");
                        self.next_notice.fetch_min(retry, Ordering::SeqCst);
                        failed.get_or_insert(e);
                    }
                }
            }
            match next {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        if told > 0 {
            self.writer.durable().await?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(told),
        }
    }

    /// Logs and writes the notices `held` owes now: to its targets, the
    /// first time, and to everyone revealed under it not told yet.
    fn tell(
        &self,
        audit: &super::audit::AuditLog,
        held: &mut HeldWarrant,
        now_ms: i64,
    ) -> anyhow::Result<u64> {
        let signed = held.signed_warrant()?;
        let w = v1::Warrant::decode(signed.warrant.as_ref())
            .map_err(|_| RelayError::Corrupt("a held warrant"))?;
        let appeared = |name: &str| held.appeared.get(name).copied().unwrap_or(0);
        let mut people: Vec<(String, u64, bool)> = Vec::new();
        if held.notified_at == 0 {
            people.extend(w.targets.iter().map(|t| (t.clone(), appeared(t), true)));
        }
        people.extend(
            held.unmasked
                .iter()
                .filter(|(_, name)| !w.targets.contains(name))
                .map(|(pseudonym, name)| (name.clone(), appeared(pseudonym), false)),
        );
        let id = match held.notice_pending {
            0 => {
                let mut entry = AuditEntry::new("notice", "granted");
                describe(&mut entry, &held.authority, &w);
                entry.notify_after = self.notice_due(held);
                // Only how many: the names of people revealed stay out of the log.
                entry.count = people.len() as u64;
                entry.records = people.iter().map(|(_, n, _)| n).sum();
                let logged = audit.append(entry)?;
                if self.notices.written_at_once() {
                    // Each notice is written on its own (a cluster): their
                    // id is kept first, so that a notice written before a
                    // failure is written again under it, not told twice
                    // under two, and the log says it once.
                    held.notice_pending = logged.index + 1;
                    let mut batch = Batch::default();
                    self.held.put(&mut batch, held);
                    self.held.apply_durably(batch)?;
                }
                logged.index
            }
            pending => pending - 1,
        };
        let mut batch = Batch::default();
        for (name, records, target) in &people {
            let notice = v1::WarrantNotice {
                id,
                authority: held.authority.clone(),
                warrant_id: w.id.clone(),
                case_reference: w.case_reference.clone(),
                legal_basis: w.legal_basis.clone(),
                window_from: w.window_from,
                window_until: w.window_until,
                records: *records,
                target: *target,
                issued_at: now_ms,
            };
            self.notices.put(&mut batch, name, &notice)?;
        }
        if held.notified_at == 0 {
            held.notified_at = now_ms;
        }
        held.notified = held.notified.saturating_add(people.len() as u64);
        held.notice_pending = 0;
        // Their names are kept no longer than needed to tell them.
        held.unmasked.clear();
        self.held.put(&mut batch, held);
        self.held.apply(batch)?;
        info!(warrant = ?held.warrant_id, people = people.len(), entry = id, "notices issued");
        Ok(people.len() as u64)
    }

    /// Serves a notice extension: the new time, or why not.
    pub async fn extend_notice(
        &self,
        signed: Option<v1::SignedNoticeExtension>,
    ) -> Answer<v1::NoticeExtended> {
        if self.audit.is_err() {
            return Answer::unlogged(DeskError::Failed(self.log_refused()));
        }
        let mut entry = AuditEntry::new("extension", "refused");
        entry.request_sha256 = super::request_hash(signed.as_ref());
        let outcome = self.serve_extension(signed, &mut entry).await;
        self.audited(entry, outcome, |_, _| {})
    }

    async fn serve_extension(
        &self,
        signed: Option<v1::SignedNoticeExtension>,
        entry: &mut AuditEntry,
    ) -> Result<v1::NoticeExtended, Served> {
        let signed = signed.ok_or(Served::Unverifiable(Refusal::Malformed(
            "no notice extension",
        )))?;
        let registry = self.registry()?;
        let verified =
            sotto_warrant::verify_extension(&signed, &registry).map_err(Served::Unverifiable)?;
        let r = &verified.message;
        let authority = verified.authority.name.clone();
        let request_id = r.request_id.clone();
        entry.authority = authority.clone();
        entry.warrant_id = clip(&r.warrant_id);
        entry.extension_reason = clip(&r.reason);
        entry.notify_after = r.notify_after;
        // Replays first, then the budget, as for unmask requests.
        if self.grants.request_served(&authority, &request_id)? {
            return Err(Served::Unverifiable(Refusal::Replayed));
        }
        if !self.budgets.authority(&authority) {
            return Err(Refusal::RateLimited.into());
        }
        let now = self.clock.now_ms();
        let _one_at_a_time = self.reviewing.lock().await;
        let outcome = self.postpone(verified, now, entry);
        if matches!(outcome, Ok(_) | Err(Served::Refused(_))) {
            if !self.grants.serve_request(&authority, &request_id, now)? {
                return Err(Served::Unverifiable(Refusal::Replayed));
            }
            self.writer.durable().await?;
        }
        outcome
    }

    /// Checks an extension against the warrant it names and postpones its
    /// notices. Not yet durable.
    fn postpone(
        &self,
        verified: sotto_warrant::Verified<v1::NoticeExtension>,
        now_ms: i64,
        entry: &mut AuditEntry,
    ) -> Result<v1::NoticeExtended, Served> {
        let checked = sotto_warrant::check_extension(verified, now_secs(now_ms))?;
        let mut held = self
            .held
            .get(&checked.authority, &checked.request.warrant_id)?
            .ok_or(Refusal::UnknownWarrant)?;
        // Only the key that signed the warrant postpones its notices, even
        // if the authority's name is registered again with another key.
        let kept = held.signed_warrant()?;
        let signed_by_it = Signature::from_slice(&kept.signature).is_ok_and(|signature| {
            checked
                .authority_key
                .verify_strict(&sotto_proto::transcript::warrant(&kept.warrant), &signature)
                .is_ok()
        });
        if !signed_by_it {
            return Err(Refusal::UnknownWarrant.into());
        }
        let w = v1::Warrant::decode(kept.warrant.as_ref())
            .map_err(|_| RelayError::Corrupt("a held warrant"))?;
        describe(entry, &held.authority, &w);
        entry.notify_after = checked.request.notify_after;
        let due = self.notice_due(&held);
        match held.stage() {
            Stage::Rejected => return Err(Refusal::Rejected(clip(&held.reason)).into()),
            // Once due, the people have a right to be told: too late.
            _ if held.notified_at != 0 || due <= now_secs(now_ms) => {
                return Err(Refusal::AlreadyNotified.into());
            }
            _ => {}
        }
        let postponed =
            self.limits
                .notice()
                .extend(due, held.extensions, checked.request.notify_after)?;
        held.notify_after = postponed;
        held.extensions += 1;
        self.held.update(&held, &[])?;
        Ok(v1::NoticeExtended {
            warrant_id: held.warrant_id.clone(),
            notify_after: postponed,
            extensions: held.extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use sotto_proto::v1::{self, Fetch, request, response};

    use super::*;
    use crate::fuzzing::Harness;
    use crate::warrant::held::MAX_LISTED;

    /// A held warrant of "chief" for `target`, at `stage`, its notices due at `due` (seconds).
    fn held(id: &str, stage: Stage, target: &str, due: i64) -> HeldWarrant {
        let w = v1::Warrant {
            id: id.into(),
            authority: "chief".into(),
            case_reference: "CASE".into(),
            targets: vec![target.into()],
            window_from: due - 2 * 86_400,
            window_until: due - 86_400,
            notify_after: due,
            ..v1::Warrant::default()
        };
        let signed = v1::SignedWarrant {
            warrant: w.encode_to_vec().into(),
            signature: vec![0; 64].into(),
        };
        HeldWarrant {
            signed: signed.encode_to_vec(),
            authority: "chief".into(),
            warrant_id: id.into(),
            held_at: 1,
            stage: stage as i32,
            notify_after: due,
            ..HeldWarrant::default()
        }
    }

    fn fetched_notices(harness: &Harness, user: usize) -> Vec<v1::WarrantNotice> {
        let fetch = v1::Request {
            kind: Some(request::Kind::Fetch(Fetch { limit: 10 })),
        };
        match harness.dispatch(&harness.session(Some(user)), fetch)[0]
            .kind
            .clone()
        {
            Some(response::Kind::Batch(b)) => b.notices,
            other => panic!("{other:?}"),
        }
    }

    /// A hostile authority floods the relay with warrants it lets be
    /// rejected (each held for ever): the sweep must still find the one
    /// that owes a notice, wherever its key falls among the rest.
    #[test]
    fn hostile_investigator_cannot_hide_a_due_warrant_behind_ten_thousand_held_ones() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::new(dir.path()).unwrap();
        let desk = &harness.state().warrants;
        let due = now_secs(desk.clock.now_ms()) - 60;
        let junk = MAX_LISTED + MAX_LISTED / 5;
        for n in 0..junk {
            let junk = held(&format!("W-junk-{n}"), Stage::Rejected, "bob", due);
            assert!(desk.held.hold(&junk).unwrap());
        }
        // The real one, wherever its key falls past the first MAX_LISTED
        // held warrants (in key order): a candidate listed among them is
        // left rejected, and another tried.
        let real = (0..)
            .find_map(|n| {
                let id = format!("W-real-{n}");
                assert!(
                    desk.held
                        .hold(&held(&id, Stage::Rejected, "ann", due))
                        .unwrap()
                );
                let listed = desk.held.all().unwrap();
                assert_eq!(listed.len(), MAX_LISTED);
                (!listed.iter().any(|h| h.warrant_id == id)).then_some(id)
            })
            .unwrap();
        desk.held
            .update(&held(&real, Stage::Disclosed, "ann", due), &[])
            .unwrap();
        let told = fetched_notices(&harness, 0);
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0].warrant_id, real);
    }

    /// One held warrant the relay cannot tell of (unreadable, say) holds up
    /// nobody else's notices, and is not looked at again at every fetch.
    #[test]
    fn one_bad_held_warrant_does_not_keep_everyone_elses_notices_back() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::new(dir.path()).unwrap();
        let desk = &harness.state().warrants;
        let now = now_secs(desk.clock.now_ms());
        let due = now - 60;
        // Looked at first (held earliest), and its warrant is unreadable.
        let mut bad = held("W-bad", Stage::Disclosed, "bob", due);
        bad.signed = vec![0xff; 8];
        bad.held_at = 0;
        assert!(desk.held.hold(&bad).unwrap());
        assert!(
            desk.held
                .hold(&held("W-good", Stage::Disclosed, "ann", due))
                .unwrap()
        );
        let told = fetched_notices(&harness, 0);
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0].warrant_id, "W-good");
        // The bad one is tried again later, not by every fetch.
        let next = desk.next_notice.load(Ordering::SeqCst);
        assert!(
            next > now && next <= now + RETRY_SECS + 1,
            "{next} vs {now}"
        );
    }

    /// A notice another fetch's sweep has written but not yet flushed is
    /// not handed out (and acknowledged, and deleted) before it is on disk:
    /// a crash then would issue it again under another id.
    #[test]
    fn a_notice_is_handed_out_only_once_it_is_on_stable_storage() {
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use crate::store::faulty::Faulty;

        let dir = tempfile::tempdir().unwrap();
        let slot = Mutex::new(None);
        let harness = Harness::wrapping(dir.path(), |store| {
            let faulty = Arc::new(Faulty::new(store));
            *slot.lock().unwrap() = Some(faulty.clone());
            faulty
        })
        .unwrap();
        let disk = slot.lock().unwrap().take().unwrap();
        let desk = &harness.state().warrants;
        let due = now_secs(desk.clock.now_ms()) - 60;
        assert!(
            desk.held
                .hold(&held("W-1", Stage::Disclosed, "ann", due))
                .unwrap()
        );
        // The two flushes of the `notice` entry's anchor go through; the
        // writer's, of the notices, waits.
        let asked = disk.flushes_asked();
        disk.hold_flushes_after(2);
        std::thread::scope(|s| {
            // bob's fetch issues the notice and waits for its flush.
            let sweep = s.spawn(|| fetched_notices(&harness, 1));
            disk.wait_for_flushes(asked + 3);
            let ann = s.spawn(|| fetched_notices(&harness, 0));
            std::thread::sleep(Duration::from_millis(300));
            let early = ann.is_finished();
            disk.hold_flushes(false);
            let ann = ann.join().unwrap();
            assert!(!early, "a notice was handed out before the flush: {ann:?}");
            assert_eq!(ann.len(), 1);
            assert!(sweep.join().unwrap().is_empty());
        });
    }
}
