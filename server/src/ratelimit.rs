//! A token bucket: at most `per_minute` requests a minute, in bursts of up to
//! as many. Used for the warrant endpoints, which need no account.

use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_minute: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn per_minute(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        RateLimiter {
            per_minute,
            state: Mutex::new((per_minute, Instant::now())),
        }
    }

    /// Takes a token if one is left.
    pub fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(state.1).as_secs_f64() * self.per_minute / 60.0;
        state.0 = (state.0 + refill).min(self.per_minute);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_the_limit_is_refused() {
        let limiter = RateLimiter::per_minute(3);
        assert!(limiter.allow() && limiter.allow() && limiter.allow());
        assert!(!limiter.allow());
    }
}
