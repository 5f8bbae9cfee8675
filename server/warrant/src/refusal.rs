//! Why a warrant or unmask request was refused: one stable code each (for the
//! answer's `refusal` field, the audit log and the transparency report) and a
//! sentence that says what was wrong and, where there is one, the limit.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The signer's (or the unverifiable requests') budget is spent for now.
    RateLimited,
    Malformed(&'static str),
    TooLarge,
    UnregisteredAuthority,
    BadSignature,
    /// The warrant names another relay's disclosure key.
    WrongRelay,
    NotYetValid,
    Expired,
    /// `not_before`/`expires` out of order or out of the sane range.
    BadValidity,
    BadWindow(&'static str),
    WindowTooLong {
        days: i64,
        max_days: i64,
    },
    NoTargets,
    TooManyTargets {
        count: usize,
        max: usize,
    },
    UnknownTarget(String),
    /// A delivery key that is not 32 bytes, or a low-order point (the bundle's
    /// shared secret would be all zeros).
    BadDeliveryKey,
    /// A warrant id this authority was served before, or an unmask request id seen before.
    Replayed,
    // Unmask requests only.
    Stale,
    NoReason,
    UnknownWarrant,
    NotDisclosed,
    /// The relay's operators rejected the warrant in review (their reason).
    Rejected(String),
    /// Every delivery of a monitoring warrant was made: the last of `made` was final.
    AllDelivered {
        made: u64,
    },
    /// A delivery asked for by a number that is not one made: 0, or past the
    /// `made` so far.
    NoSuchDelivery {
        asked: u64,
        made: u64,
    },
    /// The notice would come later than the relay allows (`max_days` after
    /// the window's end, or after the notice an extension postpones).
    NoticeTooLate {
        max_days: i64,
    },
    /// A notice cannot come before the window it tells of has ended.
    NoticeTooEarly,
    /// Notice extensions: the warrant had both of its two.
    NoMoreExtensions,
    /// Notice extensions: the notices are due, or went out, already.
    AlreadyNotified,
    /// Notice extensions: the new time is not later than the one set.
    NotAnExtension,
    /// A monitoring warrant had as many deliveries as one warrant may.
    DeliveryLimit {
        max: u64,
    },
}

impl Refusal {
    /// The stable code, as the answer and the audit log carry it.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RateLimited => "rate_limited",
            Refusal::Malformed(_) => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::UnregisteredAuthority => "unregistered_authority",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongRelay => "wrong_relay",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Expired => "expired",
            Refusal::BadValidity => "bad_validity",
            Refusal::BadWindow(_) => "bad_window",
            Refusal::WindowTooLong { .. } => "window_too_long",
            Refusal::NoTargets => "no_targets",
            Refusal::TooManyTargets { .. } => "too_many_targets",
            Refusal::UnknownTarget(_) => "unknown_target",
            Refusal::BadDeliveryKey => "bad_delivery_key",
            Refusal::Replayed => "replayed",
            Refusal::Stale => "stale",
            Refusal::NoReason => "no_reason",
            Refusal::UnknownWarrant => "unknown_warrant",
            Refusal::NotDisclosed => "not_disclosed",
            Refusal::Rejected(_) => "rejected",
            Refusal::AllDelivered { .. } => "all_delivered",
            Refusal::NoSuchDelivery { .. } => "no_such_delivery",
            Refusal::NoticeTooLate { .. } => "notice_too_late",
            Refusal::NoticeTooEarly => "notice_too_early",
            Refusal::NoMoreExtensions => "no_more_extensions",
            Refusal::AlreadyNotified => "already_notified",
            Refusal::NotAnExtension => "not_an_extension",
            Refusal::DeliveryLimit { .. } => "delivery_limit",
        }
    }

    /// True when no registered authority's signature was verified: such a
    /// request never spends an authority's budget and is counted apart.
    pub fn is_unverifiable(&self) -> bool {
        matches!(
            self,
            Refusal::Malformed(_)
                | Refusal::TooLarge
                | Refusal::UnregisteredAuthority
                | Refusal::BadSignature
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused ({}): ", self.code())?;
        match self {
            Refusal::RateLimited => write!(f, "too many requests; try again in a minute"),
            Refusal::Malformed(what) => write!(f, "the request is malformed ({what})"),
            Refusal::TooLarge => write!(
                f,
                "the request is over the size limit of {} bytes",
                crate::check::MAX_SIGNED_BYTES
            ),
            Refusal::UnregisteredAuthority => write!(
                f,
                "the authority it names is not registered with this relay"
            ),
            Refusal::BadSignature => write!(
                f,
                "its signature does not verify with the named authority's registered key"
            ),
            Refusal::WrongRelay => write!(
                f,
                "the warrant is for another relay (it names a different disclosure key)"
            ),
            Refusal::NotYetValid => {
                write!(
                    f,
                    "the warrant is not valid yet (not-before is in the future)"
                )
            }
            Refusal::Expired => write!(f, "the warrant has expired"),
            Refusal::BadValidity => write!(
                f,
                "not-before must come before expires, both between 2000-01-01 and 9999-12-31"
            ),
            Refusal::BadWindow(why) => write!(f, "bad disclosure window: {why}"),
            Refusal::WindowTooLong { days, max_days } => write!(
                f,
                "window {days} days exceeds this relay's maximum of {max_days}"
            ),
            Refusal::NoTargets => write!(f, "the warrant names no target"),
            Refusal::TooManyTargets { count, max } => {
                write!(f, "{count} targets exceed this relay's maximum of {max}")
            }
            Refusal::UnknownTarget(name) => {
                write!(f, "target {name:?} is not an account on this relay")
            }
            Refusal::BadDeliveryKey => write!(
                f,
                "the delivery key is not a usable X25519 public key (32 bytes, not a low-order point)"
            ),
            Refusal::Replayed => write!(f, "this id was served already (ids are used once)"),
            Refusal::Stale => write!(
                f,
                "the request is not fresh (issued more than {} minutes from now)",
                crate::check::UNMASK_FRESHNESS_SECS / 60
            ),
            Refusal::NoReason => write!(f, "an unmask request needs a reason (1 to 1024 bytes)"),
            Refusal::UnknownWarrant => {
                write!(
                    f,
                    "no warrant with this id was granted here to this authority"
                )
            }
            Refusal::NotDisclosed => {
                write!(f, "a pseudonym did not appear in that warrant's disclosure")
            }
            Refusal::Rejected(reason) => write!(
                f,
                "the relay's operators rejected the warrant in review (final): {reason:?}"
            ),
            Refusal::AllDelivered { made } => write!(
                f,
                "nothing more: all {made} deliveries of this warrant were made, the last final \
                 (fetch one again by its number)"
            ),
            Refusal::NoSuchDelivery { asked, made } => write!(
                f,
                "there is no delivery {asked} of this warrant: deliveries are numbered from 1, \
                 and {made} were made so far"
            ),
            Refusal::NoticeTooLate { max_days } => write!(
                f,
                "the people disclosed must be told at most {max_days} days after the window \
                 ends (or after the notice an extension postpones) on this relay"
            ),
            Refusal::NoticeTooEarly => write!(
                f,
                "the notice cannot come before the window it tells of has ended"
            ),
            Refusal::NoMoreExtensions => write!(
                f,
                "this warrant's notice was extended twice already, the most allowed"
            ),
            Refusal::AlreadyNotified => write!(
                f,
                "the notice of this warrant is due or sent already: too late to postpone it"
            ),
            Refusal::NotAnExtension => {
                write!(f, "the new notice time must be later than the one set")
            }
            Refusal::DeliveryLimit { max } => write!(
                f,
                "this warrant had {max} deliveries, the most one warrant may have: fetch one \
                 again by its number, or serve a new warrant"
            ),
        }
    }
}

impl std::error::Error for Refusal {}
