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
//! - [`budget`]: per-authority budgets, and the small one for unverifiable requests;
//! - [`authorities`]: `authorities.toml` on disk;
//! - `records`: the archive as `NormalRecords`.
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
pub use budget::UNVERIFIABLE_PER_MINUTE;
pub(crate) mod grants;
mod records;

use std::path::PathBuf;
use std::sync::Arc;

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
}

/// At most this many characters of a requester's string go into the log.
const LOGGED_CHARS: usize = 256;

fn clip(text: &str) -> String {
    text.chars().take(LOGGED_CHARS).collect()
}

fn now_secs(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000)
}

/// Hex of the SHA-256 of a signed request as received (empty if none came).
fn request_hash<M: Message>(signed: Option<&M>) -> String {
    signed
        .map(|m| hex::encode(Sha256::digest(m.encode_to_vec())))
        .unwrap_or_default()
}

impl WarrantDesk {
    pub fn new(parts: DeskParts) -> Self {
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
        }
    }

    /// Serves a warrant: its disclosure, as one or more sealed parts to send
    /// in order, or why not.
    pub async fn submit(&self, signed: Option<v1::SignedWarrant>) -> Answer<Vec<v1::SealedBundle>> {
        if self.audit.is_err() {
            return Answer::unlogged(DeskError::Failed(LOG_REFUSED));
        }
        let mut entry = AuditEntry::new("warrant", "refused");
        entry.request_sha256 = request_hash(signed.as_ref());
        let outcome = self.serve_warrant(signed, &mut entry).await;
        self.audited(entry, outcome, |entry, parts| {
            // The hash of the file `sotto-warrant submit` saves.
            let bundle = v1::DisclosureBundle {
                parts: parts.clone(),
            };
            entry.bundle_sha256 = hex::encode(Sha256::digest(bundle.encode_to_vec()));
        })
    }

    /// Serves an unmask request: the names, sealed to the warrant's delivery key, or why not.
    pub async fn unmask(
        &self,
        signed: Option<v1::SignedUnmaskRequest>,
    ) -> Answer<v1::SealedBundle> {
        if self.audit.is_err() {
            return Answer::unlogged(DeskError::Failed(LOG_REFUSED));
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
        entry: &mut AuditEntry,
    ) -> Result<Vec<v1::SealedBundle>, Served> {
        let signed = signed.ok_or(Served::Unverifiable(Refusal::Malformed("no warrant")))?;
        let registry = self.registry()?;
        let verified =
            sotto_warrant::verify_warrant(&signed, &registry).map_err(Served::Unverifiable)?;
        let w = &verified.message;
        let authority = verified.authority.name.clone();
        let id = w.id.clone();
        entry.authority = authority.clone();
        entry.warrant_id = clip(&w.id);
        entry.case = clip(&w.case_reference);
        entry.window_from = w.window_from;
        entry.window_until = w.window_until;
        entry.relay = hex::encode(&w.relay_key[..w.relay_key.len().min(32)]);
        entry.targets = w.targets.iter().take(64).map(|t| clip(t)).collect();
        if self.grants.id_used(&authority, &id)? {
            return Err(Served::Unverifiable(Refusal::Replayed));
        }
        if !self.budgets.authority(&authority) {
            return Err(Refusal::RateLimited.into());
        }
        let now = crate::now_ms();
        let outcome = self.check_and_disclose(verified, now, entry).await;
        if let Err(Served::Refused(_)) = &outcome {
            // An id is used once, granted or refused: a copy of a refused
            // warrant sent again is a replay and spends nothing.
            self.grants.refuse_id(&authority, &id, now)?;
            self.writer.durable().await?;
        }
        outcome
    }

    async fn check_and_disclose(
        &self,
        verified: sotto_warrant::Verified<v1::Warrant>,
        now_ms: i64,
        entry: &mut AuditEntry,
    ) -> Result<Vec<v1::SealedBundle>, Served> {
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
        self.disclose(&checked, now_ms, entry).await
    }

    async fn disclose(
        &self,
        checked: &CheckedWarrant,
        now_ms: i64,
        entry: &mut AuditEntry,
    ) -> Result<Vec<v1::SealedBundle>, Served> {
        let outcome = sotto_warrant::disclose(&self.archive, checked, &self.pseudonym_key, now_ms)?;
        if !self
            .grants
            .record(&Grant::new(checked, now_ms), &outcome.pseudonyms)?
        {
            return Err(Served::Unverifiable(Refusal::Replayed));
        }
        self.writer.durable().await?;
        entry.records = outcome.disclosure.records.len() as u64;
        entry.conversations = outcome.conversations as u64;
        entry.pseudonyms = outcome.pseudonyms.len() as u64;
        // However large, it is delivered: in parts, each far under a frame.
        Ok(
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
                .collect(),
        )
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
        let now = crate::now_ms();
        let outcome = self.reveal(verified, now, entry);
        if matches!(outcome, Ok(_) | Err(Served::Refused(_))) {
            // A request id is answered once, whatever the answer.
            if !self.grants.serve_request(&authority, &request_id, now)? {
                return Err(Served::Unverifiable(Refusal::Replayed));
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
            return Answer::unlogged(DeskError::Failed(LOG_REFUSED));
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
