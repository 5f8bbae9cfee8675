//! The warrant desk: the one place in the relay that serves warrant and
//! unmask requests, by handing the sans-IO `sotto_warrant` crate what it may
//! read and writing down what happened.
//!
//! - [`WarrantDesk`]: built with exactly what it needs: a read-only view of
//!   the normal archive ([`ArchiveReader`] as `NormalRecords`), account
//!   lookup, the grants, the audit log, the limits and budgets, the disclosure
//!   key, the pseudonym key (not the whole sealer) and a way to wait for
//!   durability. It holds nothing that can reach the secret queue;
//! - [`grants`]: granted warrants, pseudonym mappings, unmask request ids;
//! - [`audit`]: the transparency log (RFC 9162 Merkle tree, signed heads) and the transparency report;
//! - `anchor`: what the relay last signed of it, sealed in the store;
//! - `held`: warrants held for the operators' review, and disclosures kept for fetching again;
//! - `review`: the operators' side: list, show, approve (by one or two operators), reject;
//! - [`budget`]: per-authority budgets, and the small one for unverifiable requests;
//! - [`authorities`]: `authorities.toml` on disk;
//! - `records`: the archive as `NormalRecords`;
//! - `cluster`: on a cluster, the one node that is its warrant desk, and notices any node hands out.
//!
//! Invariant: every request, granted or refused, is in the audit log (synced,
//! with a signed head that covers it) before its answer leaves, and the answer
//! carries the receipt: the entry, that head and the inclusion proof; requests no authority signed, over their small
//! budget, are counted in one entry a minute. The secret queue cannot even be
//! named outside the relay crate:
//!
//! ```compile_fail
//! use sotto_server::secret_queue::SecretQueue;
//! ```

pub(crate) mod anchor;
pub mod audit;
pub mod authorities;
pub(crate) mod budget;
pub(crate) mod cluster;
pub use budget::UNVERIFIABLE_PER_MINUTE;
pub(crate) use cluster::NOT_THE_DESK;
pub(crate) mod grants;
pub(crate) mod held;
pub(crate) mod notices;
mod notify;
mod records;
mod review;
pub use review::{HeldView, ReviewError, Reviewed};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use ed25519_dalek::SigningKey;
use prost::Message;
use sha2::{Digest, Sha256};
use sotto_proto::v1;
use sotto_warrant::{
    CheckedWarrant, Grant, Limits, PseudonymKey, Purpose, Refusal, Registry, bundle,
};
use tracing::{error, info, warn};

use crate::accounts::AccountNames;
use crate::archive::ArchiveReader;
use crate::writer::Writer;
use audit::{AuditEntry, AuditLog};
use budget::Budgets;
use grants::Grants;
use held::{HeldWarrant, HeldWarrants, Stage};
use notices::Notices;

/// How serving a request ended, when it did not succeed.
#[derive(Debug)]
pub enum DeskError {
    /// Refused, with the reason the requester is told and the log records.
    Refused(Refusal),
    /// Failed inside the relay: a sentence for the requester (never a path or
    /// an internal error; those go to the relay's own log).
    Failed(&'static str),
}

/// How the desk answered, and the receipt for the audit entry that records
/// it (none when nothing was logged: a flood over the budget, or the log
/// could not be written).
pub struct Answer<T> {
    pub outcome: Result<T, DeskError>,
    pub receipt: Option<v1::Receipt>,
}

impl<T> Answer<T> {
    fn unlogged(e: DeskError) -> Self {
        Answer {
            outcome: Err(e),
            receipt: None,
        }
    }
}

/// A warrant's answer: its disclosure (sealed parts to send in order), or
/// that it is held for the operators' review.
pub enum WarrantAnswer {
    Disclosed(Vec<v1::SealedBundle>),
    Pending(v1::PendingReview),
}

/// What an investigator asked of a warrant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// Serve it (`SubmitWarrant`): a warrant already disclosed is a replay.
    Submit,
    /// Its next delivery, or (with a number) one made before, again (`Collect`).
    Collect(Option<u64>),
}

/// What a failed attempt was, for the audit log.
enum Served {
    Refused(Refusal),
    /// No registered authority's signature verified, or a replay of a served id.
    Unverifiable(Refusal),
    /// The authority registry cannot be read: nothing could be verified.
    RegistryUnreadable,
    Failed(&'static str),
}

const REGISTRY_UNREADABLE: &str =
    "the relay cannot read its authority registry; its operator has been told";

const LOG_REFUSED: &str = "the relay's transparency log is not the one it signed, so it answers \
     no warrant request until its operator restores it";

impl From<Refusal> for Served {
    fn from(r: Refusal) -> Self {
        Served::Refused(r)
    }
}

impl From<crate::RelayError> for Served {
    fn from(e: crate::RelayError) -> Self {
        error!(error = %e, "a warrant request failed inside the relay");
        Served::Failed("the relay could not complete the request; try again")
    }
}

/// What the desk is built with.
pub(crate) struct DeskParts {
    pub archive: ArchiveReader,
    pub accounts: AccountNames,
    pub grants: Grants,
    /// The log, or why the relay refused to open it (then it serves no
    /// warrant or unmask request: it could not log them).
    pub audit: Result<AuditLog, String>,
    pub authorities_path: PathBuf,
    pub limits: Limits,
    pub requests_per_minute: u32,
    pub disclosure_key: SigningKey,
    pub pseudonym_key: PseudonymKey,
    pub writer: Writer,
    pub held: HeldWarrants,
    pub notices: Notices,
    /// Hold warrants for the operators' review, and how many must approve.
    pub review: bool,
    pub approvals: u32,
    /// Every time the desk decides by, and writes down.
    pub clock: crate::Clock,
}

pub(crate) struct WarrantDesk {
    archive: ArchiveReader,
    accounts: AccountNames,
    grants: Grants,
    audit: Result<Arc<AuditLog>, String>,
    authorities_path: PathBuf,
    limits: Limits,
    budgets: Budgets,
    disclosure_key: SigningKey,
    pseudonym_key: PseudonymKey,
    writer: Writer,
    held: HeldWarrants,
    notices: Notices,
    /// The earliest time (seconds) a held warrant's notices may be due:
    /// before it, nobody is looked for.
    next_notice: AtomicI64,
    review: bool,
    approvals: u32,
    /// One change to the held warrants at a time (a decision, a delivery,
    /// names revealed, notices).
    reviewing: tokio::sync::Mutex<()>,
    clock: crate::Clock,
}

/// The most deliveries one monitoring warrant has (one an hour for 41 days).
pub const MAX_DELIVERIES: u64 = 1_000;

/// At most this many characters of a requester's string go into the log.
const LOGGED_CHARS: usize = 256;

fn clip(text: &str) -> String {
    text.chars().take(LOGGED_CHARS).collect()
}

fn now_secs(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000)
}

/// A disclosure made, not yet recorded.
struct Disclosure {
    grant: Grant,
    pseudonyms: std::collections::BTreeMap<String, String>,
    parts: Vec<v1::SealedBundle>,
    /// Records, conversations, pseudonyms.
    counts: (u64, u64, u64),
    /// Where it ends (milliseconds), and whether it is the last.
    until_ms: i64,
    is_final: bool,
    /// In how many of its records each person appears (by the name shown).
    appeared: BTreeMap<String, u64>,
}

/// In how many of `records` each name appears (as sender or participant).
fn appearances(records: &[v1::DisclosedRecord]) -> BTreeMap<String, u64> {
    let mut appeared = BTreeMap::new();
    for r in records {
        let mut names: Vec<&String> = r.participants.iter().chain([&r.from]).collect();
        names.sort();
        names.dedup();
        for name in names {
            *appeared.entry(name.clone()).or_insert(0u64) += 1;
        }
    }
    appeared
}

/// Hex of the SHA-256 of the bundle file `sotto-warrant` saves of `parts`.
fn bundle_hash(parts: &[v1::SealedBundle]) -> String {
    let bundle = v1::DisclosureBundle {
        parts: parts.to_vec(),
    };
    hex::encode(Sha256::digest(bundle.encode_to_vec()))
}

/// What an audit entry keeps of a verified warrant.
fn describe(entry: &mut AuditEntry, authority: &str, w: &v1::Warrant) {
    entry.authority = authority.to_owned();
    entry.warrant_id = clip(&w.id);
    entry.case = clip(&w.case_reference);
    entry.window_from = w.window_from;
    entry.window_until = w.window_until;
    entry.notify_after = w.notify_after;
    entry.relay = hex::encode(&w.relay_key[..w.relay_key.len().min(32)]);
    entry.targets = w.targets.iter().take(64).map(|t| clip(t)).collect();
}

/// Hex of the SHA-256 of a signed request as received (empty if none came).
fn request_hash<M: Message>(signed: Option<&M>) -> String {
    signed
        .map(|m| hex::encode(Sha256::digest(m.encode_to_vec())))
        .unwrap_or_default()
}

impl WarrantDesk {
    pub fn new(parts: DeskParts) -> Self {
        let logs = parts.audit.is_ok();
        WarrantDesk {
            archive: parts.archive,
            accounts: parts.accounts,
            grants: parts.grants,
            audit: parts.audit.map(Arc::new),
            authorities_path: parts.authorities_path,
            limits: parts.limits,
            budgets: Budgets::new(parts.requests_per_minute),
            disclosure_key: parts.disclosure_key,
            pseudonym_key: parts.pseudonym_key,
            writer: parts.writer,
            held: parts.held,
            notices: parts.notices,
            // Unknown until the first look; never, without a log (a
            // cluster's node that is not its warrant desk tells nobody).
            next_notice: AtomicI64::new(match logs {
                true => i64::MIN,
                false => i64::MAX,
            }),
            review: parts.review,
            approvals: parts.approvals,
            reviewing: tokio::sync::Mutex::new(()),
            clock: parts.clock,
        }
    }

    /// Serves a warrant: its disclosure, as one or more sealed parts to send
    /// in order, that it is held for review, or why not.
    pub async fn submit(&self, signed: Option<v1::SignedWarrant>) -> Answer<WarrantAnswer> {
        self.warrant_request(signed, Asked::Submit).await
    }

    /// Fetches the disclosure of a warrant served before (the same bytes each
    /// time), or says it is still held for review, or why not.
    pub async fn collect(
        &self,
        signed: Option<v1::SignedWarrant>,
        delivery: Option<u64>,
    ) -> Answer<WarrantAnswer> {
        self.warrant_request(signed, Asked::Collect(delivery)).await
    }

    async fn warrant_request(
        &self,
        signed: Option<v1::SignedWarrant>,
        asked: Asked,
    ) -> Answer<WarrantAnswer> {
        if self.audit.is_err() {
            return Answer::unlogged(DeskError::Failed(self.log_refused()));
        }
        let kind = match asked {
            Asked::Submit => "warrant",
            Asked::Collect(_) => "collect",
        };
        let mut entry = AuditEntry::new(kind, "refused");
        entry.request_sha256 = request_hash(signed.as_ref());
        let outcome = self.serve_warrant(signed, asked, &mut entry).await;
        self.audited(entry, outcome, |entry, answer| match answer {
            // The hash of the file `sotto-warrant` saves.
            WarrantAnswer::Disclosed(parts) => entry.bundle_sha256 = bundle_hash(parts),
            WarrantAnswer::Pending(p) => {
                entry.decision = "pending".into();
                entry.approvals = p.approvals.into();
            }
        })
    }

    /// Serves an unmask request: the names, sealed to the warrant's delivery key, or why not.
    pub async fn unmask(
        &self,
        signed: Option<v1::SignedUnmaskRequest>,
    ) -> Answer<v1::SealedBundle> {
        if self.audit.is_err() {
            return Answer::unlogged(DeskError::Failed(self.log_refused()));
        }
        let mut entry = AuditEntry::new("unmask", "refused");
        entry.request_sha256 = request_hash(signed.as_ref());
        let outcome = self.serve_unmask(signed, &mut entry).await;
        self.audited(entry, outcome, |_, _| {})
    }

    /// Writes the count of unverifiable requests over the budget, if a minute
    /// has passed since the first (or at once with `now_anyway`, at shutdown).
    pub fn flush_unverifiable(&self, now_anyway: bool) {
        let Ok(audit) = &self.audit else {
            return;
        };
        let Some(count) = self.budgets.take_suppressed(now_anyway) else {
            return;
        };
        let mut entry = AuditEntry::new("unverifiable", "refused");
        entry.reason = Refusal::RateLimited.code().into();
        entry.count = count;
        if let Err(e) = audit.append(entry) {
            warn!(error = %e, count, "cannot write the count of unverifiable requests; keeping it");
            self.budgets.restore_suppressed(count);
        }
    }

    /// Why no warrant request is answered, when the log is missing.
    pub(crate) fn log_refused(&self) -> &'static str {
        match &self.audit {
            Err(why) if why == NOT_THE_DESK => NOT_THE_DESK,
            _ => LOG_REFUSED,
        }
    }

    /// The transparency log, unless the relay refused to open it (then why).
    pub fn audit_log(&self) -> Result<&Arc<AuditLog>, &str> {
        self.audit.as_ref().map_err(String::as_str)
    }

    fn registry(&self) -> Result<Registry, Served> {
        // Re-read at every request: the operator may have changed it while we run.
        authorities::load(&self.authorities_path)
            .and_then(|file| Ok(file.registry()?))
            .map_err(|e| {
                error!(error = %format!("{e:#}"), "cannot read the authority registry; refusing warrant requests until it is mended");
                // Nothing is verified yet: counted as unverifiable, so a
                // flood meanwhile costs no more than any other.
                Served::RegistryUnreadable
            })
    }

    async fn serve_warrant(
        &self,
        signed: Option<v1::SignedWarrant>,
        asked: Asked,
        entry: &mut AuditEntry,
    ) -> Result<WarrantAnswer, Served> {
        let signed = signed.ok_or(Served::Unverifiable(Refusal::Malformed("no warrant")))?;
        let registry = self.registry()?;
        let verified =
            sotto_warrant::verify_warrant(&signed, &registry).map_err(Served::Unverifiable)?;
        describe(entry, &verified.authority.name, &verified.message);
        let authority = verified.authority.name.clone();
        let id = verified.message.id.clone();
        if let Some(held) = self.held.get(&authority, &id)? {
            return self.answer_held(&held, &signed, asked, entry).await;
        }
        if asked != Asked::Submit {
            if !self.budgets.authority(&authority) {
                return Err(Refusal::RateLimited.into());
            }
            // Never served here (or served before the relay kept disclosures).
            return Err(Refusal::UnknownWarrant.into());
        }
        if self.grants.id_used(&authority, &id)? {
            return Err(Served::Unverifiable(Refusal::Replayed));
        }
        if !self.budgets.authority(&authority) {
            return Err(Refusal::RateLimited.into());
        }
        let now = self.clock.now_ms();
        let outcome = self.check_and_serve(verified, &signed, now, entry).await;
        if let Err(Served::Refused(_)) = &outcome {
            // An id is used once, granted or refused: a copy of a refused
            // warrant sent again is a replay and spends nothing.
            self.grants.refuse_id(&authority, &id, now)?;
            self.writer.durable().await?;
        }
        outcome
    }

    /// The answer for a warrant the relay holds: the same warrant again
    /// (never another under its id) is told where its review stands.
    async fn answer_held(
        &self,
        held: &HeldWarrant,
        signed: &v1::SignedWarrant,
        asked: Asked,
        entry: &mut AuditEntry,
    ) -> Result<WarrantAnswer, Served> {
        // The same bytes under the same signature: the same authority key
        // (a name registered again with another key holds nothing of it).
        let kept = held.signed_warrant()?;
        if kept.warrant != signed.warrant || kept.signature != signed.signature {
            return Err(Served::Unverifiable(Refusal::Replayed));
        }
        let stage = held.stage();
        if stage == Stage::Disclosed && asked == Asked::Submit {
            return Err(Served::Unverifiable(Refusal::Replayed));
        }
        if !self.budgets.authority(&held.authority) {
            return Err(Refusal::RateLimited.into());
        }
        match stage {
            Stage::Pending => Ok(WarrantAnswer::Pending(self.pending(held))),
            Stage::Rejected => Err(Refusal::Rejected(clip(&held.reason)).into()),
            Stage::Disclosed => match asked {
                Asked::Collect(Some(number)) => self.delivered(held, number, entry),
                _ => self.next_delivery(held, entry).await,
            },
        }
    }

    /// Delivery `number` of a disclosed warrant, as it was handed out first.
    fn delivered(
        &self,
        held: &HeldWarrant,
        number: u64,
        entry: &mut AuditEntry,
    ) -> Result<WarrantAnswer, Served> {
        let made = held.made();
        let parts = self
            .held
            .delivery(held, number)?
            .ok_or(Refusal::NoSuchDelivery {
                asked: number,
                made,
            })?;
        entry.delivery = number;
        entry.final_delivery = number == made && held.all_delivered();
        if number == 1 {
            entry.records = held.records;
            entry.conversations = held.conversations;
            entry.pseudonyms = held.pseudonyms;
        }
        Ok(WarrantAnswer::Disclosed(parts))
    }

    /// The next delivery of a disclosed warrant: one made but not handed out
    /// as the next yet (the first, made at approval), or a new one with the
    /// records stored since the last, while the warrant is valid.
    async fn next_delivery(
        &self,
        held: &HeldWarrant,
        entry: &mut AuditEntry,
    ) -> Result<WarrantAnswer, Served> {
        // Deliveries of a warrant are made one at a time, from what is kept.
        let _one_at_a_time = self.reviewing.lock().await;
        let mut held = self
            .held
            .get(&held.authority, &held.warrant_id)?
            .ok_or(crate::RelayError::Corrupt("a held warrant"))?;
        let made = held.made();
        if held.collected < made {
            let number = held.collected + 1;
            held.collected = number;
            self.held.deliver(&held, number, &[])?;
            self.writer.durable().await?;
            return self.delivered(&held, number, entry);
        }
        if held.all_delivered() {
            return Err(Refusal::AllDelivered { made }.into());
        }
        if made >= MAX_DELIVERIES {
            // Each is kept for fetching again: the store's share of one warrant is bounded.
            return Err(Refusal::DeliveryLimit {
                max: MAX_DELIVERIES,
            }
            .into());
        }
        let number = made
            .checked_add(1)
            .ok_or(crate::RelayError::Corrupt("a warrant's deliveries"))?;
        let now = self.clock.now_ms();
        // Still valid now (not expired, its authority still registered).
        let checked = self.recheck(&held, now)?;
        let from = held.delivered_until;
        let delivery = self.prepare_delivery(&checked, number, from, now, entry)?;
        self.grants
            .add_pseudonyms(&delivery.grant, &delivery.pseudonyms)?;
        held.deliveries = number;
        held.collected = number;
        held.add_appeared(&delivery.appeared);
        held.delivered_until = delivery.until_ms;
        held.finished = delivery.is_final;
        held.delivery_parts.push(
            u32::try_from(delivery.parts.len())
                .map_err(|_| crate::RelayError::Corrupt("a disclosure's parts"))?,
        );
        self.held.deliver(&held, number, &delivery.parts)?;
        self.writer.durable().await?;
        Ok(WarrantAnswer::Disclosed(delivery.parts))
    }

    fn approvals_needed(&self, held: &HeldWarrant) -> u32 {
        // The stricter of the rule it was held under and today's.
        held.approvals_needed.max(self.approvals).max(1)
    }

    fn pending(&self, held: &HeldWarrant) -> v1::PendingReview {
        v1::PendingReview {
            warrant_id: held.warrant_id.clone(),
            approvals: u32::try_from(held.approved_by.len()).unwrap_or(u32::MAX),
            approvals_needed: self.approvals_needed(held),
        }
    }

    /// Every automatic check; then the warrant is held for review, or
    /// disclosed at once when the relay does not review.
    async fn check_and_serve(
        &self,
        verified: sotto_warrant::Verified<v1::Warrant>,
        signed: &v1::SignedWarrant,
        now_ms: i64,
        entry: &mut AuditEntry,
    ) -> Result<WarrantAnswer, Served> {
        let checked = self.check(verified, now_ms)?;
        let mut held = HeldWarrant {
            signed: signed.encode_to_vec(),
            authority: checked.authority.clone(),
            warrant_id: checked.warrant.id.clone(),
            held_at: now_ms,
            approvals_needed: self.approvals,
            notify_after: checked.notify_after,
            ..HeldWarrant::default()
        };
        if !self.review {
            let disclosure = self.prepare_disclosure(&checked, now_ms, entry)?;
            // Handed out now: the first collect is the next delivery.
            held.collected = 1;
            let parts = self
                .commit_disclosure(disclosure, &mut held, now_ms)
                .await?;
            return Ok(WarrantAnswer::Disclosed(parts));
        }
        if !self.held.hold(&held)? {
            // The same warrant, sent twice at once: the other copy holds it.
            let held = self
                .held
                .get(&held.authority, &held.warrant_id)?
                .ok_or(crate::RelayError::Corrupt("a held warrant"))?;
            return Box::pin(self.answer_held(&held, signed, Asked::Submit, entry)).await;
        }
        self.writer.durable().await?;
        Ok(WarrantAnswer::Pending(self.pending(&held)))
    }

    /// The automatic checks of a verified warrant at `now_ms`.
    fn check(
        &self,
        verified: sotto_warrant::Verified<v1::Warrant>,
        now_ms: i64,
    ) -> Result<CheckedWarrant, Served> {
        let checked = sotto_warrant::check_warrant(
            verified,
            now_secs(now_ms),
            &self.limits,
            &self.disclosure_key.verifying_key(),
        )?;
        for target in &checked.warrant.targets {
            if !self.accounts.exists(target)? {
                return Err(Refusal::UnknownTarget(target.clone()).into());
            }
        }
        Ok(checked)
    }

    /// The first delivery of a checked warrant (from the start of its
    /// window), sealed, not yet recorded; the entry gets its counts.
    fn prepare_disclosure(
        &self,
        checked: &CheckedWarrant,
        now_ms: i64,
        entry: &mut AuditEntry,
    ) -> Result<Disclosure, Served> {
        self.prepare_delivery(checked, 1, checked.window.from_ms(), now_ms, entry)
    }

    /// Delivery `number` of a checked warrant: the records sent from
    /// `from_ms` up to now (never past its window's end), sealed, not yet
    /// recorded; final once the window has ended. The entry gets its counts.
    fn prepare_delivery(
        &self,
        checked: &CheckedWarrant,
        number: u64,
        from_ms: i64,
        now_ms: i64,
        entry: &mut AuditEntry,
    ) -> Result<Disclosure, Served> {
        // Every record sent before `settled` is in the archive already.
        let settled = self.archive.settled_before();
        let window = checked.window.within(from_ms, settled);
        let is_final = settled >= checked.window.until_ms();
        let mut outcome = sotto_warrant::disclose_within(
            &self.archive,
            checked,
            &window,
            &self.pseudonym_key,
            now_ms,
        )?;
        outcome.disclosure.delivery = number;
        outcome.disclosure.is_final = is_final;
        entry.delivery = number;
        entry.final_delivery = is_final;
        entry.records = outcome.disclosure.records.len() as u64;
        let appeared = appearances(&outcome.disclosure.records);
        entry.conversations = outcome.conversations as u64;
        entry.pseudonyms = outcome.pseudonyms.len() as u64;
        // However large, it is delivered: in parts, each far under a frame.
        let parts: Vec<v1::SealedBundle> =
            sotto_warrant::split(outcome.disclosure, sotto_warrant::disclosure::PART_BYTES)
                .iter()
                .map(|part| {
                    bundle::seal(
                        Purpose::Disclosure,
                        &part.encode_to_vec(),
                        &self.disclosure_key,
                        &checked.delivery_key,
                    )
                })
                .collect();
        entry.bundle_sha256 = bundle_hash(&parts);
        Ok(Disclosure {
            grant: Grant::new(checked, now_ms),
            pseudonyms: outcome.pseudonyms,
            parts,
            counts: (entry.records, entry.conversations, entry.pseudonyms),
            until_ms: window.until_ms(),
            is_final,
            appeared,
        })
    }

    /// Records the grant and its pseudonyms, keeps the sealed parts with the
    /// held warrant (now disclosed) and waits until it is all durable.
    async fn commit_disclosure(
        &self,
        disclosure: Disclosure,
        held: &mut HeldWarrant,
        now_ms: i64,
    ) -> Result<Vec<v1::SealedBundle>, Served> {
        if !self
            .grants
            .record(&disclosure.grant, &disclosure.pseudonyms)?
        {
            return Err(Served::Unverifiable(Refusal::Replayed));
        }
        held.stage = Stage::Disclosed as i32;
        held.decided_at = now_ms;
        held.deliveries = 1;
        held.delivered_until = disclosure.until_ms;
        held.finished = disclosure.is_final;
        held.parts = u32::try_from(disclosure.parts.len())
            .map_err(|_| crate::RelayError::Corrupt("a disclosure's parts"))?;
        (held.records, held.conversations, held.pseudonyms) = disclosure.counts;
        held.add_appeared(&disclosure.appeared);
        self.held.update(held, &disclosure.parts)?;
        self.writer.durable().await?;
        self.schedule_notice(held);
        Ok(disclosure.parts)
    }

    async fn serve_unmask(
        &self,
        signed: Option<v1::SignedUnmaskRequest>,
        entry: &mut AuditEntry,
    ) -> Result<v1::SealedBundle, Served> {
        let signed = signed.ok_or(Served::Unverifiable(Refusal::Malformed(
            "no unmask request",
        )))?;
        let registry = self.registry()?;
        let verified =
            sotto_warrant::verify_unmask(&signed, &registry).map_err(Served::Unverifiable)?;
        let r = &verified.message;
        let authority = verified.authority.name.clone();
        let request_id = r.request_id.clone();
        entry.authority = authority.clone();
        entry.warrant_id = clip(&r.warrant_id);
        entry.unmask_reason = clip(&r.reason);
        entry.unmask_requested = r.pseudonyms.len() as u64;
        // Replays first, then the budget, then everything else: a copy of
        // any request the relay answered, fresh or stale, spends nothing.
        if self.grants.request_served(&authority, &request_id)? {
            return Err(Served::Unverifiable(Refusal::Replayed));
        }
        if !self.budgets.authority(&authority) {
            return Err(Refusal::RateLimited.into());
        }
        let now = self.clock.now_ms();
        let outcome = self.reveal(verified, now, entry);
        if matches!(outcome, Ok(_) | Err(Served::Refused(_))) {
            // A request id is answered once, whatever the answer.
            if !self.grants.serve_request(&authority, &request_id, now)? {
                return Err(Served::Unverifiable(Refusal::Replayed));
            }
            if let Ok((answer, _)) = &outcome {
                // The people named are told, with the targets.
                self.remember_unmasked(&authority, answer).await?;
            }
            self.writer.durable().await?;
        }
        let (answer, delivery_key) = outcome?;
        Ok(bundle::seal(
            Purpose::Unmasking,
            &answer.encode_to_vec(),
            &self.disclosure_key,
            &delivery_key,
        ))
    }

    /// Checks a verified unmask request against its grant and finds the names.
    fn reveal(
        &self,
        verified: sotto_warrant::Verified<v1::UnmaskRequest>,
        now_ms: i64,
        entry: &mut AuditEntry,
    ) -> Result<(v1::Unmasked, sotto_warrant::DeliveryKey), Served> {
        let checked = sotto_warrant::check_unmask(verified, now_secs(now_ms))?;
        let grant = self
            .grants
            .get(&checked.authority, &checked.request.warrant_id)?
            .ok_or(Refusal::UnknownWarrant)?;
        entry.case = clip(&grant.case_reference);
        let delivery_key = grant.admits(&checked, now_secs(now_ms))?;
        let mut unmasked = Vec::with_capacity(checked.request.pseudonyms.len());
        for pseudonym in &checked.request.pseudonyms {
            let username = self
                .grants
                .reveal(&grant, pseudonym)?
                .ok_or(Refusal::NotDisclosed)?;
            unmasked.push(v1::Unmasking {
                pseudonym: pseudonym.clone(),
                username,
            });
        }
        entry.unmask_revealed = unmasked.len() as u64;
        let answer = v1::Unmasked {
            unmasked,
            warrant_id: grant.warrant_id.clone(),
            request_id: checked.request_id.to_vec().into(),
        };
        Ok((answer, delivery_key))
    }

    /// Records how a request ended in the audit log, and only then answers
    /// it: nothing leaves the relay without its audit entry. `granted` fills
    /// in what the entry keeps of a granted request.
    fn audited<T>(
        &self,
        mut entry: AuditEntry,
        outcome: Result<T, Served>,
        granted: impl FnOnce(&mut AuditEntry, &T),
    ) -> Answer<T> {
        self.flush_unverifiable(false);
        let answer = match outcome {
            Ok(sealed) => {
                entry.decision = "granted".into();
                granted(&mut entry, &sealed);
                Ok(sealed)
            }
            Err(Served::Refused(refusal)) => {
                entry.reason = refusal.code().into();
                Err(DeskError::Refused(refusal))
            }
            Err(Served::Failed(why)) => {
                entry.reason = "internal_error".into();
                Err(DeskError::Failed(why))
            }
            Err(Served::RegistryUnreadable) => {
                if !self.budgets.unverifiable() {
                    return Answer::unlogged(DeskError::Failed(REGISTRY_UNREADABLE));
                }
                let mut noise = AuditEntry::new("unverifiable", "refused");
                noise.request = entry.kind.clone();
                noise.request_sha256 = entry.request_sha256.clone();
                noise.reason = "registry_unreadable".into();
                noise.count = 1;
                entry = noise;
                Err(DeskError::Failed(REGISTRY_UNREADABLE))
            }
            Err(Served::Unverifiable(refusal)) => {
                if !self.budgets.unverifiable() {
                    return Answer::unlogged(DeskError::Refused(Refusal::RateLimited));
                }
                // Only what a verified signature vouches for is kept; from
                // an unverifiable request, just its kind and why.
                let mut noise = AuditEntry::new("unverifiable", "refused");
                noise.request = entry.kind.clone();
                noise.request_sha256 = entry.request_sha256.clone();
                noise.reason = refusal.code().into();
                noise.count = 1;
                if refusal == Refusal::Replayed {
                    noise.authority = entry.authority.clone();
                    noise.warrant_id = entry.warrant_id.clone();
                }
                entry = noise;
                Err(DeskError::Refused(refusal))
            }
        };
        let Ok(audit) = &self.audit else {
            return Answer::unlogged(DeskError::Failed(self.log_refused()));
        };
        let logged = match audit.append(entry.clone()) {
            Ok(logged) => logged,
            Err(e) => {
                warn!(error = %format!("{e:#}"), request = %entry.kind, "cannot write the audit log; refusing the request");
                return Answer::unlogged(DeskError::Failed(
                    "the relay cannot write its audit log, so it answers nothing",
                ));
            }
        };
        // Debug formatting: an id is the requester's text, and must not
        // start a line of its own in the relay's log.
        info!(warrant = ?entry.warrant_id, decision = %entry.decision, reason = %entry.reason, entry = logged.index, "{} request", entry.kind);
        Answer {
            outcome: answer,
            receipt: Some(sotto_warrant::transparency::Receipt::issue(
                logged.index,
                logged.line,
                logged.head,
                logged.inclusion,
                &self.disclosure_key,
            )),
        }
    }
}
