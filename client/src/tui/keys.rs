//! What each key does in the chat client: the chat list (Tab, Up/Down with
//! an empty input), the editor (ratatui-textarea: cursor, words, lines,
//! Ctrl-U/W/K), Ctrl-P/Ctrl-N through what was sent, scrolling, search hits,
//! the help's scrolling, and Enter (send, run a command, or open a chat).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::CursorMove;

use super::app::{App, Effect, View, editor};

impl App {
    pub(super) fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return vec![Effect::Quit];
        }
        if self.view != View::Chat {
            return self.overlay_key(key);
        }
        // Only Enter confirms going from a secret chat to a normal one.
        if key.code != KeyCode::Enter {
            self.confirm = None;
        }
        let empty = self.input.is_empty();
        match key.code {
            KeyCode::Esc => {
                if self.search.is_some() {
                    self.search = None;
                    self.say("search ended");
                } else if self.alert {
                    self.say("");
                } else {
                    self.open = None;
                    self.say("/help lists the commands");
                }
            }
            KeyCode::Enter if alt => self.input.insert_newline(),
            KeyCode::Enter => return self.submit(),
            KeyCode::Tab => self.move_selection(1, true),
            KeyCode::BackTab => self.move_selection(-1, true),
            KeyCode::Up if alt || empty => self.move_selection(-1, false),
            KeyCode::Down if alt || empty => self.move_selection(1, false),
            KeyCode::Up if self.input.cursor().0 == 0 => self.recall(-1),
            KeyCode::Down if self.input.cursor().0 + 1 == self.input.lines().len() => {
                self.recall(1)
            }
            KeyCode::Char('p') if ctrl => self.recall(-1),
            KeyCode::Char('n') if ctrl => self.recall(1),
            KeyCode::Char('n') if empty && self.search.is_some() && !alt => self.step_search(1),
            KeyCode::Char('N') if empty && self.search.is_some() && !alt => self.step_search(-1),
            KeyCode::PageUp => self.scroll_by(10),
            KeyCode::PageDown => self.scroll_by(-10),
            KeyCode::Char('u') if ctrl => {
                self.input.delete_line_by_head();
            }
            _ => {
                self.input.input(key);
            }
        }
        Vec::new()
    }

    /// Keys while the help or another page covers the chat.
    fn overlay_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {
                self.view = View::Chat;
                self.help_scroll = 0;
            }
            KeyCode::Up => self.scroll_page(-1),
            KeyCode::Down => self.scroll_page(1),
            KeyCode::PageUp => self.scroll_page(-10),
            KeyCode::PageDown => self.scroll_page(10),
            _ => {}
        }
        Vec::new()
    }

    /// Scrolls the help (or another page) by `rows`, within its length.
    fn scroll_page(&mut self, rows: isize) {
        let (width, height) = self.size;
        let main = super::view::layout(self, ratatui::layout::Rect::new(0, 0, width, height)).main;
        let max = super::view::page_max_scroll(main, self.page_text());
        self.help_scroll = self.help_scroll.saturating_add_signed(rows).min(max);
    }

    /// Ctrl-P (-1) and Ctrl-N (1): the messages sent from this input; past
    /// the newest, the draft that was there.
    fn recall(&mut self, by: isize) {
        let at = match (&self.recalled, by < 0) {
            (None, true) if !self.sent.is_empty() => {
                self.recalled = Some((self.sent.len(), self.input_text()));
                self.sent.len() - 1
            }
            (None, _) => return,
            (Some((at, _)), true) => at.saturating_sub(1),
            (Some((at, _)), false) => at + 1,
        };
        if at >= self.sent.len() {
            if let Some((_, draft)) = self.recalled.take() {
                self.set_input(&draft);
            }
            return;
        }
        if let Some((now, _)) = &mut self.recalled {
            *now = at;
        }
        let text = self.sent[at].clone();
        self.set_input(&text);
        self.input.move_cursor(CursorMove::Bottom);
        self.input.move_cursor(CursorMove::End);
    }

    fn submit(&mut self) -> Vec<Effect> {
        let text = self.input_text();
        if text.is_empty() {
            self.open_selected();
            return Vec::new();
        }
        if let Some(command) = text.strip_prefix('/') {
            self.remember_sent(&text);
            return self.command(command.trim());
        }
        let Some(key) = self.open.clone() else {
            self.warn("open a chat first (Tab and Enter, /chat USER or /secret USER)");
            return Vec::new();
        };
        if let Some(reason) = crate::outbox::refusal(&text) {
            self.warn(&reason);
            return Vec::new();
        }
        self.remember_sent(&text);
        let timer = self.open_conversation_ref().and_then(|c| c.timer);
        self.scroll = 0;
        let client_id = crate::commands::new_client_id();
        self.typed.push(super::app::local_id_of(&client_id));
        self.compose(key, client_id, text, timer)
    }

    /// Empties the input and keeps what it held for Ctrl-P.
    fn remember_sent(&mut self, text: &str) {
        if self.sent.last().map(String::as_str) != Some(text) {
            self.sent.push(text.to_owned());
        }
        self.recalled = None;
        self.input = editor();
    }
}
