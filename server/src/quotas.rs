//! What one account or one address may ask of the relay over time: sends,
//! registrations, lookups, and other people's one-time prekeys. Every map
//! here is bounded (see [`KeyedLimiter`]), whatever names an attacker makes up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::admission::address_key;
use crate::config::{Limits, RelayConfig};
use crate::ratelimit::KeyedLimiter;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Delivery questions one account may ask per minute: a client asks a few
/// each time it connects (at most 512 of its messages, 128 a question).
pub const DELIVERY_QUESTIONS_PER_MINUTE: u32 = 30;
/// Consistency proofs of the transparency log asked from one address (an
/// IPv4 address or IPv6 /64) per minute, over all its connections.
pub const AUDIT_PROOFS_PER_ADDRESS_PER_MINUTE: u32 = 600;
/// Prekey uploads one account may make per minute: a client uploads at its
/// first run, when told its one-time prekeys run low and when its signed
/// prekey is a week old. Each upload checks up to 203 signatures and is
/// flushed to disk before the answer.
pub const PREKEY_UPLOADS_PER_MINUTE: u32 = 10;
/// Accounts (or addresses) each limiter remembers at most.
const MAX_KEYS: usize = 200_000;
/// (requester, target) pairs remembered for a day at most.
const MAX_FIRST_CONTACTS: usize = 200_000;

pub struct Quotas {
    sends: KeyedLimiter<String>,
    registrations: KeyedLimiter<IpAddr>,
    /// Consistency proofs asked from each address.
    audit_proofs: KeyedLimiter<IpAddr>,
    lookups: KeyedLimiter<String>,
    /// Delivery questions (`DeliveryStatus`) of each account.
    delivery_questions: KeyedLimiter<String>,
    /// One-time prekeys of each account that others may take per minute.
    one_time_prekeys: KeyedLimiter<String>,
    /// Prekey uploads of each account.
    prekey_uploads: KeyedLimiter<String>,
    /// Who took a one-time prekey of whom, and when: once a day per pair.
    first_contacts: Mutex<HashMap<(String, String), Instant>>,
}

impl Quotas {
    pub fn new(config: &RelayConfig) -> Self {
        let Limits {
            sends_per_minute,
            registrations_per_address_per_hour,
            lookups_per_account_per_day,
            ..
        } = config.limits;
        Quotas {
            sends: KeyedLimiter::new(sends_per_minute, MINUTE, MAX_KEYS),
            registrations: KeyedLimiter::new(registrations_per_address_per_hour, HOUR, MAX_KEYS),
            audit_proofs: KeyedLimiter::new(AUDIT_PROOFS_PER_ADDRESS_PER_MINUTE, MINUTE, MAX_KEYS),
            lookups: KeyedLimiter::new(lookups_per_account_per_day, DAY, MAX_KEYS),
            delivery_questions: KeyedLimiter::new(DELIVERY_QUESTIONS_PER_MINUTE, MINUTE, MAX_KEYS),
            one_time_prekeys: KeyedLimiter::new(config.prekey_bundles_per_minute, MINUTE, MAX_KEYS),
            prekey_uploads: KeyedLimiter::new(PREKEY_UPLOADS_PER_MINUTE, MINUTE, MAX_KEYS),
            first_contacts: Mutex::new(HashMap::new()),
        }
    }

    /// A send of `user`'s, if their rate allows: `copies` at once for a
    /// message stored once per recipient.
    pub fn send_copies(&self, user: &str, copies: u32) -> bool {
        self.sends.allow_n(user.to_owned(), copies)
    }

    /// One new account from `ip`, if its rate allows.
    pub fn register(&self, ip: IpAddr) -> bool {
        self.registrations.allow(address_key(ip))
    }

    /// One consistency proof asked from `ip`, if its rate allows.
    pub fn audit_proof(&self, ip: IpAddr) -> bool {
        self.audit_proofs.allow(address_key(ip))
    }

    /// One delivery question by `user`, if its rate allows.
    pub fn delivery_question(&self, user: &str) -> bool {
        self.delivery_questions.allow(user.to_owned())
    }

    /// One prekey upload by `user`, if its rate allows.
    pub fn prekey_upload(&self, user: &str) -> bool {
        self.prekey_uploads.allow(user.to_owned())
    }

    /// One identity or bundle lookup by `user`, if its budget allows.
    pub fn lookup(&self, user: &str) -> bool {
        self.lookups.allow(user.to_owned())
    }

    /// Whether `requester` was handed one of `target`'s one-time prekeys
    /// within the day (at this node).
    pub fn took_today(&self, requester: &str, target: &str) -> bool {
        let pair = (requester.to_owned(), target.to_owned());
        self.first_contacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pair)
            .is_some_and(|at| at.elapsed() < DAY)
    }

    /// One of `target`'s one-time prekeys handed out now, if its rate allows.
    pub fn target_rate(&self, target: &str) -> bool {
        self.one_time_prekeys.allow(target.to_owned())
    }

    /// Whether `requester` may be handed one of `target`'s one-time prekeys
    /// now: once a day per pair, and within the target's rate. Otherwise the
    /// bundle goes out with the signed prekey only: nobody is refused a
    /// secret chat, and draining one-time prekeys costs an account a day each.
    #[cfg(test)]
    pub fn one_time_prekey(&self, requester: &str, target: &str) -> bool {
        !self.took_today(requester, target) && self.target_rate(target)
    }

    /// Notes that `requester` was handed one of `target`'s one-time prekeys
    /// (only then: a target without any left costs nobody a day). A full map
    /// forgets the pairs older than a day, and then the oldest tenth: it never
    /// refuses everyone because an attacker made up many pairs.
    pub fn took_one_time_prekey(&self, requester: &str, target: &str) {
        let now = Instant::now();
        let mut pairs = self
            .first_contacts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if pairs.len() >= MAX_FIRST_CONTACTS {
            pairs.retain(|_, at| now.duration_since(*at) < DAY);
            if pairs.len() >= MAX_FIRST_CONTACTS {
                let mut ages: Vec<Instant> = pairs.values().copied().collect();
                let tenth = ages.len() / 10;
                let cut = *ages.select_nth_unstable(tenth).1;
                pairs.retain(|_, at| *at > cut);
            }
        }
        pairs.insert((requester.to_owned(), target.to_owned()), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_takes_one_one_time_prekey_of_a_target_a_day() {
        let q = Quotas::new(&RelayConfig::default());
        assert!(q.one_time_prekey("carol", "bob"));
        q.took_one_time_prekey("carol", "bob");
        assert!(!q.one_time_prekey("carol", "bob"), "a repeat gets none");
        assert!(q.one_time_prekey("dave", "bob"), "another requester does");
        assert!(
            q.one_time_prekey("carol", "erin"),
            "and carol, of another target"
        );
    }

    #[test]
    fn past_the_target_s_rate_bundles_go_without_one_time_prekeys() {
        let q = Quotas::new(&RelayConfig {
            prekey_bundles_per_minute: 2,
            ..RelayConfig::default()
        });
        assert!(q.one_time_prekey("a", "bob") && q.one_time_prekey("b", "bob"));
        assert!(!q.one_time_prekey("c", "bob"));
        assert!(q.one_time_prekey("c", "erin"));
    }
}
