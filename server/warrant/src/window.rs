//! A disclosure window: the half-open time range `[from, until)` of records a
//! granted warrant reaches. It can only be made by [`Window::checked`], which
//! does every piece of arithmetic on the warrant's integers with overflow
//! checks, so no value an authority signs can stretch a window past the limit.

use crate::refusal::Refusal;

/// 2000-01-01T00:00:00Z: no warrant reaches further back, none is valid before.
pub const EARLIEST_SECS: i64 = 946_684_800;
/// 9999-12-31T23:59:59Z: no time in a warrant lies later.
pub const LATEST_SECS: i64 = 253_402_300_799;
const DAY_SECS: i64 = 86_400;

/// A checked window, in milliseconds since the epoch (the archive's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    from_ms: i64,
    until_ms: i64,
}

impl Window {
    /// The window `[from_secs, until_secs)` of a warrant that expires at
    /// `expires_secs`, or why it is refused: it must start before it ends, not
    /// before 2000-01-01, end no later than the expiry plus `max_secs`, and
    /// last at most `max_secs`.
    pub fn checked(
        from_secs: i64,
        until_secs: i64,
        expires_secs: i64,
        max_secs: i64,
    ) -> Result<Window, Refusal> {
        if from_secs < EARLIEST_SECS {
            return Err(Refusal::BadWindow("it starts before 2000-01-01"));
        }
        if until_secs <= from_secs {
            return Err(Refusal::BadWindow("it ends before it starts"));
        }
        let latest_end = expires_secs
            .checked_add(max_secs)
            .ok_or(Refusal::BadWindow("it ends too late"))?;
        if until_secs > latest_end || until_secs > LATEST_SECS {
            return Err(Refusal::BadWindow(
                "it ends later than the warrant's expiry plus the maximum window",
            ));
        }
        let length = until_secs
            .checked_sub(from_secs)
            .ok_or(Refusal::BadWindow("it is too long"))?;
        if length > max_secs {
            return Err(Refusal::WindowTooLong {
                days: (length + DAY_SECS - 1) / DAY_SECS,
                max_days: max_secs / DAY_SECS,
            });
        }
        let ms = |secs: i64| {
            secs.checked_mul(1000)
                .ok_or(Refusal::BadWindow("it is out of range"))
        };
        Ok(Window {
            from_ms: ms(from_secs)?,
            until_ms: ms(until_secs)?,
        })
    }

    /// The first millisecond in the window.
    pub fn from_ms(&self) -> i64 {
        self.from_ms
    }

    /// The first millisecond after the window.
    pub fn until_ms(&self) -> i64 {
        self.until_ms
    }

    pub fn contains(&self, at_ms: i64) -> bool {
        self.from_ms <= at_ms && at_ms < self.until_ms
    }

    /// The part of this window from `from_ms` up to `until_ms` (a delivery
    /// of a monitoring warrant), never reaching outside it; empty (starting
    /// and ending at the later start) when there is no such part.
    pub fn within(&self, from_ms: i64, until_ms: i64) -> Window {
        let from_ms = from_ms.clamp(self.from_ms, self.until_ms);
        Window {
            from_ms,
            until_ms: until_ms.clamp(from_ms, self.until_ms),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.from_ms >= self.until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: i64 = 90 * DAY_SECS;
    const NOW: i64 = 1_790_000_000;

    #[test]
    fn hostile_investigator_cannot_wrap_the_window_length() {
        // The outside review's warrant: a start so far back that
        // `until - from` wrapped around to a small number.
        assert!(Window::checked(-9_223_372_036_854_775_807, NOW, NOW + DAY_SECS, MAX).is_err());
        assert!(Window::checked(i64::MIN, i64::MAX, i64::MAX, MAX).is_err());
        assert!(Window::checked(NOW, i64::MAX, i64::MAX, MAX).is_err());
        assert!(Window::checked(NOW, NOW + 1, i64::MAX, i64::MAX).is_err());
    }

    #[test]
    fn the_limit_holds_to_the_second() {
        let exactly = Window::checked(NOW - MAX, NOW, NOW + DAY_SECS, MAX).unwrap();
        assert_eq!(exactly.until_ms() - exactly.from_ms(), MAX * 1000);
        assert_eq!(
            Window::checked(NOW - MAX - 1, NOW, NOW + DAY_SECS, MAX),
            Err(Refusal::WindowTooLong {
                days: 91,
                max_days: 90
            })
        );
    }

    #[test]
    fn empty_backwards_and_ancient_windows_are_refused() {
        assert!(matches!(
            Window::checked(NOW, NOW, NOW + DAY_SECS, MAX),
            Err(Refusal::BadWindow(_))
        ));
        assert!(matches!(
            Window::checked(NOW, NOW - 1, NOW + DAY_SECS, MAX),
            Err(Refusal::BadWindow(_))
        ));
        assert!(matches!(
            Window::checked(EARLIEST_SECS - 1, EARLIEST_SECS + 10, NOW, MAX),
            Err(Refusal::BadWindow(_))
        ));
    }

    #[test]
    fn a_delivery_never_reaches_outside_the_window() {
        let w = Window::checked(NOW - 10, NOW, NOW + 10, MAX).unwrap();
        assert_eq!(w.within(i64::MIN, i64::MAX), w);
        let part = w.within((NOW - 5) * 1000, (NOW + 99) * 1000);
        assert_eq!(
            (part.from_ms(), part.until_ms()),
            ((NOW - 5) * 1000, NOW * 1000)
        );
        for (from, until) in [
            (NOW * 1000, i64::MAX),
            (i64::MAX, i64::MIN),
            (i64::MIN, i64::MIN),
        ] {
            let empty = w.within(from, until);
            assert!(empty.is_empty() && !empty.contains(empty.from_ms()));
            assert!(w.from_ms() <= empty.from_ms() && empty.until_ms() <= w.until_ms());
        }
    }

    #[test]
    fn the_window_is_half_open() {
        let w = Window::checked(NOW - 10, NOW, NOW + 10, MAX).unwrap();
        assert!(w.contains((NOW - 10) * 1000));
        assert!(w.contains(NOW * 1000 - 1));
        assert!(!w.contains(NOW * 1000));
        assert!(!w.contains((NOW - 10) * 1000 - 1));
    }
}
