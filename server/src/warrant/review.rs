//! The operators' review of held warrants (`[warrant] review = true`): what
//! `sotto-relay warrant list|show|approve|reject` asks of the running relay
//! through its admin socket.
//!
//! Invariants: a warrant is disclosed only once as many different operators
//! as the rule asks (1 or 2) approved it, and it still passes every automatic
//! check then; a rejection is final; every decision is an entry in the
//! transparency log before it takes effect; what an operator is shown of a
//! warrant is what it asks and how much it would disclose, never a message.

use prost::Message;
use sotto_proto::v1;
use sotto_warrant::Refusal;

use super::audit::AuditEntry;
use super::held::{HeldWarrant, Stage};
use super::{Served, WarrantDesk, clip, describe};

/// Why an operator's request was not done: a sentence for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReviewError(pub String);

fn no(why: impl Into<String>) -> ReviewError {
    ReviewError(why.into())
}

impl From<crate::RelayError> for ReviewError {
    fn from(e: crate::RelayError) -> Self {
        tracing::error!(error = %e, "a review request failed inside the relay");
        no("the relay could not complete the request (its log says why); try again")
    }
}

/// A held warrant as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldView {
    pub id: String,
    pub authority: String,
    pub case: String,
    pub legal_basis: String,
    pub approver: String,
    pub targets: Vec<String>,
    /// Seconds since the epoch.
    pub window_from: i64,
    pub window_until: i64,
    pub expires: i64,
    /// "pending", "disclosed" or "rejected".
    pub stage: String,
    /// Milliseconds since the epoch.
    pub held_at: i64,
    pub approved_by: Vec<String>,
    pub approvals_needed: u32,
    pub rejected_by: String,
    pub reason: String,
    /// What it discloses (or would now): records, conversations,
    /// pseudonyms; or why that cannot be told (it no longer passes a check).
    pub records: u64,
    pub conversations: u64,
    pub pseudonyms: u64,
    pub counts_unknown: String,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reviewed {
    /// Approved; more approvals are needed.
    Approved {
        approvals: u32,
        needed: u32,
    },
    /// Approved by enough operators: disclosed, ready to collect.
    Disclosed {
        records: u64,
    },
    Rejected,
}

/// The longest operator name and rejection reason.
const MAX_NAME: usize = 64;
const MAX_REASON: usize = 1024;

fn valid_text(what: &str, text: &str, max: usize) -> Result<(), ReviewError> {
    if text.trim().is_empty() {
        return Err(no(format!("{what} is empty")));
    }
    if text.chars().count() > max {
        return Err(no(format!("{what} is longer than {max} characters")));
    }
    if text.chars().any(sotto_proto::printable::is_unsafe) {
        return Err(no(format!(
            "{what} holds a control character (a newline, an escape): write it on one plain line"
        )));
    }
    Ok(())
}

/// Characters a terminal shows as nothing (zero-width spaces and joiners,
/// the soft hyphen, variation selectors, tags): two operator names that
/// differ only by them look the same in `warrant show` and in the log.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// An operator's name as it is kept: valid, with no invisible character,
/// its spaces collapsed ("alice ", " alice" and "alice" are one name).
fn operator_name(by: &str) -> Result<String, ReviewError> {
    valid_text("the operator's name", by, MAX_NAME)?;
    if by.chars().any(is_invisible) {
        return Err(no(
            "the operator's name holds an invisible character (a zero-width space or joiner): \
             write it in plain letters",
        ));
    }
    Ok(by.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Whether two operator names are one operator's: compared without case
/// ("Alice" is "alice"), spaces or invisible characters (a name approved
/// before they were refused may hold them), so the two-person rule needs two names that
/// differ in more than spelling.
fn same_operator(a: &str, b: &str) -> bool {
    let key = |name: &str| {
        name.split_whitespace()
            .filter(|w| !w.chars().all(is_invisible))
            .map(|w| w.chars().filter(|c| !is_invisible(*c)).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    key(a) == key(b)
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Pending => "pending",
        Stage::Disclosed => "disclosed",
        Stage::Rejected => "rejected",
    }
}

impl WarrantDesk {
    /// Every held warrant (with `pending_only`, those waiting for a decision), oldest first.
    pub fn held_list(&self, pending_only: bool) -> Result<Vec<HeldView>, ReviewError> {
        Ok(self
            .held
            .all()?
            .iter()
            .filter(|h| !pending_only || h.stage() == Stage::Pending)
            .map(|h| self.view(h))
            .collect())
    }

    /// One held warrant, with what it would disclose now if it is pending.
    pub fn held_show(&self, id: &str, authority: Option<&str>) -> Result<HeldView, ReviewError> {
        let held = self.find(id, authority)?;
        let mut view = self.view(&held);
        if held.stage() == Stage::Pending {
            let mut entry = AuditEntry::new("review", "");
            match self.recheck(&held, self.clock.now_ms()) {
                Ok(checked) => {
                    match self.prepare_disclosure(&checked, self.clock.now_ms(), &mut entry) {
                        Ok(_) => {
                            (view.records, view.conversations, view.pseudonyms) =
                                (entry.records, entry.conversations, entry.pseudonyms)
                        }
                        Err(e) => view.counts_unknown = served_text(e),
                    }
                }
                Err(e) => view.counts_unknown = served_text(e),
            }
        }
        Ok(view)
    }

    /// `by` approves a pending warrant; once enough different operators
    /// did, and it still passes every check, it is disclosed.
    pub async fn approve(
        &self,
        id: &str,
        authority: Option<&str>,
        by: &str,
    ) -> Result<Reviewed, ReviewError> {
        let by = &operator_name(by)?;
        let _one_at_a_time = self.reviewing.lock().await;
        let mut held = self.pending_one(id, authority)?;
        let needed = self.approvals_needed(&held);
        if held.approved_by.iter().any(|o| same_operator(o, by)) {
            return Err(no(format!(
                "{by:?} approved {id:?} already: it needs {needed} different operators"
            )));
        }
        held.approved_by.push(by.to_owned());
        let approvals = u32::try_from(held.approved_by.len()).unwrap_or(u32::MAX);
        let mut entry = self.review_entry(&held, "approved", by)?;
        entry.approvals = approvals.into();
        let now = self.clock.now_ms();
        if approvals < needed {
            self.log(entry)?;
            self.held.update(&held, &[])?;
            self.writer.durable().await?;
            return Ok(Reviewed::Approved { approvals, needed });
        }
        // The last approval: the warrant must still pass every check now.
        let disclosure = match self
            .recheck(&held, now)
            .and_then(|checked| self.prepare_disclosure(&checked, now, &mut entry))
        {
            Ok(disclosure) => disclosure,
            Err(e) => {
                entry.decision = "refused".into();
                entry.reason = match &e {
                    Served::Refused(r) | Served::Unverifiable(r) => r.code(),
                    Served::RegistryUnreadable => "registry_unreadable",
                    Served::Failed(_) => "internal_error",
                }
                .into();
                let why = served_text(e);
                self.log(entry)?;
                return Err(no(format!(
                    "{id:?} cannot be disclosed now: {why}. Nothing was approved; reject it"
                )));
            }
        };
        entry.decision = "granted".into();
        let records = entry.records;
        self.log(entry)?;
        self.commit_disclosure(disclosure, &mut held, now)
            .await
            .map_err(|e| no(served_text(e)))?;
        Ok(Reviewed::Disclosed { records })
    }

    /// `by` rejects a pending warrant, for `reason`: final.
    pub async fn reject(
        &self,
        id: &str,
        authority: Option<&str>,
        by: &str,
        reason: &str,
    ) -> Result<Reviewed, ReviewError> {
        let by = &operator_name(by)?;
        valid_text("the reason", reason, MAX_REASON)?;
        let _one_at_a_time = self.reviewing.lock().await;
        let mut held = self.pending_one(id, authority)?;
        let mut entry = self.review_entry(&held, "rejected", by)?;
        entry.review_reason = clip(reason);
        entry.approvals = held.approved_by.len() as u64;
        self.log(entry)?;
        held.stage = Stage::Rejected as i32;
        held.rejected_by = by.to_owned();
        held.reason = reason.to_owned();
        held.decided_at = self.clock.now_ms();
        self.held.update(&held, &[])?;
        self.writer.durable().await?;
        Ok(Reviewed::Rejected)
    }

    /// The held warrant `id` (of `authority`, when several authorities used that id).
    fn find(&self, id: &str, authority: Option<&str>) -> Result<HeldWarrant, ReviewError> {
        if let Some(authority) = authority {
            return self.held.get(authority, id)?.ok_or_else(|| {
                no(format!(
                    "no warrant {id:?} of authority {authority:?} is held"
                ))
            });
        }
        let mut found: Vec<HeldWarrant> = self
            .held
            .all()?
            .into_iter()
            .filter(|h| h.warrant_id == id)
            .collect();
        match found.len() {
            0 => Err(no(format!(
                "no warrant {id:?} is held (`sotto-relay warrant list` shows them)"
            ))),
            1 => Ok(found.remove(0)),
            _ => Err(no(format!(
                "{id:?} is held from several authorities ({}): name one with --authority",
                found
                    .iter()
                    .map(|h| format!("{:?}", h.authority))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn pending_one(&self, id: &str, authority: Option<&str>) -> Result<HeldWarrant, ReviewError> {
        let held = self.find(id, authority)?;
        match held.stage() {
            Stage::Pending => Ok(held),
            Stage::Disclosed => Err(no(format!("{id:?} was approved and disclosed already"))),
            Stage::Rejected => Err(no(format!(
                "{id:?} was rejected by {:?}: a rejection is final",
                held.rejected_by
            ))),
        }
    }

    /// The warrant verified and checked again, at `now_ms`: the authority
    /// may have been removed, the warrant may have expired while held.
    pub(super) fn recheck(
        &self,
        held: &HeldWarrant,
        now_ms: i64,
    ) -> Result<sotto_warrant::CheckedWarrant, Served> {
        let registry = self.registry()?;
        let verified = sotto_warrant::verify_warrant(&held.signed_warrant()?, &registry)?;
        self.check(verified, now_ms)
    }

    /// A `review` entry for a decision on `held`.
    fn review_entry(
        &self,
        held: &HeldWarrant,
        decision: &str,
        by: &str,
    ) -> Result<AuditEntry, ReviewError> {
        let mut entry = AuditEntry::new("review", decision);
        let warrant = decode(held)?;
        describe(&mut entry, &held.authority, &warrant);
        entry.request_sha256 = super::request_hash(Some(&held.signed_warrant()?));
        entry.operator = clip(by);
        Ok(entry)
    }

    fn log(&self, entry: AuditEntry) -> Result<(), ReviewError> {
        let audit = self.audit_log().map_err(|why| no(why.to_owned()))?;
        audit.append(entry).map(|_| ()).map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "cannot write the audit log; the decision is not taken");
            no("the relay cannot write its transparency log, so the decision is not taken")
        })
    }

    fn view(&self, held: &HeldWarrant) -> HeldView {
        let w = decode(held).unwrap_or_default();
        HeldView {
            id: held.warrant_id.clone(),
            authority: held.authority.clone(),
            case: w.case_reference,
            legal_basis: w.legal_basis,
            approver: w.approver,
            targets: w.targets,
            window_from: w.window_from,
            window_until: w.window_until,
            expires: w.expires,
            stage: stage_name(held.stage()).to_owned(),
            held_at: held.held_at,
            approved_by: held.approved_by.clone(),
            approvals_needed: self.approvals_needed(held),
            rejected_by: held.rejected_by.clone(),
            reason: held.reason.clone(),
            records: held.records,
            conversations: held.conversations,
            pseudonyms: held.pseudonyms,
            counts_unknown: String::new(),
        }
    }
}

fn decode(held: &HeldWarrant) -> Result<v1::Warrant, ReviewError> {
    v1::Warrant::decode(held.signed_warrant()?.warrant.as_ref())
        .map_err(|_| no("a held warrant does not decode"))
}

/// A sentence for the operator of why a warrant cannot be disclosed.
fn served_text(e: Served) -> String {
    match e {
        Served::Refused(r) | Served::Unverifiable(r) => r.to_string(),
        Served::RegistryUnreadable => super::REGISTRY_UNREADABLE.to_owned(),
        Served::Failed(why) => why.to_owned(),
    }
}

impl From<Refusal> for ReviewError {
    fn from(r: Refusal) -> Self {
        no(r.to_string())
    }
}
