//! Token buckets: at most `burst` requests at once, refilled evenly over a
//! period ([`RateLimiter`]); and one bucket per key ([`KeyedLimiter`]), for
//! limits per account or per address, whose memory stays bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    burst: f64,
    /// Tokens added per second.
    refill: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// At most `burst` at once, and `burst` per `period` in the long run.
    pub fn new(burst: u32, period: Duration) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            burst,
            refill: burst / period.as_secs_f64().max(1e-3),
            state: Mutex::new((burst, Instant::now())),
        }
    }

    pub fn per_minute(per_minute: u32) -> Self {
        Self::new(per_minute, Duration::from_secs(60))
    }

    /// Takes a token if one is left.
    pub fn allow(&self) -> bool {
        self.take(1.0)
    }

    /// Takes `n` tokens at once if that many are left (at most the burst:
    /// a cost larger than the bucket takes it all, once it is full).
    pub fn allow_n(&self, n: u32) -> bool {
        self.take(f64::from(n.max(1)).min(self.burst))
    }

    fn take(&self, tokens: f64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(state.1).as_secs_f64() * self.refill;
        state.0 = (state.0 + refill).min(self.burst);
        state.1 = now;
        if state.0 >= tokens {
            state.0 -= tokens;
            true
        } else {
            false
        }
    }

    /// True when the bucket has refilled: forgetting it changes nothing.
    fn idle(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 + state.1.elapsed().as_secs_f64() * self.refill >= self.burst
    }
}

/// One [`RateLimiter`] per key, made on first use. Buckets that have refilled
/// are forgotten when the map grows past `max_keys`; should every bucket be in
/// use, a new key is refused rather than the map grown: memory is bounded
/// whatever the keys an attacker makes up.
pub struct KeyedLimiter<K> {
    burst: u32,
    period: Duration,
    max_keys: usize,
    buckets: Mutex<HashMap<K, RateLimiter>>,
}

impl<K: Eq + Hash> KeyedLimiter<K> {
    pub fn new(burst: u32, period: Duration, max_keys: usize) -> Self {
        KeyedLimiter {
            burst,
            period,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket if one is left.
    pub fn allow(&self, key: K) -> bool {
        self.allow_n(key, 1)
    }

    /// Takes `n` tokens from `key`'s bucket if that many are left.
    pub fn allow_n(&self, key: K, n: u32) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get(&key) {
            return bucket.allow_n(n);
        }
        if buckets.len() >= self.max_keys {
            buckets.retain(|_, b| !b.idle());
            if buckets.len() >= self.max_keys {
                return false;
            }
        }
        let bucket = RateLimiter::new(self.burst, self.period);
        let allowed = bucket.allow_n(n);
        buckets.insert(key, bucket);
        allowed
    }

    /// Keys currently remembered.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_of_several_takes_that_many_and_never_more_than_the_burst() {
        let limiter = KeyedLimiter::new(10, Duration::from_secs(3600), 10);
        assert!(limiter.allow_n("a", 6));
        assert!(!limiter.allow_n("a", 6), "4 left");
        assert!(limiter.allow_n("a", 4));
        assert!(!limiter.allow("a"));
        // A cost over the burst takes a full bucket, once.
        assert!(limiter.allow_n("b", 255));
        assert!(!limiter.allow_n("b", 1));
    }

    #[test]
    fn a_burst_over_the_limit_is_refused() {
        let limiter = RateLimiter::per_minute(3);
        assert!(limiter.allow() && limiter.allow() && limiter.allow());
        assert!(!limiter.allow());
    }

    #[test]
    fn a_bucket_refills_over_its_period() {
        let limiter = RateLimiter::new(2, Duration::from_millis(100));
        assert!(limiter.allow() && limiter.allow() && !limiter.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.allow(), "one token back after half the period");
    }

    #[test]
    fn keys_have_their_own_buckets_and_their_number_is_bounded() {
        let limiter = KeyedLimiter::new(1, Duration::from_secs(3600), 3);
        assert!(limiter.allow("a") && !limiter.allow("a"));
        assert!(limiter.allow("b") && limiter.allow("c"));
        // Every bucket is in use: a fourth key is refused, not remembered.
        assert!(!limiter.allow("d"));
        assert_eq!(limiter.keys(), 3);
        // Refilled buckets are forgotten to make room.
        let quick = KeyedLimiter::new(1, Duration::from_millis(20), 2);
        assert!(quick.allow(1) && quick.allow(2));
        std::thread::sleep(Duration::from_millis(40));
        assert!(quick.allow(3));
        assert!(quick.keys() <= 2);
    }
}
