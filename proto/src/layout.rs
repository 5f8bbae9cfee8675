//! Message text laid out for a terminal: by display width (`unicode-width`),
//! never splitting a grapheme (an emoji with zero-width joiners, a letter
//! with its accents), breaking at spaces where it can; tabs expanded; every
//! character a terminal would act on shown escaped. The chat client draws
//! its transcript with it; `sotto sync` and `sotto-warrant open` print their
//! listings with [`entry`].
//!
//! Invariant: no row is wider than asked (but for a single grapheme wider
//! than the whole width), and no row holds an [`is_unsafe`] character.

use crate::printable::{CONTINUATION_INDENT, is_unsafe, message_lines, printable};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// The zero-width joiner that glues emoji into one glyph on some terminals.
const ZWJ: char = '\u{200d}';

/// The variation selector that asks for an emoji glyph (two columns on some
/// terminals, one on others).
const EMOJI_PRESENTATION: char = '\u{fe0f}';

/// Tab stops are this many columns apart.
pub const TAB_WIDTH: usize = 4;

/// Display width of `text` in terminal columns.
pub fn width(text: &str) -> usize {
    text.graphemes(true).map(grapheme_width).sum()
}

fn grapheme_width(g: &str) -> usize {
    g.width()
}

/// One line of a message (no `\n` in it) as it is shown: tabs expanded to
/// the next stop, controls and bidi overrides escaped (`\u{1b}`), emoji
/// joined by zero-width joiners shown side by side, U+FE0F left out.
pub fn displayable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut column = 0;
    for g in line.graphemes(true) {
        if g == "\t" {
            let pad = TAB_WIDTH - column % TAB_WIDTH;
            out.extend(std::iter::repeat_n(' ', pad));
            column += pad;
        } else if g.contains(ZWJ) || g.contains(EMOJI_PRESENTATION) {
            // Terminals disagree on how wide a joined sequence is (one glyph
            // or each part), and on whether U+FE0F widens a character: the
            // parts side by side, without it, are as wide everywhere.
            for part in g.split(ZWJ) {
                let part = part.replace(EMOJI_PRESENTATION, "");
                column += width(&part);
                out.push_str(&part);
            }
        } else if g.chars().any(|c| c == '\\' || is_unsafe(c)) {
            let shown = printable(g);
            column += width(&shown);
            out.push_str(&shown);
        } else {
            column += grapheme_width(g);
            out.push_str(g);
        }
    }
    out
}

/// `line` (already [`displayable`]) cut into rows: the first at most
/// `first` columns wide, the others at most `rest`. Breaks after a space
/// when the row has one, else between graphemes.
pub fn wrap(line: &str, first: usize, rest: usize) -> Vec<String> {
    let mut rows = Vec::new();
    let mut row: Vec<(&str, usize)> = Vec::new();
    let mut row_width = 0;
    for g in line.graphemes(true) {
        let w = grapheme_width(g);
        let limit = if rows.is_empty() { first } else { rest };
        if row_width + w > limit && !row.is_empty() && !is_space(g) {
            // After the last space of the row, if there is one.
            let cut = row
                .iter()
                .rposition(|(g, _)| is_space(g))
                .map(|at| at + 1)
                .filter(|&at| at < row.len())
                .unwrap_or(row.len());
            let carry = row.split_off(cut);
            rows.push(join(&row).trim_end().to_owned());
            row = carry;
            row_width = row.iter().map(|(_, w)| w).sum();
        }
        if is_space(g) && row_width + w > limit {
            // A space at the edge ends the row; it is not carried over.
            rows.push(join(&row).trim_end().to_owned());
            row.clear();
            row_width = 0;
            continue;
        }
        row.push((g, w));
        row_width += w;
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(join(&row).trim_end().to_owned());
    }
    rows
}

/// One message of a listing (`sync`, a disclosure): `header`, the text's
/// first line, then every further line on its own row after
/// [`CONTINUATION_INDENT`], all escaped ([`message_lines`]). With the
/// terminal's `width`, lines are also wrapped here, indented: the terminal's
/// own wrapping would start a row at the left edge, where a padded message
/// could line up a forged header. `header` is trusted (already escaped).
pub fn entry(header: &str, text: &str, width: Option<usize>) -> String {
    let indent = CONTINUATION_INDENT.len();
    let mut rows = Vec::new();
    for (i, line) in message_lines(text).iter().enumerate() {
        match width {
            Some(width) => {
                let used = if i == 0 { self::width(header) } else { indent };
                let first = width.saturating_sub(used).max(1);
                let rest = width.saturating_sub(indent).max(1);
                rows.extend(wrap(line, first, rest));
            }
            None => rows.push(line.to_string()),
        }
    }
    let mut out = header.to_owned();
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(CONTINUATION_INDENT);
        }
        out.push_str(row);
    }
    out
}

fn is_space(g: &str) -> bool {
    g.chars().all(char::is_whitespace)
}

fn join(row: &[(&str, usize)]) -> String {
    row.iter().map(|(g, _)| *g).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_wrap_at_spaces_and_rows_fit() {
        let rows = wrap("the quick brown fox jumps over the lazy dog", 12, 10);
        assert_eq!(
            rows,
            ["the quick", "brown fox", "jumps over", "the lazy", "dog"]
        );
        assert!(rows.iter().all(|r| width(r) <= 12));
    }

    #[test]
    fn a_long_word_is_cut_between_graphemes() {
        assert_eq!(wrap("abcdefghij", 4, 4), ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn wide_and_joined_graphemes_are_never_split() {
        // A family emoji (ZWJ sequence) is one grapheme, two columns wide.
        let family = "👩\u{200d}👩\u{200d}👧";
        let line = format!("{family}{family}{family}東京東京");
        let rows = wrap(&line, 5, 5);
        assert_eq!(
            rows,
            [
                format!("{family}{family}"),
                format!("{family}東"),
                "京東".to_owned(),
                "京".to_owned()
            ]
        );
        assert!(rows.iter().all(|r| width(r) <= 5), "{rows:?}");
        // An accent stays on its letter.
        assert_eq!(
            wrap("e\u{301}e\u{301}e\u{301}", 2, 2),
            ["e\u{301}e\u{301}", "e\u{301}"]
        );
    }

    #[test]
    fn tabs_expand_to_stops_and_controls_are_escaped() {
        assert_eq!(displayable("a\tbc\td"), "a   bc  d");
        assert_eq!(
            displayable("\x1b[31mred\x07\r\u{202e}x"),
            "\\u{1b}[31mred\\u{7}\\r\\u{202e}x"
        );
        assert!(!displayable("\u{9b}\u{85}\u{2028}").chars().any(is_unsafe));
    }

    #[test]
    fn joined_emoji_are_shown_side_by_side_so_every_terminal_agrees_on_their_width() {
        let family = "👩\u{200d}👩\u{200d}👧";
        assert_eq!(displayable(family), "👩👩👧");
        assert_eq!(width(&displayable(family)), 6);
        // A heart with the emoji selector is one column or two, by terminal.
        assert_eq!(displayable("❤\u{fe0f}!"), "❤!");
        assert_eq!(width(&displayable("❤\u{fe0f}!")), 2);
    }

    #[test]
    fn a_line_padded_to_the_terminal_edge_cannot_start_a_row_at_the_left() {
        // Padded so that, unwrapped, the forged header would begin exactly
        // where an 80-column terminal starts its next row.
        let header = "2026-11-28T09:00:00Z mallory: ";
        let forged = "2026-11-28T09:01:00Z alice: wire the money";
        let text = format!("hi{}{forged}", " ".repeat(80 - header.len() - 2));
        let shown = entry(header, &text, Some(80));
        assert!(shown.lines().all(|l| width(l) <= 80), "{shown}");
        assert_eq!(
            shown.lines().filter(|l| !l.starts_with("    ")).count(),
            1,
            "{shown}"
        );
        // Without a terminal nothing is wrapped: a pipe gets the line whole.
        assert_eq!(entry(header, &text, None).lines().count(), 1);
        // Further lines are indented, escaped, wrapped or not.
        let two = entry(header, "a\n2026-11-28T09:01:00Z alice: x\x1b[2J", None);
        assert_eq!(
            two,
            format!("{header}a\n    2026-11-28T09:01:00Z alice: x\\u{{1b}}[2J")
        );
    }

    #[test]
    fn an_empty_line_is_one_empty_row() {
        assert_eq!(wrap("", 10, 10), [""]);
    }
}
