//! What `show` and `open` print: a warrant and a disclosure, readable or as
//! one JSON object. Everything in them is untrusted (a warrant file from
//! elsewhere, message text users wrote), so every string goes through
//! [`crate::display`].

use serde::Serialize;
use sotto_proto::v1;

use crate::display::{printable, printable_list, rfc3339_ms, rfc3339_secs, to_json};
use crate::keys::OpenedDisclosure;
use sotto_proto::layout;

/// A warrant as `sotto-warrant show --json` prints it.
#[derive(Debug, Serialize)]
pub struct WarrantView<'a> {
    pub id: &'a str,
    pub case: &'a str,
    pub authority: &'a str,
    pub approver: &'a str,
    pub legal_basis: &'a str,
    pub targets: &'a [String],
    pub window_from: String,
    pub window_until: String,
    pub not_before: String,
    pub expires: String,
    /// When the people disclosed are told; empty for the relay's default delay.
    pub notify_after: String,
    pub relay_key: String,
    pub delivery_key: String,
}

impl<'a> WarrantView<'a> {
    pub fn new(w: &'a v1::Warrant) -> Self {
        WarrantView {
            id: &w.id,
            case: &w.case_reference,
            authority: &w.authority,
            approver: &w.approver,
            legal_basis: &w.legal_basis,
            targets: &w.targets,
            window_from: rfc3339_secs(w.window_from),
            window_until: rfc3339_secs(w.window_until),
            not_before: rfc3339_secs(w.not_before),
            expires: rfc3339_secs(w.expires),
            notify_after: match w.notify_after {
                0 => String::new(),
                at => rfc3339_secs(at),
            },
            relay_key: hex::encode(&w.relay_key),
            delivery_key: hex::encode(&w.delivery_key),
        }
    }

    /// One line a field, every string escaped.
    pub fn text(&self) -> String {
        let rows = [
            ("warrant", printable(self.id).into_owned()),
            ("case", printable(self.case).into_owned()),
            ("authority", printable(self.authority).into_owned()),
            ("approver", printable(self.approver).into_owned()),
            ("legal basis", printable(self.legal_basis).into_owned()),
            ("targets", printable_list(self.targets)),
            (
                "window",
                format!("{} until {}", self.window_from, self.window_until),
            ),
            ("not before", self.not_before.clone()),
            ("expires", self.expires.clone()),
            (
                "notice",
                if self.notify_after.is_empty() {
                    "the relay's default delay after the window".to_owned()
                } else {
                    format!("not before {}", self.notify_after)
                },
            ),
            ("relay key", or_none(&self.relay_key)),
            ("delivery key", or_none(&self.delivery_key)),
        ];
        rows.iter()
            .map(|(name, value)| format!("{name:<13}{value}\n"))
            .collect()
    }

    pub fn json(&self) -> serde_json::Result<String> {
        to_json(self)
    }
}

fn or_none(hex: &str) -> String {
    if hex.is_empty() {
        "(none)".into()
    } else {
        hex.into()
    }
}

#[derive(Serialize)]
struct RecordView<'a> {
    conversation: &'a str,
    from: &'a str,
    participants: &'a [String],
    sent_at: String,
    text: &'a str,
}

#[derive(Serialize)]
struct DisclosureView<'a> {
    warrant_id: &'a str,
    case: &'a str,
    relay_key: String,
    generated_at: String,
    targets: &'a [String],
    records: Vec<RecordView<'a>>,
    pseudonyms: &'a [String],
}

/// An opened disclosure as one JSON object.
pub fn disclosure_json(opened: &OpenedDisclosure) -> serde_json::Result<String> {
    let d = &opened.disclosure;
    to_json(&DisclosureView {
        warrant_id: &d.warrant_id,
        case: &d.case_reference,
        relay_key: hex::encode(opened.relay_key.as_bytes()),
        generated_at: rfc3339_ms(d.generated_at),
        targets: &d.targets,
        records: d
            .records
            .iter()
            .map(|r| RecordView {
                conversation: &r.conversation,
                from: &r.from,
                participants: &r.participants,
                sent_at: rfc3339_ms(r.sent_at),
                text: &r.text,
            })
            .collect(),
        pseudonyms: &d.pseudonyms,
    })
}

/// An opened disclosure for a person: a header, then a line a record (its
/// text's further lines indented under it; wrapped, indented, at the
/// terminal's `width` when printed to one: see [`layout::entry`]).
pub fn disclosure_text(opened: &OpenedDisclosure, width: Option<usize>) -> String {
    let d = &opened.disclosure;
    let mut out = format!(
        "warrant {}  case {}\nrelay key {}  generated {}\ntargets: {}\n{} records, {} pseudonyms\n\n",
        printable(&d.warrant_id),
        printable(&d.case_reference),
        hex::encode(opened.relay_key.as_bytes()),
        rfc3339_ms(d.generated_at),
        printable_list(&d.targets),
        d.records.len(),
        d.pseudonyms.len()
    );
    for r in &d.records {
        let header = format!(
            "{} {} [{}] {}: ",
            rfc3339_ms(r.sent_at),
            printable(&r.conversation),
            printable_list(&r.participants),
            printable(&r.from),
        );
        out.push_str(&layout::entry(&header, &r.text, width));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::is_unsafe;

    fn hostile_warrant() -> v1::Warrant {
        v1::Warrant {
            id: "W-1\nexpires      2099-01-01T00:00:00Z".into(),
            case_reference: "CASE\x1b[2J".into(),
            authority: "chief\u{202e}".into(),
            legal_basis: "court\r order".into(),
            approver: "judge\u{9b}31m".into(),
            targets: vec!["alice".into(), "bob\n".into()],
            window_from: 1_790_000_000,
            window_until: 1_790_086_400,
            not_before: 1_790_000_000,
            expires: 1_800_000_000,
            delivery_key: vec![1; 32].into(),
            relay_key: vec![2; 32].into(),
            notify_after: 0,
        }
    }

    #[test]
    fn show_prints_each_field_on_its_own_line_escaped() {
        let w = hostile_warrant();
        let text = WarrantView::new(&w).text();
        assert_eq!(text.lines().count(), 12, "{text}");
        assert!(
            text.contains("notice       the relay's default delay"),
            "{text}"
        );
        assert!(!text.replace('\n', "").chars().any(is_unsafe), "{text}");
        assert!(text.contains("warrant      W-1\\nexpires"), "{text}");
        assert!(text.contains("targets      alice, bob\\n"), "{text}");
        assert!(text.contains("window       2026-09-21T"), "{text}");
        assert!(text.contains(&format!("relay key    {}", "02".repeat(32))));
        assert!(text.contains(&format!("delivery key {}", "01".repeat(32))));
    }

    #[test]
    fn show_json_is_one_safe_object_with_the_exact_values() {
        let w = hostile_warrant();
        let json = WarrantView::new(&w).json().unwrap();
        assert!(
            !json.contains('\n') && !json.chars().any(is_unsafe),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["id"], w.id.as_str());
        assert_eq!(v["case"], w.case_reference.as_str());
        assert_eq!(v["targets"][1], "bob\n");
        assert_eq!(v["relay_key"], "02".repeat(32));
        assert_eq!(v["expires"], "2027-01-15T08:00:00Z");
    }

    #[test]
    fn records_in_a_disclosure_are_escaped() {
        let opened = OpenedDisclosure {
            disclosure: v1::Disclosure {
                warrant_id: "W-1".into(),
                case_reference: "CASE-7".into(),
                generated_at: 1_790_000_000_000,
                targets: vec!["alice".into()],
                records: vec![v1::DisclosedRecord {
                    conversation: "conv-1".into(),
                    from: "alice".into(),
                    participants: vec!["alice".into(), "anon-1".into()],
                    sent_at: 1_790_000_000_123,
                    text: "hi\n2026-09-21T00:00:00Z conv-1 [x] bob: forged\x1b]0;pwned\x07".into(),
                }],
                pseudonyms: vec!["anon-1".into()],
                ..Default::default()
            },
            relay_key: ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key(),
        };
        let text = disclosure_text(&opened, None);
        // The forged line is the record's second line, indented under it.
        assert_eq!(text.lines().count(), 7, "{text}");
        assert!(
            text.lines().any(
                |l| l == "    2026-09-21T00:00:00Z conv-1 [x] bob: forged\\u{1b}]0;pwned\\u{7}"
            ),
            "{text}"
        );
        assert!(!text.replace('\n', "").chars().any(is_unsafe), "{text}");
        let json = disclosure_json(&opened).unwrap();
        assert!(!json.chars().any(is_unsafe), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["records"][0]["text"],
            opened.disclosure.records[0].text.as_str()
        );
    }
}
