//! Drawing the chat client: the conversation list, the open conversation, the
//! input box and the status bar. Pure: state in, a frame out.
//!
//! The mode is never in doubt: a secret chat has a magenta double frame
//! round its messages and its input box, and 🔒 in both titles.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, BorderType, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap,
};

use super::app::{App, Connection, ConvKey, HELP, View};
use super::transcript;
use super::wrap::width;

const SECRET: Color = Color::Magenta;

/// Where each part of the screen goes.
pub struct Areas {
    /// Everything above the status bar (overlays cover it).
    pub main: Rect,
    pub list: Rect,
    pub messages: Rect,
    pub input: Rect,
    pub status: Rect,
}

/// Rows the input box shows at most (it scrolls past them).
const INPUT_ROWS: usize = 6;

pub fn layout(app: &App, area: Rect) -> Areas {
    let [main, status] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
    let [list, chat] =
        Layout::horizontal([Constraint::Length(24), Constraint::Min(20)]).areas(main);
    // Rows the input takes when wrapped, up to INPUT_ROWS.
    let inner = chat.width.saturating_sub(2).max(1) as usize;
    let mut rows = 0;
    for line in app.input.lines() {
        rows += width(line).div_ceil(inner).max(1);
        if rows >= INPUT_ROWS {
            break;
        }
    }
    let input_height = rows.clamp(1, INPUT_ROWS) as u16 + 2;
    let [messages, input] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(input_height)]).areas(chat);
    Areas {
        main,
        list,
        messages,
        input,
        status,
    }
}

pub fn draw(frame: &mut Frame, app: &App) {
    let areas = layout(app, frame.area());
    draw_list(frame, app, areas.list);
    draw_messages(frame, app, areas.messages);
    draw_input(frame, app, areas.input);
    draw_status(frame, app, areas.status);
    match &app.view {
        View::Chat => {}
        View::Help => draw_overlay(frame, areas.main, "help", HELP, app.help_scroll),
        View::Text { title, text } => draw_overlay(frame, areas.main, title, text, app.help_scroll),
    }
    if let Connection::CertificateMismatch {
        relay,
        pinned,
        presented,
    } = &app.connection
    {
        draw_mismatch(frame, areas.main, relay, pinned, presented);
    }
}

fn draw_list(frame: &mut Frame, app: &App, area: Rect) {
    let sorted = app.sorted();
    let items: Vec<ListItem> = sorted
        .iter()
        .map(|c| {
            let style = match c.key {
                ConvKey::Secret(_) | ConvKey::SecretGroup(_) => Style::default().fg(SECRET),
                ConvKey::Group(_) => Style::default().fg(Color::Cyan),
                ConvKey::Direct(_) => Style::default(),
            };
            let mut spans = vec![Span::styled(c.key.title(), style)];
            if c.unread > 0 {
                spans.push(Span::styled(
                    format!(" ({})", c.unread),
                    Style::default()
                        .add_modifier(Modifier::BOLD)
                        .fg(Color::Yellow),
                ));
            }
            if app.open.as_ref() == Some(&c.key) {
                spans.insert(0, Span::raw("▸ "));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let selected = app
        .selected
        .as_ref()
        .and_then(|key| sorted.iter().position(|c| &c.key == key));
    let mut state = ListState::default().with_selected(selected);
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title("chats"))
        .highlight_symbol("> ")
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    frame.render_stateful_widget(list, area, &mut state);
}

/// The frame of a chat's parts: magenta and double for a secret chat.
fn frame_of(secret: bool) -> Block<'static> {
    let block = Block::default().borders(Borders::ALL);
    if secret {
        block
            .border_type(BorderType::Double)
            .border_style(Style::default().fg(SECRET))
    } else {
        block
    }
}

fn draw_messages(frame: &mut Frame, app: &App, area: Rect) {
    let Some(conv) = app.open_conversation_ref() else {
        let hint = Paragraph::new(
            "Choose a chat with Tab and Enter, or open one with /chat USER or /secret USER.\n\
             /help lists everything.",
        )
        .block(Block::default().borders(Borders::ALL).title("sotto"))
        .wrap(Wrap { trim: false });
        frame.render_widget(hint, area);
        return;
    };
    let width = area.width.saturating_sub(2) as usize;
    let rows = transcript::rows(app, conv, width);
    let visible = area.height.saturating_sub(2) as usize;
    let max_scroll = rows.len().saturating_sub(visible);
    let scroll = app.scroll.min(max_scroll);
    let top = rows.len().saturating_sub(visible + scroll);
    let shown: Vec<Line> = rows
        .into_iter()
        .skip(top)
        .take(visible)
        .map(|r| r.line)
        .collect();
    let mut title = conv.key.title();
    if conv.key.is_secret() {
        title.push_str(" · end-to-end encrypted");
    } else {
        title.push_str(" · normal: the relay keeps it");
    }
    if scroll > 0 {
        title.push_str(&format!(" · ↑{scroll}"));
    }
    let block = frame_of(conv.key.is_secret()).title(title);
    frame.render_widget(Paragraph::new(shown).block(block), area);
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let (title, secret) = match &app.open {
        Some(ConvKey::Secret(u)) => {
            let timer = app
                .open_conversation_ref()
                .and_then(|c| c.timer)
                .map(|s| format!(" · disappears after {s}s"))
                .unwrap_or_default();
            (format!("🔒 secret message to {u}{timer}"), true)
        }
        Some(key) => (format!("message to {} (normal)", key.title()), false),
        None => ("command (/help)".into(), false),
    };
    let title = if app.search.is_some() && app.input.is_empty() {
        format!("{title} · search: n next, N previous, Esc ends")
    } else {
        title
    };
    let block = frame_of(secret).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    frame.render_widget(&app.input, inner);
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let (dot, state) = match &app.connection {
        Connection::Online => (
            Span::styled("● ", Style::default().fg(Color::Green)),
            "online".to_owned(),
        ),
        Connection::Connecting => (
            Span::styled("● ", Style::default().fg(Color::Yellow)),
            "connecting".to_owned(),
        ),
        Connection::Offline { retry_in_secs: 0 } => (
            Span::styled("● ", Style::default().fg(Color::Red)),
            "relay unreachable, retrying now".to_owned(),
        ),
        Connection::Offline { retry_in_secs } => (
            Span::styled("● ", Style::default().fg(Color::Red)),
            format!("relay unreachable, retrying in {retry_in_secs}s"),
        ),
        Connection::CertificateMismatch { .. } => (
            Span::styled("● ", Style::default().fg(Color::Red)),
            "certificate mismatch: not connecting".to_owned(),
        ),
    };
    let short = app
        .fingerprint
        .strip_prefix("sha256:")
        .map(|h| format!("sha256:{}…", &h[..h.len().min(8)]))
        .unwrap_or_default();
    let mode = match &app.open {
        Some(ConvKey::Secret(_)) => {
            let timer = app.open_conversation_ref().and_then(|c| c.timer);
            match timer {
                Some(s) => format!("🔒 secret · timer {s}s │ "),
                None => "🔒 secret │ ".to_owned(),
            }
        }
        Some(_) => "normal │ ".to_owned(),
        None => String::new(),
    };
    let status_style = if app.alert {
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else {
        Style::default().add_modifier(Modifier::ITALIC)
    };
    let line = Line::from(vec![
        dot,
        Span::raw(format!("{state} │ {} │ relay {short} │ {mode}", app.me)),
        Span::styled(app.status.clone(), status_style),
    ]);
    frame.render_widget(
        Paragraph::new(line).style(Style::default().bg(Color::Black)),
        area,
    );
}

/// A box in the middle of `area`, `rows` high at most. It spans the whole
/// width up to 80 columns, so it never cuts a wide character in two.
fn centered(area: Rect, rows: usize) -> Rect {
    let width = area.width.min(80);
    let height = (rows as u16 + 2).min(area.height.saturating_sub(2));
    Rect {
        x: area.x + (area.width.saturating_sub(width)) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    }
}

/// How far a page of `text` over `area` scrolls at most.
pub fn page_max_scroll(area: Rect, text: &str) -> usize {
    let total = text.lines().count();
    let visible = centered(area, total).height.saturating_sub(2) as usize;
    total.saturating_sub(visible)
}

fn draw_overlay(frame: &mut Frame, area: Rect, title: &str, text: &str, scroll: usize) {
    let total = text.lines().count();
    let rect = centered(area, total);
    let visible = rect.height.saturating_sub(2) as usize;
    let scroll = scroll.min(total.saturating_sub(visible));
    let title = if total > visible {
        format!(
            "{title} · lines {}–{} of {total} · ↑↓ PgUp PgDn scroll · Esc closes",
            scroll + 1,
            (scroll + visible).min(total)
        )
    } else {
        format!("{title} · Esc closes")
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text.to_owned())
            .block(Block::default().borders(Borders::ALL).title(title))
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        rect,
    );
}

fn draw_mismatch(frame: &mut Frame, area: Rect, relay: &str, pinned: &str, presented: &str) {
    let red = Style::default().fg(Color::Red);
    let bold = red.add_modifier(Modifier::BOLD);
    let lines = vec![
        Line::styled(
            format!("The relay at {relay} presented another certificate"),
            bold,
        ),
        Line::styled("than the one this profile pinned.", bold),
        Line::raw(""),
        Line::raw("pinned by this profile:"),
        Line::styled(format!("  {pinned}"), Style::default().fg(Color::Green)),
        Line::raw("presented by the relay now:"),
        Line::styled(format!("  {presented}"), red),
        Line::raw(""),
        Line::raw("It may be an impostor, or its operator replaced the certificate."),
        Line::raw("sotto stopped connecting: nothing is sent or received. Ask the"),
        Line::raw("operator for the relay's fingerprint over another channel."),
        Line::raw("Messages you type wait on this device. Ctrl-C quits."),
    ];
    let rect = centered(area, lines.len());
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Thick)
                .border_style(red)
                .title("certificate mismatch: not connected"),
        ),
        rect,
    );
}
