//! A hostile investigator holds a registered authority's key and signs any
//! integers it likes. Whatever it signs, no granted warrant reaches a record
//! outside `[window_from, window_until)` or spans more than the maximum window,
//! even when the archive view hands back more than it was asked for.

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use prost::Message;
use sotto_proto::v1;
use sotto_warrant::{
    ArchivedRecord, AuthorityFile, Limits, NormalRecords, PseudonymKey, Refusal, Registry, Window,
    check_warrant, disclose, verify_warrant,
};
use x25519_dalek::{PublicKey, StaticSecret};

const MAX_DAYS: u32 = 90;
const MAX_SECS: i64 = MAX_DAYS as i64 * 86_400;
const NOW: i64 = 1_796_000_000; // 2026-11-29

struct Keys {
    authority: SigningKey,
    relay: SigningKey,
    registry: Registry,
    delivery: [u8; 32],
}

fn keys() -> Keys {
    let authority = SigningKey::from_bytes(&[1u8; 32]);
    let mut file = AuthorityFile::default();
    file.add("chief", &hex::encode(authority.verifying_key().as_bytes()))
        .unwrap();
    Keys {
        authority,
        relay: SigningKey::from_bytes(&[2u8; 32]),
        registry: file.registry().unwrap(),
        delivery: PublicKey::from(&StaticSecret::from([3u8; 32])).to_bytes(),
    }
}

fn sign(keys: &Keys, w: &v1::Warrant) -> v1::SignedWarrant {
    let bytes = w.encode_to_vec();
    v1::SignedWarrant {
        signature: keys
            .authority
            .sign(&sotto_proto::transcript::warrant(&bytes))
            .to_bytes()
            .to_vec()
            .into(),
        warrant: bytes.into(),
    }
}

fn warrant(keys: &Keys, from: i64, until: i64, not_before: i64, expires: i64) -> v1::Warrant {
    v1::Warrant {
        id: "W-1".into(),
        case_reference: "case".into(),
        authority: "chief".into(),
        legal_basis: "order".into(),
        approver: "judge".into(),
        targets: vec!["alice".into()],
        window_from: from,
        window_until: until,
        not_before,
        expires,
        delivery_key: keys.delivery.to_vec().into(),
        relay_key: keys.relay.verifying_key().to_bytes().to_vec().into(),
        notify_after: 0,
    }
}

/// An archive view that ignores the window it is given and returns records
/// at every interesting time: a compromised or buggy implementation.
struct EverythingArchive {
    times: Vec<i64>,
}

impl NormalRecords for EverythingArchive {
    type Error = std::convert::Infallible;

    fn records_of(&self, user: &str, _: &Window) -> Result<Vec<ArchivedRecord>, Self::Error> {
        Ok(self
            .times
            .iter()
            .enumerate()
            .map(|(i, &sent_at)| ArchivedRecord {
                id: i as u64,
                conversation: b"c".to_vec(),
                from: user.to_owned(),
                participants: vec![user.to_owned(), "bob".into()],
                sent_at,
                text: format!("message {i}"),
            })
            .collect())
    }
}

fn times_around(w: &v1::Warrant) -> Vec<i64> {
    let mut times = vec![i64::MIN, i64::MAX, 0, -1, NOW * 1000];
    for secs in [w.window_from, w.window_until, w.expires, w.not_before] {
        let ms = secs.saturating_mul(1000);
        times.extend([ms.saturating_sub(1), ms, ms.saturating_add(1)]);
    }
    times
}

/// Fields that are often near a valid warrant and sometimes anything at all.
fn field(near: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::MIN + 1),
        (-(2 * MAX_SECS)..(2 * MAX_SECS)).prop_map(move |d| near + d),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_granted_warrant_reaches_outside_its_window(
        from in field(NOW - 30 * 86_400),
        until in field(NOW),
        not_before in field(NOW - 60),
        expires in field(NOW + 86_400),
    ) {
        let keys = keys();
        let w = warrant(&keys, from, until, not_before, expires);
        let verified = verify_warrant(&sign(&keys, &w), &keys.registry).unwrap();
        let limits = Limits::new(MAX_DAYS, 10);
        let Ok(checked) = check_warrant(verified, NOW, &limits, &keys.relay.verifying_key()) else {
            return Ok(());
        };
        // Checked in i128, where nothing the authority signed can wrap.
        let (from, until) = (i128::from(from), i128::from(until));
        prop_assert!(from < until);
        prop_assert!(until - from <= i128::from(MAX_SECS));
        prop_assert_eq!(i128::from(checked.window.from_ms()), from * 1000);
        prop_assert_eq!(i128::from(checked.window.until_ms()), until * 1000);
        let archive = EverythingArchive { times: times_around(&w) };
        let outcome = disclose(&archive, &checked, &PseudonymKey::new([4u8; 32]), NOW * 1000).unwrap();
        for r in &outcome.disclosure.records {
            let at = i128::from(r.sent_at);
            prop_assert!(
                from * 1000 <= at && at < until * 1000,
                "record at {} outside [{}, {}) s", r.sent_at, from, until
            );
        }
    }
}

#[test]
fn the_outside_reviews_warrant_is_refused() {
    let keys = keys();
    let w = warrant(
        &keys,
        -9_223_372_036_854_775_807,
        NOW + 86_400,
        NOW - 60,
        NOW + 7 * 86_400,
    );
    let verified = verify_warrant(&sign(&keys, &w), &keys.registry).unwrap();
    let refusal = check_warrant(
        verified,
        NOW,
        &Limits::new(MAX_DAYS, 10),
        &keys.relay.verifying_key(),
    )
    .unwrap_err();
    assert_eq!(refusal.code(), "bad_window");
}

#[test]
fn hostile_investigator_warrant_for_another_relay_is_refused() {
    let keys = keys();
    let w = warrant(&keys, NOW - 86_400, NOW, NOW - 60, NOW + 86_400);
    let verified = verify_warrant(&sign(&keys, &w), &keys.registry).unwrap();
    let elsewhere = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    assert_eq!(
        check_warrant(verified, NOW, &Limits::new(MAX_DAYS, 10), &elsewhere).unwrap_err(),
        Refusal::WrongRelay
    );
}

#[test]
fn a_window_one_second_over_the_limit_says_the_limit() {
    let keys = keys();
    let w = warrant(&keys, NOW - 120 * 86_400, NOW, NOW - 60, NOW + 86_400);
    let verified = verify_warrant(&sign(&keys, &w), &keys.registry).unwrap();
    let refusal = check_warrant(
        verified,
        NOW,
        &Limits::new(MAX_DAYS, 10),
        &keys.relay.verifying_key(),
    )
    .unwrap_err();
    assert!(
        refusal
            .to_string()
            .contains("window 120 days exceeds this relay's maximum of 90"),
        "{refusal}"
    );
}

#[test]
fn unregistered_party_forgeries_are_unverifiable() {
    let keys = keys();
    let w = warrant(&keys, NOW - 86_400, NOW, NOW - 60, NOW + 86_400);
    let mut forged = sign(&keys, &w);
    let mut signature = forged.signature.to_vec();
    signature[0] ^= 1;
    forged.signature = signature.into();
    let refusal = verify_warrant(&forged, &keys.registry).unwrap_err();
    assert_eq!(refusal, Refusal::BadSignature);
    assert!(refusal.is_unverifiable());

    let mut stranger = w.clone();
    stranger.authority = "nobody".into();
    let refusal = verify_warrant(&sign(&keys, &stranger), &keys.registry).unwrap_err();
    assert_eq!(refusal, Refusal::UnregisteredAuthority);

    let garbage = v1::SignedWarrant {
        warrant: vec![0xff; 40].into(),
        signature: vec![0; 64].into(),
    };
    assert!(
        verify_warrant(&garbage, &keys.registry)
            .unwrap_err()
            .is_unverifiable()
    );
}
