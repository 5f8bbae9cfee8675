//! A conversation as rows on the screen: each message a header row (time,
//! with the date when it is not from today; sender; the first words) and
//! its further rows indented under it, wrapped to the width by
//! [`super::wrap`]. The app uses the rows to scroll and to jump to search
//! hits; the view draws them.
//!
//! Invariant: only a message's first row starts at the left edge, so no
//! text can make a row that looks like another message's header.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use super::app::{App, ChatLine, Conversation, Delivery};
use super::wrap::{displayable, width, wrap};

/// How far a message's further rows are indented.
pub const INDENT: usize = 6;

/// One row of the transcript, and the message (its index) it belongs to.
pub struct Row {
    pub line: Line<'static>,
    pub message: usize,
}

/// The time of a message in `zone` (the user's): `09:41` today,
/// `2026-11-29 09:41` another day.
pub fn stamp(ms: i64, now_ms: i64, zone: &jiff::tz::TimeZone) -> String {
    let at = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .ok()
            .map(|t| t.to_zoned(zone.clone()))
    };
    match (at(ms), at(now_ms)) {
        (Some(t), Some(now)) if t.date() == now.date() => t.strftime("%H:%M").to_string(),
        (Some(t), _) => t.strftime("%Y-%m-%d %H:%M").to_string(),
        (None, _) => "--:--".into(),
    }
}

fn mark(line: &ChatLine) -> &'static str {
    match line.delivery {
        Delivery::Pending => " …",
        Delivery::Sent => " ✓",
        Delivery::Delivered => " ✓✓",
        Delivery::Failed => " ✗",
        Delivery::Received => "",
    }
}

/// The rows of `conv` at `width` columns.
pub fn rows(app: &App, conv: &Conversation, width_cols: usize) -> Vec<Row> {
    let term = app.search.as_ref().map(|s| s.term.to_lowercase());
    let current = app.current_hit();
    let mut rows = Vec::new();
    for (index, line) in conv.lines.iter().enumerate() {
        let hit = term
            .as_deref()
            .is_some_and(|t| line.text.to_lowercase().contains(t));
        let text_style = match (hit, current == Some(index)) {
            (true, true) => Style::default()
                .bg(Color::Yellow)
                .fg(Color::Black)
                .add_modifier(Modifier::BOLD),
            (true, false) => Style::default().fg(Color::Yellow),
            _ => Style::default(),
        };
        let who_style = if line.from == app.me {
            Style::default().fg(Color::Green)
        } else {
            Style::default()
                .fg(Color::Blue)
                .add_modifier(Modifier::BOLD)
        };
        let time = format!("{} ", stamp(line.sent_at, app.now_ms, &app.zone));
        let from = format!("{}: ", displayable(&line.from));
        let mark = mark(line);
        let header = width(&time) + width(&from);
        // Every row keeps room for the mark, which follows the last one.
        let room = |used: usize| width_cols.saturating_sub(used + width(mark)).max(1);
        let mut texts: Vec<String> = Vec::new();
        for (i, part) in line.text.split('\n').enumerate() {
            let first = if i == 0 { room(header) } else { room(INDENT) };
            texts.extend(wrap(&displayable(part), first, room(INDENT)));
        }
        let last = texts.len().saturating_sub(1);
        for (i, text) in texts.into_iter().enumerate() {
            let mut spans = if i == 0 {
                vec![
                    Span::styled(time.clone(), Style::default().fg(Color::DarkGray)),
                    Span::styled(from.clone(), who_style),
                ]
            } else {
                vec![Span::raw(" ".repeat(INDENT))]
            };
            spans.push(Span::styled(text, text_style));
            if i == last && !mark.is_empty() {
                let style = match line.delivery {
                    Delivery::Failed => Style::default().fg(Color::Red),
                    _ => Style::default().fg(Color::DarkGray),
                };
                spans.push(Span::styled(mark, style));
            }
            rows.push(Row {
                line: Line::from(spans),
                message: index,
            });
        }
        if let Some(reason) = &line.failure {
            let text = format!("not sent: {}", displayable(reason));
            for part in wrap(&text, room(INDENT), room(INDENT)) {
                rows.push(Row {
                    line: Line::from(vec![
                        Span::raw(" ".repeat(INDENT)),
                        Span::styled(part, Style::default().fg(Color::Red)),
                    ]),
                    message: index,
                });
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    use jiff::tz::{Offset, TimeZone};

    #[test]
    fn a_message_from_another_day_shows_its_date() {
        let now = 1_795_856_400_000; // 2026-11-28 09:00 UTC
        let utc = TimeZone::UTC;
        assert_eq!(stamp(now + 60_000, now, &utc), "09:01");
        assert_eq!(stamp(now - 86_400_000, now, &utc), "2026-11-27 09:00");
    }

    #[test]
    fn times_and_days_are_the_users_own() {
        let now = 1_795_856_400_000; // 2026-11-28 09:00 UTC, 14:30 in Kolkata
        let kolkata = TimeZone::fixed(Offset::from_seconds(5 * 3600 + 1800).unwrap());
        assert_eq!(stamp(now, now, &kolkata), "14:30");
        // 2026-11-27 20:00 UTC is already the 28th in Kolkata: today, no date.
        let evening = now - 13 * 3_600_000;
        assert_eq!(stamp(evening, now, &TimeZone::UTC), "2026-11-27 20:00");
        assert_eq!(stamp(evening, now, &kolkata), "01:30");
        // West of Greenwich the same moment is the day before.
        let new_york = TimeZone::fixed(Offset::from_seconds(-5 * 3600).unwrap());
        assert_eq!(
            stamp(now - 10 * 3_600_000, now, &new_york),
            "2026-11-27 18:00"
        );
    }
}
