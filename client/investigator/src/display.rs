//! Untrusted text on the investigator's terminal. A warrant file, a message in
//! a disclosure and a relay's error sentence may hold anything: newlines that
//! forge extra lines, ANSI escapes that rewrite the screen, bidi controls that
//! reorder what is shown. Every such string is printed through [`printable`]
//! (text) or [`to_json`] (JSON), which escape those characters and leave the
//! rest as it is (see [`sotto_proto::printable`]); a message body's further
//! lines are shown indented under its record ([`sotto_proto::layout::entry`]).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use sotto_proto::printable::{is_unsafe, printable, printable_list, to_json};

/// The width of the terminal standard output is, if it is one.
#[cfg(unix)]
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&columns| columns > 0)
}

#[cfg(not(unix))]
pub fn terminal_width() -> Option<usize> {
    None
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
    fn times_print_as_rfc3339_or_as_numbers() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_secs(i64::MAX), i64::MAX.to_string());
    }
}
