//! Drawing the chat client: the conversation list, the open conversation, the
//! input box and the status bar. Pure: state in, a frame out.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};

use super::app::{App, Connection, ConvKey, Delivery, HELP, View};

const SECRET: Color = Color::Magenta;

fn clock(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
        .unwrap_or_else(|_| "--:--".into())
}

pub fn draw(frame: &mut Frame, app: &App) {
    let [main, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let [list, chat] =
        Layout::horizontal([Constraint::Length(24), Constraint::Min(20)]).areas(main);
    let input_height = (app.input.lines().count().max(1) + usize::from(app.input.ends_with('\n')))
        .min(6) as u16
        + 2;
    let [messages, input] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(input_height)]).areas(chat);
    draw_list(frame, app, list);
    draw_messages(frame, app, messages);
    draw_input(frame, app, input);
    draw_status(frame, app, status);
    match &app.view {
        View::Chat => {}
        View::Help => draw_overlay(frame, main, "help (Esc closes)", HELP),
        View::Text { title, text } => draw_overlay(frame, main, title, text),
    }
}

fn draw_list(frame: &mut Frame, app: &App, area: Rect) {
    let items: Vec<ListItem> = app
        .sorted()
        .iter()
        .map(|c| {
            let style = match c.key {
                ConvKey::Secret(_) => Style::default().fg(SECRET),
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
    let mut state = ListState::default().with_selected((!items.is_empty()).then_some(app.selected));
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title("chats"))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_messages(frame: &mut Frame, app: &App, area: Rect) {
    let Some(conv) = app.open_conversation_ref() else {
        let hint = Paragraph::new("Choose a chat with Up/Down and Enter, or start one with /secret USER.\n/help lists everything.")
            .block(Block::default().borders(Borders::ALL).title("sotto"))
            .wrap(Wrap { trim: false });
        frame.render_widget(hint, area);
        return;
    };
    let mut lines: Vec<Line> = Vec::new();
    for l in &conv.lines {
        let mark = match l.delivery {
            Delivery::Pending => " …",
            Delivery::Sent => " ✓",
            Delivery::Failed => " ✗ not sent",
            Delivery::Received => "",
        };
        let hit = app
            .search
            .as_ref()
            .is_some_and(|s| l.text.contains(s.as_str()));
        let text_style = if hit {
            Style::default().bg(Color::Yellow).fg(Color::Black)
        } else {
            Style::default()
        };
        let who_style = if l.from == app.me {
            Style::default().fg(Color::Green)
        } else {
            Style::default()
                .fg(Color::Blue)
                .add_modifier(Modifier::BOLD)
        };
        for (i, part) in l.text.split('\n').enumerate() {
            let mut spans = Vec::new();
            if i == 0 {
                spans.push(Span::styled(
                    format!("{} ", clock(l.sent_at)),
                    Style::default().fg(Color::DarkGray),
                ));
                spans.push(Span::styled(format!("{}: ", l.from), who_style));
            } else {
                spans.push(Span::raw("      "));
            }
            spans.push(Span::styled(part.to_owned(), text_style));
            if i == 0 {
                spans.push(Span::styled(mark, Style::default().fg(Color::DarkGray)));
            }
            lines.push(Line::from(spans));
        }
    }
    let visible = area.height.saturating_sub(2) as usize;
    let max_scroll = lines.len().saturating_sub(visible);
    let scroll = app.scroll.min(max_scroll);
    let top = lines.len().saturating_sub(visible + scroll);
    let shown: Vec<Line> = lines.into_iter().skip(top).take(visible).collect();
    let mut title = conv.key.title();
    if conv.key.is_secret() {
        title.push_str(" · end-to-end encrypted");
    }
    if scroll > 0 {
        title.push_str(&format!(" · ↑{scroll}"));
    }
    let style = if conv.key.is_secret() {
        Style::default().fg(SECRET)
    } else {
        Style::default()
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .border_style(style);
    frame.render_widget(Paragraph::new(shown).block(block), area);
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let title = match &app.open {
        Some(ConvKey::Secret(u)) => {
            let timer = app
                .open_conversation_ref()
                .and_then(|c| c.timer)
                .map(|s| format!(" · disappears after {s}s"))
                .unwrap_or_default();
            format!("secret message to {u}{timer}")
        }
        Some(key) => format!("message to {}", key.title()),
        None => "command (/help)".into(),
    };
    let mut text = app.input.clone();
    text.push('▏');
    let input = Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(input, area);
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
        Connection::Offline { retry_in_secs } => (
            Span::styled("● ", Style::default().fg(Color::Red)),
            format!("relay unreachable, retrying in {retry_in_secs}s"),
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
                Some(s) => format!("🔒 secret · timer {s}s"),
                None => "🔒 secret".to_owned(),
            }
        }
        Some(_) => "normal".to_owned(),
        None => String::new(),
    };
    let mode = if mode.is_empty() {
        mode
    } else {
        format!("{mode} │ ")
    };
    let line = Line::from(vec![
        dot,
        Span::raw(format!("{state} │ {} │ relay {short} │ {mode}", app.me)),
        Span::styled(
            app.status.clone(),
            Style::default().add_modifier(Modifier::ITALIC),
        ),
    ]);
    frame.render_widget(
        Paragraph::new(line).style(Style::default().bg(Color::Black)),
        area,
    );
}

fn draw_overlay(frame: &mut Frame, area: Rect, title: &str, text: &str) {
    let width = area.width.saturating_sub(4).min(76);
    let height = (text.lines().count() as u16 + 2).min(area.height.saturating_sub(2));
    let rect = Rect {
        x: area.x + (area.width.saturating_sub(width)) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text.to_owned())
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title.to_owned()),
            )
            .wrap(Wrap { trim: false }),
        rect,
    );
}
