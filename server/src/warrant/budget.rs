//! How many warrant and unmask requests the desk serves, and from whom.
//!
//! Each registered authority has its own budget, spent only by requests its
//! key signed: nobody else can use it up. Requests no registered authority's
//! signature verified (and replays of served ids) share one small budget of
//! their own; each within it gets an audit entry, and those over it are only
//! counted, into one audit entry a minute, so a flood of forgeries costs
//! neither the lawful authorities nor one synced line each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ratelimit::RateLimiter;

/// Unverifiable requests that get an audit entry of their own, per minute.
pub const UNVERIFIABLE_PER_MINUTE: u32 = 10;
/// How often the requests over that budget are written down as one entry.
pub const SUPPRESSED_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct Budgets {
    per_authority: u32,
    authorities: Mutex<HashMap<String, RateLimiter>>,
    unverifiable: RateLimiter,
    suppressed: Mutex<Suppressed>,
}

#[derive(Default)]
struct Suppressed {
    count: u64,
    since: Option<Instant>,
}

impl Budgets {
    pub fn new(per_authority: u32) -> Self {
        Budgets {
            per_authority,
            authorities: Mutex::default(),
            unverifiable: RateLimiter::per_minute(UNVERIFIABLE_PER_MINUTE),
            suppressed: Mutex::default(),
        }
    }

    /// Spends one of `authority`'s requests. Only names whose signature
    /// verified reach here, so the map holds registered authorities only.
    pub fn authority(&self, authority: &str) -> bool {
        let mut limiters = self.authorities.lock().unwrap_or_else(|p| p.into_inner());
        limiters
            .entry(authority.to_owned())
            .or_insert_with(|| RateLimiter::per_minute(self.per_authority))
            .allow()
    }

    /// Spends one of the unverifiable requests' entries; when none is left,
    /// counts the request for the next minute's entry instead.
    pub fn unverifiable(&self) -> bool {
        if self.unverifiable.allow() {
            return true;
        }
        let mut s = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        s.count += 1;
        s.since.get_or_insert_with(Instant::now);
        false
    }

    /// The count of requests over the budget, once a minute has passed since
    /// the first of them (or at once with `now_anyway`); it is then reset.
    pub fn take_suppressed(&self, now_anyway: bool) -> Option<u64> {
        let mut s = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        let due = s
            .since
            .is_some_and(|since| now_anyway || since.elapsed() >= SUPPRESSED_EVERY);
        if !due || s.count == 0 {
            return None;
        }
        let count = s.count;
        *s = Suppressed::default();
        Some(count)
    }

    /// Puts a count back (its entry could not be written).
    pub fn restore_suppressed(&self, count: u64) {
        let mut s = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        s.count += count;
        s.since.get_or_insert_with(Instant::now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unregistered_party_cannot_spend_an_authoritys_budget() {
        let budgets = Budgets::new(2);
        for _ in 0..1000 {
            budgets.unverifiable();
        }
        assert!(budgets.authority("chief"));
        assert!(budgets.authority("chief"));
        assert!(!budgets.authority("chief"));
        assert!(budgets.authority("other"), "each authority has its own");
    }

    #[test]
    fn requests_over_the_budget_are_counted_not_lost() {
        let budgets = Budgets::new(30);
        let logged = (0..25).filter(|_| budgets.unverifiable()).count();
        assert_eq!(logged, UNVERIFIABLE_PER_MINUTE as usize);
        assert_eq!(budgets.take_suppressed(false), None, "not a minute yet");
        assert_eq!(budgets.take_suppressed(true), Some(15));
        assert_eq!(budgets.take_suppressed(true), None);
    }
}
