//! When the people a warrant disclosed are told of it.
//!
//! A warrant names its `notify_after` (seconds), or leaves it 0 for the
//! relay's default delay after its window ends; it may be no earlier than
//! the window's end and no later than the relay's maximum delay after it.
//! The authority may postpone it by a signed [`v1::NoticeExtension`], at
//! most [`MAX_EXTENSIONS`] times, each by at most the maximum delay. Every
//! piece of arithmetic on the integers an authority signs is checked: no
//! value can wrap a notice into the past or past any limit.

use ed25519_dalek::VerifyingKey;
use sotto_proto::v1;

use crate::check::{Verified, fresh_request};
use crate::refusal::Refusal;
use crate::registry::Registry;
use crate::window::LATEST_SECS;

/// How many times an authority may postpone a warrant's notices.
pub const MAX_EXTENSIONS: u32 = 2;
/// The relay's default delay after the window's end, unless it says otherwise.
pub const DEFAULT_NOTICE_DAYS: u32 = 180;
/// The relay's maximum delay after the window's end, unless it says otherwise.
pub const MAX_NOTICE_DAYS: u32 = 365;

const DAY_SECS: i64 = 86_400;

/// A relay's delays for notices: the default, and the most it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeDelay {
    default_secs: i64,
    max_secs: i64,
}

impl Default for NoticeDelay {
    fn default() -> Self {
        NoticeDelay::new(DEFAULT_NOTICE_DAYS, MAX_NOTICE_DAYS)
    }
}

impl NoticeDelay {
    /// The default is never later than the maximum.
    pub fn new(default_days: u32, max_days: u32) -> Self {
        NoticeDelay {
            default_secs: i64::from(default_days.min(max_days)) * DAY_SECS,
            max_secs: i64::from(max_days) * DAY_SECS,
        }
    }

    fn too_late(&self) -> Refusal {
        Refusal::NoticeTooLate {
            max_days: self.max_secs / DAY_SECS,
        }
    }

    /// When the notices of a warrant whose window ends at `window_until`
    /// (seconds, already checked) are due, given its `notify_after`.
    pub fn due(&self, window_until: i64, notify_after: i64) -> Result<i64, Refusal> {
        let latest = window_until
            .checked_add(self.max_secs)
            .ok_or_else(|| self.too_late())?
            .min(LATEST_SECS);
        let due = match notify_after {
            0 => window_until
                .checked_add(self.default_secs)
                .ok_or_else(|| self.too_late())?
                .min(latest),
            asked => asked,
        };
        if due < window_until {
            return Err(Refusal::NoticeTooEarly);
        }
        if due > latest {
            return Err(self.too_late());
        }
        Ok(due)
    }

    /// The new due time when a warrant whose notices are due at `due`, and
    /// were postponed `extensions` times, is asked to be postponed to `asked`.
    pub fn extend(&self, due: i64, extensions: u32, asked: i64) -> Result<i64, Refusal> {
        if extensions >= MAX_EXTENSIONS {
            return Err(Refusal::NoMoreExtensions);
        }
        if asked <= due {
            return Err(Refusal::NotAnExtension);
        }
        let latest = due
            .checked_add(self.max_secs)
            .ok_or_else(|| self.too_late())?
            .min(LATEST_SECS);
        if asked > latest {
            return Err(self.too_late());
        }
        Ok(asked)
    }
}

/// A verified extension request that passed every check of its own fields
/// (the warrant it names is the relay's to look up).
#[derive(Debug, Clone)]
pub struct CheckedExtension {
    pub request: v1::NoticeExtension,
    pub authority: String,
    pub authority_key: VerifyingKey,
    pub request_id: [u8; crate::check::REQUEST_ID_LEN],
}

/// Finds the authority an extension request names and verifies its
/// signature over the exact bytes received.
pub fn verify_extension(
    signed: &v1::SignedNoticeExtension,
    registry: &Registry,
) -> Result<Verified<v1::NoticeExtension>, Refusal> {
    crate::check::verify(
        &signed.request,
        &signed.signature,
        registry,
        sotto_proto::transcript::notice_extension,
        |r: &v1::NoticeExtension| &r.authority,
    )
}

/// Checks a verified extension request at `now_secs`: fresh, with a reason,
/// a warrant id and a request id.
pub fn check_extension(
    verified: Verified<v1::NoticeExtension>,
    now_secs: i64,
) -> Result<CheckedExtension, Refusal> {
    let r = verified.message;
    let request_id = fresh_request(
        r.issued_at,
        &r.reason,
        &r.warrant_id,
        &r.request_id,
        now_secs,
    )?;
    Ok(CheckedExtension {
        authority_key: verified.authority.key,
        authority: verified.authority.name,
        request_id,
        request: r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTIL: i64 = 1_800_000_000;

    #[test]
    fn no_notify_after_means_the_default_delay() {
        let delay = NoticeDelay::new(180, 365);
        assert_eq!(delay.due(UNTIL, 0), Ok(UNTIL + 180 * DAY_SECS));
        // A default over the maximum is the maximum.
        assert_eq!(
            NoticeDelay::new(400, 10).due(UNTIL, 0),
            Ok(UNTIL + 10 * DAY_SECS)
        );
    }

    #[test]
    fn a_notice_is_between_the_windows_end_and_the_maximum_delay() {
        let delay = NoticeDelay::new(180, 365);
        assert_eq!(delay.due(UNTIL, UNTIL), Ok(UNTIL));
        assert_eq!(
            delay.due(UNTIL, UNTIL + 365 * DAY_SECS),
            Ok(UNTIL + 365 * DAY_SECS)
        );
        assert_eq!(delay.due(UNTIL, UNTIL - 1), Err(Refusal::NoticeTooEarly));
        // Negative and huge values never wrap into range.
        for asked in [-1, i64::MIN, UNTIL + 365 * DAY_SECS + 1, i64::MAX] {
            let refused = delay.due(UNTIL, asked).unwrap_err();
            assert!(
                matches!(
                    refused,
                    Refusal::NoticeTooEarly | Refusal::NoticeTooLate { max_days: 365 }
                ),
                "{asked}: {refused:?}"
            );
        }
        // Near the end of time, the maximum stops at the latest time.
        assert!(delay.due(LATEST_SECS, LATEST_SECS + 1).is_err());
        assert_eq!(delay.due(LATEST_SECS, 0), Ok(LATEST_SECS));
    }

    #[test]
    fn an_extension_postpones_by_at_most_the_maximum_and_twice() {
        let delay = NoticeDelay::new(180, 365);
        let due = UNTIL + 180 * DAY_SECS;
        assert_eq!(delay.extend(due, 0, due + 1), Ok(due + 1));
        assert_eq!(
            delay.extend(due, 1, due + 365 * DAY_SECS),
            Ok(due + 365 * DAY_SECS)
        );
        assert_eq!(
            delay.extend(due, 2, due + 1),
            Err(Refusal::NoMoreExtensions)
        );
        assert_eq!(
            delay.extend(due, u32::MAX, due + 1),
            Err(Refusal::NoMoreExtensions)
        );
        assert_eq!(delay.extend(due, 0, due), Err(Refusal::NotAnExtension));
        assert_eq!(delay.extend(due, 0, i64::MIN), Err(Refusal::NotAnExtension));
        for asked in [due + 365 * DAY_SECS + 1, i64::MAX] {
            assert_eq!(
                delay.extend(due, 0, asked),
                Err(Refusal::NoticeTooLate { max_days: 365 })
            );
        }
        assert_eq!(
            delay.extend(LATEST_SECS, 0, i64::MAX),
            Err(Refusal::NoticeTooLate { max_days: 365 })
        );
    }
}
