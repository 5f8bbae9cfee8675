//! Untrusted text on the investigator's terminal. A warrant file, a message in
//! a disclosure and a relay's error sentence may hold anything: newlines that
//! forge extra lines, ANSI escapes that rewrite the screen, bidi controls that
//! reorder what is shown. Every such string is printed through [`printable`]
//! (text) or [`to_json`] (JSON), which escape those characters and leave the
//! rest as it is.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// True for characters a terminal may act on rather than show: controls (C0,
/// DEL, C1), the bidi embedding, override and isolate controls, and the line
/// and paragraph separators.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` with every [`is_unsafe`] character escaped the way Rust's
/// `escape_debug` writes it (`\n`, `\u{1b}`), and `\` doubled so an escape
/// can never be forged by typing one.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Several untrusted strings, each made [`printable`], joined by `", "`.
pub fn printable_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| printable(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON formatter that also writes [`is_unsafe`] characters as `\uXXXX`
/// escapes (serde_json escapes only C0): the value is unchanged for any JSON
/// reader, and none of them reaches a terminal raw.
struct SafeJson;

impl serde_json::ser::Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| is_unsafe(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            // Every unsafe character lies in the Basic Multilingual Plane.
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// `value` as one line of JSON, safe to print.
pub fn to_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out, SafeJson,
    ))?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// Seconds since the epoch (a warrant's times) as RFC 3339, or the number
/// itself when no calendar date has it.
pub fn rfc3339_secs(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// Milliseconds since the epoch (a disclosure's times) as RFC 3339.
pub fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched() {
        let text = "court order 12/2026 — Ärger, 東京 🙂";
        assert!(matches!(printable(text), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_escapes_and_bidi_never_reach_the_terminal_raw() {
        let hostile = "W-1\nforged: line\r\x1b[2J\u{9b}31m\u{202e}gpj.exe\u{2066}\\n\u{7f}";
        let shown = printable(hostile);
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert_eq!(
            shown,
            "W-1\\nforged: line\\r\\u{1b}[2J\\u{9b}31m\\u{202e}gpj.exe\\u{2066}\\\\n\\u{7f}"
        );
    }

    #[test]
    fn json_escapes_the_same_and_keeps_the_value() {
        let hostile = "a\n\x1b[0m\u{9b}\u{202e}\u{2028}\u{7f}b 東京";
        let json = to_json(&serde_json::json!({ "text": hostile })).unwrap();
        assert!(!json.chars().any(is_unsafe), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["text"], hostile);
    }

    #[test]
    fn times_print_as_rfc3339_or_as_numbers() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_secs(i64::MAX), i64::MAX.to_string());
    }
}
