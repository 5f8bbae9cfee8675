//! The relay's clock: the one source of "now" for the archive's record times
//! and everything the warrant desk decides by time (windows, expiry,
//! deliveries, audit entries and signed heads).
//!
//! Invariant: a release relay reads the system clock and nothing else. Only a
//! build with the `test-clock` feature (which only the tests crate turns on)
//! can set it, and only through the Rust API ([`crate::RunningRelay::clock`]):
//! never from the network or `relay.toml`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch on the system clock (0 if the system
/// clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Stands for "read the system clock" in [`Clock`]'s cell.
const SYSTEM: i64 = i64::MIN;

/// A handle on the relay's clock; clones share it.
#[derive(Clone, Debug)]
pub struct Clock {
    /// [`SYSTEM`], or the time it was set to (milliseconds since the epoch).
    set_to: Arc<AtomicI64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock {
            set_to: Arc::new(AtomicI64::new(SYSTEM)),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self.set_to.load(Ordering::SeqCst) {
            SYSTEM => now_ms(),
            set => set,
        }
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Now, as RFC 3339 (to the millisecond, UTC).
    pub fn now_rfc3339(&self) -> String {
        let nanos = i128::from(self.now_ms()) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

#[cfg(feature = "test-clock")]
impl Clock {
    /// Stops the clock at `at_ms` (milliseconds since the epoch); it stays
    /// there until set or advanced again. Tests only.
    pub fn set(&self, at_ms: i64) {
        // i64::MIN would read as "the system clock".
        self.set_to.store(at_ms.max(SYSTEM + 1), Ordering::SeqCst);
    }

    /// Moves the clock `by_ms` forward from where it reads now (stopping it
    /// there, if it was running). Tests only.
    pub fn advance(&self, by_ms: i64) {
        self.set(self.now_ms().saturating_add(by_ms));
    }
}

#[cfg(all(test, feature = "test-clock"))]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_stays_until_moved_and_clones_share_it() {
        let clock = Clock::system();
        let other = clock.clone();
        clock.set(1_000);
        assert_eq!(other.now_ms(), 1_000);
        other.advance(500);
        assert_eq!(clock.now_ms(), 1_500);
        assert_eq!(clock.now_secs(), 1);
        clock.set(i64::MIN);
        assert_eq!(clock.now_ms(), i64::MIN + 1);
    }
}
