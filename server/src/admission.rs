//! Who may hold a connection: at most `limits.connections` at once, and at
//! most `limits.connections_per_address` from one IPv4 address or IPv6 /64.
//!
//! A QUIC Initial can carry a forged source address. So that forged packets
//! cannot use up a victim address's share, once an address holds half its
//! share its new connections must prove the address first (a stateless QUIC
//! retry) before they are counted; and so that forged packets from many
//! addresses cannot fill the relay with handshakes that never finish, every
//! new connection must prove its address while many handshakes are under way.
//! A handshake that does not finish in time, and a connection nobody logs in
//! on in time, are closed (see `connection`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::Limits;

/// The IPv4 address an IPv6 address stands for: mapped (`::ffff:a.b.c.d`)
/// or 6to4 (`2002:aabb:ccdd::/48`, a whole /48 for one IPv4 address).
fn ipv4_behind(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    (s[0] == 0x2002).then(|| {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        std::net::Ipv4Addr::new(a, b, c, d)
    })
}

/// The unit limits count by: an IPv4 address, or an IPv6 /64 (one host's share).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match ipv4_behind(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// The site an IPv6 /64 belongs to (its /48), which gets 16 hosts' shares:
/// a home or an office is routinely given a /56 or /48, whose /64s would
/// otherwise each count as a host.
fn site_key(address: IpAddr) -> Option<IpAddr> {
    match address {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[3..].fill(0);
            Some(IpAddr::V6(segments.into()))
        }
    }
}

/// How many hosts' shares one IPv6 site gets.
const SITE_SHARES: u32 = 16;

#[derive(Default)]
struct Counts {
    total: u32,
    /// Admitted connections whose handshake has not finished yet.
    handshaking: u32,
    by_address: HashMap<IpAddr, u32>,
    by_site: HashMap<IpAddr, u32>,
}

pub struct Admission {
    total: u32,
    per_address: u32,
    /// Past this many handshakes under way, new ones must prove their address.
    handshakes: u32,
    counts: Mutex<Counts>,
}

/// What to do with a new connection.
pub enum Decision {
    /// Serve it; the slot is freed when this is dropped.
    Admit(Admitted),
    /// Ask the peer to prove its address first.
    Retry,
    /// Refuse it: the relay (`relay_full`), or this address
    /// (`address_full`), holds all it may.
    Refuse(&'static str),
}

/// A counted connection; dropping it frees its slot.
pub struct Admitted {
    admission: Arc<Admission>,
    address: IpAddr,
    handshaking: bool,
}

impl Admitted {
    /// The handshake has ended (either way).
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            let mut counts = self.admission.lock();
            counts.handshaking = counts.handshaking.saturating_sub(1);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.handshake_done();
        let mut counts = self.admission.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
        if let Some(site) = site_key(self.address)
            && let Some(n) = counts.by_site.get_mut(&site)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_site.remove(&site);
            }
        }
    }
}

impl Admission {
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Admission {
            total: limits.connections,
            per_address: limits.connections_per_address,
            handshakes: (limits.connections / 16).max(64),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides on a connection from `ip`; `validated` when the peer has
    /// already proved it receives at that address.
    pub fn decide(self: &Arc<Self>, ip: IpAddr, validated: bool) -> Decision {
        let address = address_key(ip);
        let mut counts = self.lock();
        let here = counts.by_address.get(&address).copied().unwrap_or(0);
        if counts.total >= self.total {
            return Decision::Refuse("relay_full");
        }
        if here >= self.per_address {
            return Decision::Refuse("address_full");
        }
        let site = site_key(address);
        if let Some(site) = site
            && counts.by_site.get(&site).copied().unwrap_or(0)
                >= self.per_address.saturating_mul(SITE_SHARES)
        {
            return Decision::Refuse("address_full");
        }
        if !validated
            && (here >= self.per_address.div_ceil(2) || counts.handshaking >= self.handshakes)
        {
            return Decision::Retry;
        }
        counts.total += 1;
        counts.handshaking += 1;
        *counts.by_address.entry(address).or_default() += 1;
        if let Some(site) = site {
            *counts.by_site.entry(site).or_default() += 1;
        }
        Decision::Admit(Admitted {
            admission: self.clone(),
            address,
            handshaking: true,
        })
    }

    /// Connections held now.
    pub fn connections(&self) -> u32 {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: u32, per_address: u32) -> Arc<Admission> {
        Admission::new(&Limits {
            connections: total,
            connections_per_address: per_address,
            ..Limits::default()
        })
    }

    fn admitted(d: Decision) -> Admitted {
        match d {
            Decision::Admit(a) => a,
            Decision::Retry => panic!("asked for a retry"),
            Decision::Refuse(why) => panic!("refused: {why}"),
        }
    }

    #[test]
    fn one_address_gets_its_share_and_no_more_and_others_still_get_in() {
        let a = admission(100, 4);
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..4).map(|_| admitted(a.decide(one, true))).collect();
        assert!(matches!(a.decide(one, true), Decision::Refuse(_)));
        let _other = admitted(a.decide("127.0.0.2".parse().unwrap(), false));
        drop(held);
        assert_eq!(a.connections(), 1, "slots are freed when connections end");
        admitted(a.decide(one, true));
    }

    #[test]
    fn past_half_its_share_an_address_must_prove_itself() {
        let a = admission(100, 4);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _held: Vec<_> = (0..2).map(|_| admitted(a.decide(ip, false))).collect();
        assert!(matches!(a.decide(ip, false), Decision::Retry));
        let _third = admitted(a.decide(ip, true));
    }

    #[test]
    fn while_many_handshakes_are_under_way_every_address_must_prove_itself() {
        let a = admission(10_000, 64);
        let mut held: Vec<_> = (0..625u32)
            .map(|i| admitted(a.decide(IpAddr::from(i.to_be_bytes()), false)))
            .collect();
        // 625 = 10,000 / 16 handshakes unfinished: a new address is asked to retry.
        assert!(matches!(
            a.decide("10.9.9.9".parse().unwrap(), false),
            Decision::Retry
        ));
        let _proved = admitted(a.decide("10.9.9.9".parse().unwrap(), true));
        // Once handshakes finish, nobody is asked.
        held.iter_mut().for_each(Admitted::handshake_done);
        admitted(a.decide("10.9.9.8".parse().unwrap(), false));
    }

    #[test]
    fn the_total_is_a_cap_whatever_the_addresses() {
        let a = admission(3, 3);
        let _held: Vec<_> = (1..=3u8)
            .map(|i| admitted(a.decide(IpAddr::from([10, 0, 0, i]), true)))
            .collect();
        assert!(matches!(
            a.decide("10.0.0.9".parse().unwrap(), true),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64() {
        let a = admission(100, 1);
        let _held = admitted(a.decide("2001:db8:1:2::1".parse().unwrap(), true));
        assert!(matches!(
            a.decide("2001:db8:1:2:ffff::9".parse().unwrap(), true),
            Decision::Refuse(_)
        ));
        admitted(a.decide("2001:db8:1:3::1".parse().unwrap(), true));
        assert_eq!(
            address_key("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        // 6to4 gives one IPv4 address a /48: it counts as that address.
        assert_eq!(
            address_key("2002:0a01:0203:77::1".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_ipv6_site_gets_sixteen_hosts_shares_whatever_its_64s() {
        let a = admission(10_000, 2);
        let held: Vec<_> = (0..32u16)
            .map(|net| {
                let ip = std::net::Ipv6Addr::new(0x2001, 0xdb8, 7, net, 0, 0, 0, 1);
                admitted(a.decide(IpAddr::V6(ip), true))
            })
            .collect();
        let another_64 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 7, 99, 0, 0, 0, 1);
        assert!(matches!(
            a.decide(IpAddr::V6(another_64), true),
            Decision::Refuse("address_full")
        ));
        let another_site = std::net::Ipv6Addr::new(0x2001, 0xdb8, 8, 0, 0, 0, 0, 1);
        admitted(a.decide(IpAddr::V6(another_site), true));
        drop(held);
        admitted(a.decide(IpAddr::V6(another_64), true));
    }
}
