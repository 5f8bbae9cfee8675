//! Why a warrant or unmask request was refused: one stable code each, used in
//! the answer, the audit log and the transparency report.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    RateLimited,
    Malformed,
    TooLarge,
    UnregisteredAuthority,
    BadSignature,
    NotYetValid,
    Expired,
    BadWindow,
    WindowTooLong,
    NoTargets,
    TooManyTargets,
    UnknownTarget,
    Replayed,
    // Unmask requests only.
    Stale,
    NoReason,
    UnknownWarrant,
    OtherAuthority,
    NotDisclosed,
}

impl Refusal {
    /// The stable code, as the audit log records it.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::RateLimited => "rate_limited",
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::UnregisteredAuthority => "unregistered_authority",
            Refusal::BadSignature => "bad_signature",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Expired => "expired",
            Refusal::BadWindow => "bad_window",
            Refusal::WindowTooLong => "window_too_long",
            Refusal::NoTargets => "no_targets",
            Refusal::TooManyTargets => "too_many_targets",
            Refusal::UnknownTarget => "unknown_target",
            Refusal::Replayed => "replayed",
            Refusal::Stale => "stale",
            Refusal::NoReason => "no_reason",
            Refusal::UnknownWarrant => "unknown_warrant",
            Refusal::OtherAuthority => "other_authority",
            Refusal::NotDisclosed => "not_disclosed",
        }
    }

    /// One line for the investigator.
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::RateLimited => "too many warrant requests; try again in a minute",
            Refusal::Malformed => "the request is malformed",
            Refusal::TooLarge => "the request is over the size limit",
            Refusal::UnregisteredAuthority => {
                "it is not signed by an authority registered with this relay"
            }
            Refusal::BadSignature => "its signature does not verify with the named authority's key",
            Refusal::NotYetValid => "the warrant is not valid yet (not-before is in the future)",
            Refusal::Expired => "the warrant has expired",
            Refusal::BadWindow => "the disclosure window ends before it starts",
            Refusal::WindowTooLong => "the disclosure window is longer than this relay allows",
            Refusal::NoTargets => "the warrant names no target",
            Refusal::TooManyTargets => "the warrant names more targets than this relay allows",
            Refusal::UnknownTarget => "a target is not an account on this relay",
            Refusal::Replayed => "a warrant with this id was served already",
            Refusal::Stale => {
                "the unmask request is not fresh (issued more than 10 minutes from now)"
            }
            Refusal::NoReason => "an unmask request needs a reason",
            Refusal::UnknownWarrant => "no warrant with this id was granted here",
            Refusal::OtherAuthority => {
                "only the authority the warrant was granted to may unmask under it"
            }
            Refusal::NotDisclosed => "a pseudonym did not appear in that warrant's disclosure",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused ({}): {}", self.code(), self.explain())
    }
}
