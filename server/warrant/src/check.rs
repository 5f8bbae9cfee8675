//! Warrant and unmask request checks, sans-IO: signed bytes, the registry and
//! the clock in; a checked request or a [`Refusal`] out.
//!
//! Two steps, so a relay can tell who is asking before it spends anything on
//! them: [`verify_warrant`] / [`verify_unmask`] find the named authority and
//! verify its signature over the exact bytes received (never a re-encoding);
//! only what they accept reaches [`check_warrant`] / [`check_unmask`], which
//! check everything else with overflow-free arithmetic.

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;
use sotto_proto::v1;

use crate::bundle::DeliveryKey;
use crate::notice::NoticeDelay;
use crate::refusal::Refusal;
use crate::registry::{Authority, Registry};
use crate::window::{EARLIEST_SECS, LATEST_SECS, Window};

/// Largest encoded warrant or unmask request accepted.
pub const MAX_SIGNED_BYTES: usize = 16 * 1024;
/// Longest id, case reference, reason or authority name.
pub const MAX_FIELD: usize = 1024;
/// How far an unmask request's `issued_at` may be from the relay's clock.
pub const UNMASK_FRESHNESS_SECS: i64 = 600;
/// The most pseudonyms one unmask request may name.
pub const MAX_UNMASK: usize = 32;
/// Length of an unmask request id.
pub const REQUEST_ID_LEN: usize = 16;

/// A relay's limits on warrants.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    max_window_secs: i64,
    max_targets: usize,
    notice: NoticeDelay,
}

impl Limits {
    pub fn new(max_window_days: u32, max_targets: u32) -> Self {
        Limits {
            // u32::MAX days in seconds still fits an i64 by far.
            max_window_secs: i64::from(max_window_days) * 86_400,
            max_targets: max_targets as usize,
            notice: NoticeDelay::default(),
        }
    }

    /// The same limits, with `notice` as the delays for telling the people disclosed.
    pub fn with_notice(self, notice: NoticeDelay) -> Self {
        Limits { notice, ..self }
    }

    pub fn notice(&self) -> NoticeDelay {
        self.notice
    }
}

/// A request whose signature a registered authority made.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    pub message: T,
    pub authority: Authority,
}

/// A warrant that passed every check: it may be served.
#[derive(Debug, Clone)]
pub struct CheckedWarrant {
    pub warrant: v1::Warrant,
    /// The registered name of the authority whose key signed it.
    pub authority: String,
    /// That key: a grant belongs to it, not to whoever bears the name later.
    pub authority_key: VerifyingKey,
    pub window: Window,
    pub delivery_key: DeliveryKey,
    /// When the people disclosed are told (seconds): the warrant's
    /// `notify_after`, or the relay's default delay after the window.
    pub notify_after: i64,
}

/// An unmask request that passed every check of its own (the grant it names
/// is checked by [`crate::Grant::admits`]).
#[derive(Debug, Clone)]
pub struct CheckedUnmask {
    pub request: v1::UnmaskRequest,
    pub authority: String,
    pub authority_key: VerifyingKey,
    pub request_id: [u8; REQUEST_ID_LEN],
}

pub(crate) fn verify<T: Message + Default>(
    bytes: &[u8],
    signature: &[u8],
    registry: &Registry,
    transcript: fn(&[u8]) -> Vec<u8>,
    claimed: impl Fn(&T) -> &str,
) -> Result<Verified<T>, Refusal> {
    if bytes.len() > MAX_SIGNED_BYTES {
        return Err(Refusal::TooLarge);
    }
    let message = T::decode(bytes).map_err(|_| Refusal::Malformed("does not decode"))?;
    let authority = registry
        .get(claimed(&message))
        .ok_or(Refusal::UnregisteredAuthority)?;
    let signature = Signature::from_slice(signature).map_err(|_| Refusal::BadSignature)?;
    authority
        .key
        .verify_strict(&transcript(bytes), &signature)
        .map_err(|_| Refusal::BadSignature)?;
    Ok(Verified {
        message,
        authority: authority.clone(),
    })
}

/// Finds the authority a warrant names and verifies its signature.
pub fn verify_warrant(
    signed: &v1::SignedWarrant,
    registry: &Registry,
) -> Result<Verified<v1::Warrant>, Refusal> {
    verify(
        &signed.warrant,
        &signed.signature,
        registry,
        sotto_proto::transcript::warrant,
        |w: &v1::Warrant| &w.authority,
    )
}

/// Finds the authority an unmask request names and verifies its signature.
pub fn verify_unmask(
    signed: &v1::SignedUnmaskRequest,
    registry: &Registry,
) -> Result<Verified<v1::UnmaskRequest>, Refusal> {
    verify(
        &signed.request,
        &signed.signature,
        registry,
        sotto_proto::transcript::unmask,
        |r: &v1::UnmaskRequest| &r.authority,
    )
}

fn in_sane_range(secs: i64) -> bool {
    (EARLIEST_SECS..=LATEST_SECS).contains(&secs)
}

/// Checks everything about a verified warrant that needs no store: that it
/// is for this relay, its validity, window, targets, delivery key and sizes.
pub fn check_warrant(
    verified: Verified<v1::Warrant>,
    now_secs: i64,
    limits: &Limits,
    relay_key: &VerifyingKey,
) -> Result<CheckedWarrant, Refusal> {
    let w = verified.message;
    if w.id.is_empty() || w.id.len() > MAX_FIELD || w.id.chars().any(char::is_control) {
        return Err(Refusal::Malformed(
            "the id is 1 to 1024 printable characters",
        ));
    }
    if w.case_reference.len() > MAX_FIELD
        || w.legal_basis.len() > MAX_FIELD
        || w.approver.len() > MAX_FIELD
    {
        return Err(Refusal::Malformed(
            "case reference, legal basis and approver are at most 1024 bytes",
        ));
    }
    if w.relay_key.as_ref() != relay_key.as_bytes() {
        return Err(Refusal::WrongRelay);
    }
    if !in_sane_range(w.not_before) || !in_sane_range(w.expires) || w.not_before >= w.expires {
        return Err(Refusal::BadValidity);
    }
    if now_secs < w.not_before {
        return Err(Refusal::NotYetValid);
    }
    if now_secs >= w.expires {
        return Err(Refusal::Expired);
    }
    let window = Window::checked(
        w.window_from,
        w.window_until,
        w.expires,
        limits.max_window_secs,
    )?;
    if w.targets.is_empty() {
        return Err(Refusal::NoTargets);
    }
    if w.targets.len() > limits.max_targets {
        return Err(Refusal::TooManyTargets {
            count: w.targets.len(),
            max: limits.max_targets,
        });
    }
    if let Some(bad) = w
        .targets
        .iter()
        .find(|t| sotto_proto::names::validate(t).is_err())
    {
        return Err(Refusal::UnknownTarget(bad.chars().take(64).collect()));
    }
    let delivery_key = DeliveryKey::from_bytes(&w.delivery_key)?;
    let notify_after = limits.notice.due(w.window_until, w.notify_after)?;
    Ok(CheckedWarrant {
        notify_after,
        authority_key: verified.authority.key,
        authority: verified.authority.name,
        window,
        delivery_key,
        warrant: w,
    })
}

/// Checks a verified unmask request's own fields: freshness (overflow-free),
/// a reason, how many pseudonyms, its request id.
pub fn check_unmask(
    verified: Verified<v1::UnmaskRequest>,
    now_secs: i64,
) -> Result<CheckedUnmask, Refusal> {
    let r = verified.message;
    let request_id = fresh_request(
        r.issued_at,
        &r.reason,
        &r.warrant_id,
        &r.request_id,
        now_secs,
    )?;
    if r.pseudonyms.is_empty() || r.pseudonyms.len() > MAX_UNMASK {
        return Err(Refusal::Malformed(
            "an unmask request names 1 to 32 pseudonyms",
        ));
    }
    Ok(CheckedUnmask {
        authority_key: verified.authority.key,
        authority: verified.authority.name,
        request_id,
        request: r,
    })
}

/// The checks every request under a granted warrant (unmask, notice
/// extension) passes: issued within [`UNMASK_FRESHNESS_SECS`] of now, with
/// a reason, a warrant id and a request id; the request id.
pub(crate) fn fresh_request(
    issued_at: i64,
    reason: &str,
    warrant_id: &str,
    request_id: &[u8],
    now_secs: i64,
) -> Result<[u8; REQUEST_ID_LEN], Refusal> {
    if now_secs.abs_diff(issued_at) > UNMASK_FRESHNESS_SECS.unsigned_abs() {
        return Err(Refusal::Stale);
    }
    if reason.trim().is_empty() || reason.len() > MAX_FIELD {
        return Err(Refusal::NoReason);
    }
    if warrant_id.is_empty()
        || warrant_id.len() > MAX_FIELD
        || warrant_id.chars().any(char::is_control)
    {
        return Err(Refusal::Malformed(
            "the warrant id is 1 to 1024 printable characters",
        ));
    }
    request_id
        .try_into()
        .map_err(|_| Refusal::Malformed("a request id is 16 bytes"))
}
