//! Safety numbers: what two people compare out of band to know that no one sits
//! between them. Computed as Signal's numeric fingerprint (version 0): for each
//! side, SHA-512 iterated 5,200 times over its identity key and username, the
//! first 30 bytes read as six 5-digit numbers; the two halves in a fixed order,
//! so both sides see the same 60 digits.

use sha2::{Digest, Sha512};

const ITERATIONS: usize = 5200;
const VERSION: [u8; 2] = [0, 0];

fn half(identity_key: &[u8; 32], username: &str) -> String {
    let mut hash = Sha512::new()
        .chain_update(VERSION)
        .chain_update(identity_key)
        .chain_update(username.as_bytes())
        .finalize();
    for _ in 0..ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(identity_key)
            .finalize();
    }
    (0..6)
        .map(|i| {
            let chunk = &hash[i * 5..i * 5 + 5];
            let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

/// The 60-digit safety number of two identities, the same on both sides.
pub fn safety_number(a: (&str, &[u8; 32]), b: (&str, &[u8; 32])) -> String {
    let mut halves = [half(a.1, a.0), half(b.1, b.0)];
    halves.sort();
    halves.concat()
}

/// The number in twelve groups of five digits, three lines of four groups.
pub fn display(number: &str) -> String {
    let groups: Vec<&str> = number
        .as_bytes()
        .chunks(5)
        .map(|c| std::str::from_utf8(c).unwrap_or("?????"))
        .collect();
    groups
        .chunks(4)
        .map(|line| line.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_see_the_same_60_digits() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let n1 = safety_number(("alice", &a), ("bob", &b));
        let n2 = safety_number(("bob", &b), ("alice", &a));
        assert_eq!(n1, n2);
        assert_eq!(n1.len(), 60);
        assert!(n1.bytes().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn another_key_gives_another_number() {
        let n1 = safety_number(("alice", &[1; 32]), ("bob", &[2; 32]));
        let n2 = safety_number(("alice", &[1; 32]), ("bob", &[3; 32]));
        assert_ne!(n1, n2);
    }

    #[test]
    fn display_groups_digits() {
        let shown = display(&"0123456789".repeat(6));
        assert_eq!(shown.lines().count(), 3);
        assert_eq!(shown.lines().next().unwrap(), "01234 56789 01234 56789");
    }
}
