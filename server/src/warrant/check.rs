//! Warrant and unmask request checks, sans-IO: signed bytes, the registered
//! authorities and the clock in; an accepted request or a refusal with its
//! reason out. The relay verifies the exact bytes it received, never a
//! re-encoding.

use ed25519_dalek::Signature;
use prost::Message;
use sotto_proto::v1;

use super::authorities::Authority;
use super::refusal::Refusal;

/// Limits a warrant must keep.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_window_secs: i64,
    pub max_targets: usize,
}

/// Largest encoded warrant or unmask request accepted.
pub const MAX_SIGNED_BYTES: usize = 16 * 1024;
const MAX_FIELD: usize = 1024;

/// A warrant whose signature, validity and scope checked out.
#[derive(Debug, Clone)]
pub struct CheckedWarrant {
    pub warrant: v1::Warrant,
    /// The registered name of the authority whose key signed it.
    pub authority: String,
    pub delivery_key: [u8; 32],
}

/// Which registered authority signed `bytes` (with `transcript`), if any.
fn signer<'a>(
    authorities: &'a [Authority],
    message: &[u8],
    signature: &[u8],
) -> Option<&'a Authority> {
    let signature = Signature::from_slice(signature).ok()?;
    authorities
        .iter()
        .find(|a| a.key.verify_strict(message, &signature).is_ok())
}

fn refuse_signature(authorities: &[Authority], claimed: &str) -> Refusal {
    if authorities.iter().any(|a| a.name == claimed) {
        Refusal::BadSignature
    } else {
        Refusal::UnregisteredAuthority
    }
}

/// Checks everything about a warrant that needs no store: signature by a
/// registered authority, validity, window, targets named, sizes.
pub fn check_warrant(
    signed: &v1::SignedWarrant,
    authorities: &[Authority],
    now_secs: i64,
    limits: &Limits,
) -> Result<CheckedWarrant, Refusal> {
    if signed.warrant.len() > MAX_SIGNED_BYTES {
        return Err(Refusal::TooLarge);
    }
    let warrant = v1::Warrant::decode(signed.warrant.as_ref()).map_err(|_| Refusal::Malformed)?;
    let message = sotto_proto::transcript::warrant(&signed.warrant);
    let authority = match signer(authorities, &message, &signed.signature) {
        Some(a) => a.name.clone(),
        None => return Err(refuse_signature(authorities, &warrant.authority)),
    };
    if warrant.id.is_empty()
        || warrant.id.len() > MAX_FIELD
        || warrant.case_reference.len() > MAX_FIELD
    {
        return Err(Refusal::Malformed);
    }
    if now_secs < warrant.not_before {
        return Err(Refusal::NotYetValid);
    }
    if now_secs >= warrant.expires {
        return Err(Refusal::Expired);
    }
    if warrant.window_until <= warrant.window_from {
        return Err(Refusal::BadWindow);
    }
    if warrant.window_until - warrant.window_from > limits.max_window_secs {
        return Err(Refusal::WindowTooLong);
    }
    if warrant.targets.is_empty() {
        return Err(Refusal::NoTargets);
    }
    if warrant.targets.len() > limits.max_targets {
        return Err(Refusal::TooManyTargets);
    }
    if warrant
        .targets
        .iter()
        .any(|t| sotto_proto::names::validate(t).is_err())
    {
        return Err(Refusal::UnknownTarget);
    }
    let delivery_key: [u8; 32] = warrant
        .delivery_key
        .as_ref()
        .try_into()
        .map_err(|_| Refusal::Malformed)?;
    Ok(CheckedWarrant {
        warrant,
        authority,
        delivery_key,
    })
}

/// An unmask request whose signature checked out.
#[derive(Debug, Clone)]
pub struct CheckedUnmask {
    pub request: v1::UnmaskRequest,
    pub authority: String,
}

/// How far an unmask request's `issued_at` may be from the relay's clock.
pub const UNMASK_FRESHNESS_SECS: i64 = 600;
/// The most pseudonyms one unmask request may name.
pub const MAX_UNMASK: usize = 32;

pub fn check_unmask(
    signed: &v1::SignedUnmaskRequest,
    authorities: &[Authority],
    now_secs: i64,
) -> Result<CheckedUnmask, Refusal> {
    if signed.request.len() > MAX_SIGNED_BYTES {
        return Err(Refusal::TooLarge);
    }
    let request =
        v1::UnmaskRequest::decode(signed.request.as_ref()).map_err(|_| Refusal::Malformed)?;
    let message = sotto_proto::transcript::unmask(&signed.request);
    let authority = match signer(authorities, &message, &signed.signature) {
        Some(a) => a.name.clone(),
        None => return Err(refuse_signature(authorities, &request.authority)),
    };
    if (now_secs - request.issued_at).abs() > UNMASK_FRESHNESS_SECS {
        return Err(Refusal::Stale);
    }
    if request.reason.trim().is_empty() || request.reason.len() > MAX_FIELD {
        return Err(Refusal::NoReason);
    }
    if request.pseudonyms.is_empty() || request.pseudonyms.len() > MAX_UNMASK {
        return Err(Refusal::Malformed);
    }
    Ok(CheckedUnmask { request, authority })
}
