//! Writing a warrant from what the investigator typed: every field checked
//! here, with a sentence naming the flag, so a mistake shows up now rather
//! than as a relay's refusal later. What a relay may still refuse (a window
//! over its limit, an expiry already past) is a warning, not an error: the
//! relay's limits are its operator's to choose.

use ed25519_dalek::VerifyingKey;
use sotto_proto::v1;
use sotto_warrant::check::MAX_FIELD;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::InvestigatorError;
use crate::keys::InvestigatorKeys;

/// The longest window relays allow unless their operator chose otherwise
/// (`max_window_days` in `relay.toml`).
pub const DEFAULT_MAX_WINDOW_DAYS: i64 = 90;
const DAY_SECS: i64 = 86_400;

/// What `sotto-warrant issue` was given, as typed.
#[derive(Debug, Clone, Copy)]
pub struct IssueArgs<'a> {
    pub relay_key: &'a str,
    pub id: &'a str,
    pub case: &'a str,
    pub targets: &'a [String],
    pub from: &'a str,
    pub until: &'a str,
    pub expires: &'a str,
    pub not_before: Option<&'a str>,
    pub legal_basis: &'a str,
    pub approver: Option<&'a str>,
    /// When the people disclosed are told (RFC 3339); `None` for the relay's default.
    pub notify_after: Option<&'a str>,
}

/// A warrant ready to sign, and what the investigator should know about it.
#[derive(Debug, Clone)]
pub struct Drafted {
    pub warrant: v1::Warrant,
    pub warnings: Vec<String>,
}

fn bad(why: impl Into<String>) -> InvestigatorError {
    InvestigatorError::Input(why.into())
}

/// Parses the relay's disclosure key (`--relay-key`): the 64 hex digits of
/// the `disclosure key:` line a relay prints. A certificate fingerprint is the
/// likely mix-up, and is named as such.
pub fn parse_relay_key(text: &str) -> Result<VerifyingKey, InvestigatorError> {
    let text = text.trim();
    if text.starts_with("sha256:") {
        return Err(bad(
            "--relay-key wants the relay's disclosure key (the `disclosure key:` line \
             `sotto-relay serve` prints, 64 hex digits), but this is its certificate \
             fingerprint (`sha256:...`), which belongs to --fingerprint when you submit",
        ));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| {
        bad("--relay-key is the relay's disclosure key: 64 hex digits, \
             from the `disclosure key:` line `sotto-relay serve` prints")
    })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| {
        bad("--relay-key is not an Ed25519 public key: copy the relay's `disclosure key:` line")
    })
}

/// `text` (RFC 3339) as seconds since the epoch; the error names `--flag`.
pub fn seconds(text: &str, flag: &str) -> Result<i64, InvestigatorError> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| {
            bad(format!(
                "--{flag} {:?} is not an RFC 3339 time (like 2026-11-30T12:00:00Z)",
                text.chars().take(64).collect::<String>()
            ))
        })
}

fn text_field(value: &str, flag: &str, required: bool) -> Result<String, InvestigatorError> {
    if required && value.trim().is_empty() {
        return Err(bad(format!("--{flag} may not be empty")));
    }
    if value.len() > MAX_FIELD {
        return Err(bad(format!("--{flag} is longer than {MAX_FIELD} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!(
            "--{flag} holds a control character (a newline, a tab, an escape); write it on one line"
        )));
    }
    Ok(value.to_owned())
}

/// Checks what was typed and makes the warrant `keys` will sign, at `now_secs`.
pub fn draft(
    keys: &InvestigatorKeys,
    args: IssueArgs<'_>,
    now_secs: i64,
) -> Result<Drafted, InvestigatorError> {
    let relay_key = parse_relay_key(args.relay_key)?;
    let id = text_field(args.id, "id", true)?;
    let case_reference = text_field(args.case, "case", true)?;
    let legal_basis = text_field(args.legal_basis, "legal-basis", true)?;
    let approver = match args.approver {
        Some(a) => text_field(a, "approver", true)?,
        None => keys.name.clone(),
    };
    if args.targets.is_empty() {
        return Err(bad("name at least one --target"));
    }
    for target in args.targets {
        sotto_proto::names::validate(target).map_err(|e| bad(format!("--target: {e}")))?;
    }
    let window_from = seconds(args.from, "from")?;
    let window_until = seconds(args.until, "until")?;
    let expires = seconds(args.expires, "expires")?;
    let not_before = match args.not_before {
        Some(t) => {
            let not_before = seconds(t, "not-before")?;
            if expires <= not_before {
                return Err(bad("--expires must be after --not-before"));
            }
            not_before
        }
        None => now_secs,
    };
    if window_until <= window_from {
        return Err(bad("--until must be after --from"));
    }
    let notify_after = match args.notify_after {
        Some(t) => {
            let at = seconds(t, "notify-after")?;
            if at < window_until {
                return Err(bad(
                    "--notify-after cannot come before --until: the people are told of a \
                     window once it has ended",
                ));
            }
            at
        }
        None => 0,
    };

    let mut warnings = Vec::new();
    if expires <= now_secs {
        warnings.push(
            "the warrant has expired already (--expires is in the past): a relay will refuse it"
                .to_owned(),
        );
    }
    let window_secs = window_until.saturating_sub(window_from);
    if window_secs > DEFAULT_MAX_WINDOW_DAYS * DAY_SECS {
        let days = (window_secs + DAY_SECS - 1) / DAY_SECS;
        warnings.push(format!(
            "the window from --from to --until is {days} days, over the {DEFAULT_MAX_WINDOW_DAYS} \
             days relays allow by default: the relay may refuse it (window_too_long)"
        ));
    }
    let warrant = v1::Warrant {
        id,
        case_reference,
        authority: keys.name.clone(),
        legal_basis,
        approver,
        targets: args.targets.to_vec(),
        window_from,
        window_until,
        not_before,
        expires,
        delivery_key: keys.delivery_public().to_vec().into(),
        relay_key: relay_key.to_bytes().to_vec().into(),
        notify_after,
    };
    Ok(Drafted { warrant, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000; // 2026-09-21

    fn relay_key() -> String {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        hex::encode(key.verifying_key().as_bytes())
    }

    fn args<'a>(relay_key: &'a str, targets: &'a [String]) -> IssueArgs<'a> {
        IssueArgs {
            relay_key,
            id: "W-2026-001",
            case: "CASE-7",
            targets,
            from: "2026-09-01T00:00:00Z",
            until: "2026-09-30T00:00:00Z",
            expires: "2026-12-31T00:00:00Z",
            not_before: None,
            legal_basis: "court order 12/2026",
            approver: None,
            notify_after: None,
        }
    }

    fn keys() -> (tempfile::TempDir, InvestigatorKeys) {
        let dir = tempfile::tempdir().unwrap();
        let keys = InvestigatorKeys::generate(dir.path(), "chief").unwrap();
        (dir, keys)
    }

    #[test]
    fn a_warrant_names_the_relay_and_the_delivery_key() {
        let (_dir, keys) = keys();
        let targets = vec!["alice".to_owned()];
        let key = relay_key();
        let drafted = draft(&keys, args(&key, &targets), NOW).unwrap();
        assert!(drafted.warnings.is_empty(), "{:?}", drafted.warnings);
        let w = drafted.warrant;
        assert_eq!(hex::encode(&w.relay_key), key);
        assert_eq!(w.delivery_key.as_ref(), keys.delivery_public());
        assert_eq!(
            (w.authority.as_str(), w.approver.as_str()),
            ("chief", "chief")
        );
        assert_eq!(w.not_before, NOW);
        assert_eq!(w.window_until - w.window_from, 29 * DAY_SECS);
    }

    #[test]
    fn a_fingerprint_given_as_relay_key_is_explained() {
        let (_dir, keys) = keys();
        let targets = vec!["alice".to_owned()];
        let fingerprint = format!("sha256:{}", "ab".repeat(32));
        let err = draft(&keys, args(&fingerprint, &targets), NOW).unwrap_err();
        let said = err.to_string();
        for words in [
            "certificate fingerprint",
            "--fingerprint",
            "disclosure key:",
        ] {
            assert!(said.contains(words), "{said}");
        }
        let err = parse_relay_key("abcd").unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn bad_input_is_refused_with_its_flag() {
        let (_dir, keys) = keys();
        let key = relay_key();
        let good = vec!["alice".to_owned()];
        let cases: Vec<(IssueArgs, &str)> = vec![
            (
                IssueArgs {
                    until: "2026-08-01T00:00:00Z",
                    ..args(&key, &good)
                },
                "--until must be after --from",
            ),
            (
                IssueArgs {
                    notify_after: Some("2026-09-29T23:59:59Z"),
                    ..args(&key, &good)
                },
                "--notify-after cannot come before --until",
            ),
            (
                IssueArgs {
                    notify_after: Some("in a year"),
                    ..args(&key, &good)
                },
                "--notify-after",
            ),
            (
                IssueArgs {
                    from: "yesterday",
                    ..args(&key, &good)
                },
                "--from",
            ),
            (
                IssueArgs {
                    id: "W-1\nforged",
                    ..args(&key, &good)
                },
                "--id",
            ),
            (
                IssueArgs {
                    not_before: Some("2027-01-01T00:00:00Z"),
                    ..args(&key, &good)
                },
                "--expires must be after --not-before",
            ),
        ];
        for (bad_args, flag) in cases {
            let err = draft(&keys, bad_args, NOW).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
        for target in ["Alice", "al ice", "bob\u{1b}[2J", "x"] {
            let targets = vec![target.to_owned()];
            let err = draft(&keys, args(&key, &targets), NOW).unwrap_err();
            assert!(err.to_string().contains("--target"), "{err}");
        }
    }

    #[test]
    fn what_a_relay_may_refuse_is_a_warning() {
        let (_dir, keys) = keys();
        let key = relay_key();
        let targets = vec!["alice".to_owned()];
        let long = draft(
            &keys,
            IssueArgs {
                from: "2026-01-01T00:00:00Z",
                ..args(&key, &targets)
            },
            NOW,
        )
        .unwrap();
        assert_eq!(long.warnings.len(), 1);
        assert!(long.warnings[0].contains("272 days"), "{:?}", long.warnings);
        let expired = draft(
            &keys,
            IssueArgs {
                expires: "2026-09-02T00:00:00Z",
                ..args(&key, &targets)
            },
            NOW,
        )
        .unwrap();
        assert!(
            expired.warnings[0].contains("expired"),
            "{:?}",
            expired.warnings
        );
    }
}
