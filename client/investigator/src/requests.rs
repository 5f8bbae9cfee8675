//! The requests an investigator makes of a relay, typed: serving a signed
//! warrant, collecting its disclosure, and asking under it who stands behind
//! pseudonyms. The answers are sealed bundles, opened with
//! [`crate::InvestigatorKeys`] (or word that the warrant awaits review).

use rand::Rng;
use sotto_proto::v1::{self, request, response};
use sotto_warrant::check::REQUEST_ID_LEN;

use crate::error::InvestigatorError;
use crate::keys::InvestigatorKeys;
use crate::relay::RelayConnection;

/// A warrant request's answer: the disclosure, in one or more parts each
/// sealed to the warrant's delivery key ([`InvestigatorKeys::open_disclosure`]
/// checks and joins them), or that the relay's operators have not decided yet.
#[derive(Debug)]
pub enum Answered {
    Disclosure(v1::DisclosureBundle),
    PendingReview(v1::PendingReview),
}

/// Serves `signed` on the relay.
pub async fn submit_warrant(
    conn: &RelayConnection,
    signed: v1::SignedWarrant,
) -> Result<Answered, InvestigatorError> {
    let submit = request::Kind::SubmitWarrant(v1::SubmitWarrant {
        warrant: Some(signed),
    });
    warrant_request(conn, submit).await
}

/// Fetches the next delivery of `signed`, served before: the first one made,
/// then for a monitoring warrant the records stored since the last.
pub async fn collect_warrant(
    conn: &RelayConnection,
    signed: v1::SignedWarrant,
) -> Result<Answered, InvestigatorError> {
    collect_delivery(conn, signed, None).await
}

/// Fetches delivery number `delivery` of `signed` again (the same bytes as
/// when it was first handed out), or with `None` the next one.
pub async fn collect_delivery(
    conn: &RelayConnection,
    signed: v1::SignedWarrant,
    delivery: Option<u64>,
) -> Result<Answered, InvestigatorError> {
    let collect = request::Kind::Collect(v1::Collect {
        warrant: Some(signed),
        delivery,
    });
    warrant_request(conn, collect).await
}

async fn warrant_request(
    conn: &RelayConnection,
    kind: request::Kind,
) -> Result<Answered, InvestigatorError> {
    let mut answers = conn.request_all(kind).await?;
    if let [response::Kind::PendingReview(_)] = answers.as_slice()
        && let Some(response::Kind::PendingReview(pending)) = answers.pop()
    {
        return Ok(Answered::PendingReview(pending));
    }
    let mut parts = Vec::new();
    for answer in answers {
        match answer {
            response::Kind::Disclosure(sealed) => parts.push(sealed),
            other => return Err(unexpected("a disclosure", &other)),
        }
    }
    Ok(Answered::Disclosure(v1::DisclosureBundle { parts }))
}

/// Asks the relay to unmask pseudonyms; the answer is sealed to the warrant's
/// delivery key ([`InvestigatorKeys::open_unmasked`]).
pub async fn unmask(
    conn: &RelayConnection,
    signed: v1::SignedUnmaskRequest,
) -> Result<v1::SealedBundle, InvestigatorError> {
    let unmask = request::Kind::Unmask(v1::Unmask {
        request: Some(signed),
    });
    match conn.request(unmask).await? {
        response::Kind::Unmasked(sealed) => Ok(sealed),
        other => Err(unexpected("an unmasking", &other)),
    }
}

/// Asks the relay to postpone a warrant's notices (the answer is plain: the
/// new time; its receipt is the proof).
pub async fn extend_notice(
    conn: &RelayConnection,
    signed: v1::SignedNoticeExtension,
) -> Result<v1::NoticeExtended, InvestigatorError> {
    let extend = request::Kind::ExtendNotice(v1::ExtendNotice {
        request: Some(signed),
    });
    match conn.request(extend).await? {
        response::Kind::NoticeExtended(extended) => Ok(extended),
        other => Err(unexpected("a notice extension", &other)),
    }
}

/// Asks for the proof that the relay's log of `to` entries extends the one of
/// `from` (checked by the caller against both signed roots), and its latest head.
pub async fn audit_proof(
    conn: &RelayConnection,
    from: u64,
    to: u64,
) -> Result<v1::Consistency, InvestigatorError> {
    let ask = request::Kind::AuditProof(v1::AuditProof {
        from_size: from,
        to_size: to,
    });
    match conn.request(ask).await? {
        response::Kind::Consistency(c) => Ok(c),
        other => Err(unexpected("a consistency proof", &other)),
    }
}

/// A new unmask request under warrant `warrant_id`, issued at `now_secs`,
/// with a fresh random request id (a relay serves each id once, and the
/// answer must name it).
pub fn new_unmask_request(
    keys: &InvestigatorKeys,
    warrant_id: &str,
    pseudonyms: Vec<String>,
    reason: &str,
    now_secs: i64,
) -> v1::UnmaskRequest {
    v1::UnmaskRequest {
        warrant_id: warrant_id.to_owned(),
        authority: keys.name.clone(),
        pseudonyms,
        reason: reason.to_owned(),
        issued_at: now_secs,
        request_id: new_request_id(),
    }
}

/// A new request to postpone warrant `warrant_id`'s notices to
/// `notify_after` (seconds), issued at `now_secs`, with a fresh request id.
pub fn new_extension(
    keys: &InvestigatorKeys,
    warrant_id: &str,
    notify_after: i64,
    reason: &str,
    now_secs: i64,
) -> v1::NoticeExtension {
    v1::NoticeExtension {
        warrant_id: warrant_id.to_owned(),
        authority: keys.name.clone(),
        notify_after,
        reason: reason.to_owned(),
        issued_at: now_secs,
        request_id: new_request_id(),
    }
}

fn new_request_id() -> bytes::Bytes {
    let mut request_id = [0u8; REQUEST_ID_LEN];
    rand::rng().fill_bytes(&mut request_id);
    request_id.to_vec().into()
}

fn unexpected(wanted: &str, got: &response::Kind) -> InvestigatorError {
    let name = format!("{got:?}");
    let name = name.split('(').next().unwrap_or("something else");
    InvestigatorError::Protocol(format!("expected {wanted}, got {name}"))
}
