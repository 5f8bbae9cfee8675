//! The chat client's state and its update logic: an [`Event`] in, the state
//! changed and a list of [`Effect`]s out. Nothing here draws or touches the
//! network, so every behaviour is testable without a terminal.

use ratatui::crossterm::event::{KeyEvent, KeyEventKind};
use ratatui::layout::Rect;
use ratatui_textarea::{TextArea, WrapMode};
use serde::{Deserialize, Serialize};

use crate::profile::{HistoryEntry, Mode, PendingMessage};

/// The UI line id of a message with this client id.
pub fn local_id_of(client_id: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&client_id[..8.min(client_id.len())]);
    u64::from_be_bytes(first)
}

/// Which conversation a message belongs to (and, for `sotto send` through
/// the chat client, where it goes: `{"secret":"bob"}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvKey {
    Direct(String),
    Group(String),
    Secret(String),
    /// A secret group (end to end; its membership on the members' devices).
    SecretGroup(String),
}

impl ConvKey {
    pub fn title(&self) -> String {
        match self {
            ConvKey::Direct(u) => u.clone(),
            ConvKey::Group(g) => format!("#{g}"),
            ConvKey::Secret(u) => format!("🔒 {u}"),
            ConvKey::SecretGroup(g) => format!("🔒 #{g}"),
        }
    }

    /// The other person of a 1:1 conversation.
    pub fn peer(&self) -> Option<&str> {
        match self {
            ConvKey::Direct(u) | ConvKey::Secret(u) => Some(u),
            ConvKey::Group(_) | ConvKey::SecretGroup(_) => None,
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, ConvKey::Secret(_) | ConvKey::SecretGroup(_))
    }
}

/// Where a message we wrote stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Typed, not yet stored by the relay (queued while offline).
    Pending,
    /// Stored by the relay.
    Sent,
    /// The recipient's client fetched and acknowledged it (in a group, every
    /// other member's); a secret one, decrypted and kept it (a receipt).
    Delivered,
    /// Refused for good; kept (`sotto outbox retry|drop`).
    Failed,
    /// Someone else's message.
    Received,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub from: String,
    pub text: String,
    pub sent_at: i64,
    pub delivery: Delivery,
    pub local_id: u64,
    /// A disappearing message: when it goes (milliseconds since the epoch).
    pub expires_at: Option<i64>,
    /// Why the relay refused it (with [`Delivery::Failed`]).
    pub failure: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub key: ConvKey,
    pub lines: Vec<ChatLine>,
    pub unread: usize,
    pub last_activity: i64,
    /// Disappearing-message timer of a secret chat, in seconds.
    pub timer: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Online,
    Offline {
        retry_in_secs: u64,
    },
    /// The relay presented another certificate than the one this profile
    /// pinned (an impostor, or a replaced certificate): no more attempts.
    CertificateMismatch {
        relay: String,
        pinned: String,
        presented: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Chat,
    Help,
    /// A page of text over the chat (Esc closes): a safety number, the outbox.
    Text {
        title: &'static str,
        text: String,
    },
}

/// Something that happened: a key, a delivery, the connection changing.
#[derive(Debug, Clone)]
pub enum Event {
    Key(KeyEvent),
    /// Text pasted into the terminal (bracketed paste): inserted at once.
    Paste(String),
    /// A typed message is kept in the vault now: it is shown (as pending).
    Kept {
        local_id: u64,
    },
    /// The clock: disappearing messages whose time came are taken away.
    /// (The chat loop sends one a second; tests send the times they want.)
    Tick {
        now_ms: i64,
    },
    /// The peer of a secret chat set its disappearing timer.
    TimerSet {
        peer: String,
        secs: Option<u32>,
    },
    /// A member of a secret group set the group's disappearing timer.
    GroupTimerSet {
        group: String,
        secs: Option<u32>,
    },
    ScrollUp,
    ScrollDown,
    /// Messages that arrived (or, at start, the history).
    Incoming(Vec<HistoryEntry>),
    /// A message we wrote was stored by the relay.
    Delivered {
        local_id: u64,
    },
    /// The recipient's client has these messages of ours: a secret chat's
    /// receipts, or the relay's word for normal ones (see [`crate::delivery`]).
    Receipt {
        local_ids: Vec<u64>,
    },
    /// A message we wrote was refused for good.
    Failed {
        local_id: u64,
        reason: String,
    },
    Connection(Connection),
    /// A line for the status bar.
    Notice(String),
    /// A line for the status bar, in red: something asked for did not happen.
    Warning(String),
    /// The safety number view for the open conversation.
    VerifyText(String),
    /// What waits in the outbox, as `sotto outbox list` shows it.
    OutboxText(String),
    /// The terminal's size (at start, and when it changes).
    Resize {
        width: u16,
        height: u16,
    },
    /// The relay created a group we asked for: it is opened now.
    GroupCreated {
        name: String,
    },
    /// A message another `sotto send` handed to this client (see
    /// [`crate::control`]): shown and sent like a typed one, with its own timer.
    Forwarded {
        client_id: [u8; 16],
        to: ConvKey,
        text: String,
        expire: Option<u32>,
    },
}

/// What the update asks the outside world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `local_id` is the first eight bytes of `client_id`, so a line and its
    /// message are matched again after a restart.
    SendNormal {
        local_id: u64,
        client_id: [u8; 16],
        to: ConvKey,
        text: String,
    },
    SendSecret {
        local_id: u64,
        client_id: [u8; 16],
        to: String,
        text: String,
        expire: Option<u32>,
    },
    CreateGroup {
        name: String,
        members: Vec<String>,
    },
    /// The outbox: list it, send a refused message again, or drop it.
    Outbox(OutboxAction),
    /// Tell the peer of a secret chat its new disappearing timer.
    SetTimer {
        peer: String,
        secs: Option<u32>,
    },
    /// Set a secret group's disappearing timer, for every member.
    SetGroupTimer {
        group: String,
        secs: Option<u32>,
    },
    Verify {
        user: String,
    },
    /// The safety number of every other member of a secret group.
    VerifyGroup {
        group: String,
    },
    Trust {
        user: String,
    },
    Bell,
    Quit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxAction {
    List,
    Retry(String),
    Drop(String),
    /// Drop, without a word: the message's text went back into the input.
    Withdraw(String),
}

/// A search in the open conversation: its term, and which hit is current
/// (counted from the oldest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub term: String,
    pub current: usize,
}

pub struct App {
    pub me: String,
    pub fingerprint: String,
    pub conversations: Vec<Conversation>,
    pub open: Option<ConvKey>,
    /// The highlighted conversation in the list: a conversation, never a
    /// row, so a list re-sorted by a new message keeps the highlight on it.
    pub selected: Option<ConvKey>,
    /// A normal chat asked for while the secret chat with the same person is
    /// open: it opens only on a second Enter (the mode never drops silently).
    pub confirm: Option<ConvKey>,
    /// The message being typed (an editor: cursor, words, lines, paste).
    pub input: TextArea<'static>,
    /// What was sent from the input, oldest first (this run only, never saved).
    pub(super) sent: Vec<String>,
    /// Where Ctrl-P/Ctrl-N are in [`App::sent`], and the draft they left.
    pub(super) recalled: Option<(usize, String)>,
    /// The messages (UI line ids) typed into this input in this run.
    pub(super) typed: Vec<u64>,
    /// Rows scrolled up from the newest message.
    pub scroll: usize,
    /// Rows scrolled down in the help.
    pub help_scroll: usize,
    pub status: String,
    /// The status is a warning (drawn in red).
    pub alert: bool,
    pub connection: Connection,
    pub view: View,
    /// The search in the open conversation.
    pub search: Option<Search>,
    pub quit: bool,
    /// The terminal's size, for how far the conversation scrolls.
    pub size: (u16, u16),
    /// The app's clock (milliseconds since the epoch), moved by [`Event::Tick`].
    pub now_ms: i64,
    /// Where times are shown for: the user's time zone (UTC until told).
    pub zone: jiff::tz::TimeZone,
    /// Messages typed but not yet kept in the vault: shown only once
    /// [`Event::Kept`] says they are (a crash can lose nothing shown).
    pub unsaved: Vec<(ConvKey, ChatLine)>,
}

pub const HELP: &str = "\
Keys
  Enter          send the message; with an empty input, open the
                 highlighted chat
  Alt-Enter      new line in the message
  Tab, Shift-Tab highlight the next / previous chat (Up/Down too when
                 the input is empty); the highlight stays on its chat
                 when the list re-sorts
  Left/Right, Home/End, Ctrl-Left/Right or Alt-B/F (word)  move
  Ctrl-W         delete the word before the cursor
  Ctrl-U         delete to the start of the line
  Ctrl-K         delete to the end of the line
  Ctrl-P/Ctrl-N  previous / next message sent from here
  PgUp/PgDn      scroll the conversation (the mouse wheel too)
  n / N          next / previous search hit (input empty)
  Esc            close this view, end a search, or close the chat
  Ctrl-C         quit

Marks after your messages
  …   pending: kept on this device, not yet stored by the relay
  ✓   stored by the relay (not yet a sign that the recipient has it)
  ✓✓  delivered: the recipient's client fetched and acknowledged it
      (a group: every other member's; secret: decrypted and kept it)
  ✗   not sent: the reason follows; /outbox to retry or drop it

A secret chat has a magenta double frame and 🔒 in its input box:
it is end-to-end encrypted. A normal chat is kept by the relay
(sealed at rest, disclosable under a warrant). Going from a secret
chat to the normal one with the same person asks for a second Enter.

Commands
  /chat USER          open the normal chat with USER
  /secret USER        open (or start) the secret chat with USER
  /group NAME USER... create a normal-mode group and open it
  /verify             safety number(s) of the open chat or secret group
  /trust              accept the open chat's changed identity key
  /timer 30s|off      disappearing messages in the open secret chat
  /outbox             unsent messages; then /retry ID or /drop ID
  /search TEXT        find TEXT (any case) in the open chat
  /help               this help (Up/Down, PgUp/PgDn scroll it)
  /quit               quit";

/// A fresh, empty message editor.
pub(super) fn editor() -> TextArea<'static> {
    let mut input = TextArea::default();
    input.set_wrap_mode(WrapMode::WordOrGlyph);
    input.set_cursor_line_style(ratatui::style::Style::default());
    input.set_max_histories(200);
    input
}

impl App {
    pub fn new(
        me: &str,
        fingerprint: &str,
        history: &[HistoryEntry],
        pending: &[PendingMessage],
        open: Option<ConvKey>,
    ) -> Self {
        let mut app = App {
            me: me.to_owned(),
            fingerprint: fingerprint.to_owned(),
            conversations: Vec::new(),
            open: None,
            selected: None,
            confirm: None,
            input: editor(),
            sent: Vec::new(),
            recalled: None,
            typed: Vec::new(),
            scroll: 0,
            help_scroll: 0,
            status: "/help lists the commands".into(),
            alert: false,
            connection: Connection::Connecting,
            view: View::Chat,
            search: None,
            quit: false,
            size: (80, 24),
            now_ms: crate::profile::now_ms(),
            zone: jiff::tz::TimeZone::UTC,
            unsaved: Vec::new(),
        };
        for entry in history {
            let key = app.key_of(entry);
            let line = app.line_of(entry);
            let conv = app.conversation_mut(&key);
            conv.last_activity = conv.last_activity.max(line.sent_at);
            conv.lines.push(line);
        }
        // Typed before a restart, still waiting for the relay.
        for p in pending {
            let key = match (&p.user, &p.group) {
                (_, Some(g)) if p.secret => ConvKey::SecretGroup(g.clone()),
                (_, Some(g)) => ConvKey::Group(g.clone()),
                (Some(u), _) if p.secret => ConvKey::Secret(u.clone()),
                (Some(u), _) => ConvKey::Direct(u.clone()),
                _ => continue,
            };
            let me = app.me.clone();
            let conv = app.conversation_mut(&key);
            conv.last_activity = conv.last_activity.max(p.typed_at);
            conv.lines.push(ChatLine {
                from: me,
                text: p.text.clone(),
                sent_at: p.typed_at,
                delivery: if p.failed.is_some() {
                    Delivery::Failed
                } else {
                    Delivery::Pending
                },
                failure: p.failed.clone(),
                local_id: hex::decode(&p.client_id)
                    .map(|id| local_id_of(&id))
                    .unwrap_or(0),
                expires_at: None,
            });
        }
        if let Some(key) = open {
            app.open_conversation(key);
        }
        app.selected = app
            .selected
            .clone()
            .or_else(|| app.sorted().first().map(|c| c.key.clone()));
        app
    }

    /// The text in the input box.
    pub fn input_text(&self) -> String {
        self.input.lines().join("\n")
    }

    pub(super) fn set_input(&mut self, text: &str) {
        self.input = editor();
        self.input.insert_str(text);
    }

    /// The conversations in the list, most recent first: those with a
    /// message, and the open one (a chat opened and left empty, or a group
    /// the relay would not create, leaves nothing behind).
    pub fn sorted(&self) -> Vec<&Conversation> {
        let mut list: Vec<&Conversation> = self
            .conversations
            .iter()
            .filter(|c| !c.lines.is_empty() || self.open.as_ref() == Some(&c.key))
            .collect();
        list.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.key.cmp(&b.key))
        });
        list
    }

    pub fn open_conversation_ref(&self) -> Option<&Conversation> {
        let key = self.open.as_ref()?;
        self.conversations.iter().find(|c| &c.key == key)
    }

    fn key_of(&self, e: &HistoryEntry) -> ConvKey {
        let peer = e.peer.clone().unwrap_or_else(|| e.from.clone());
        match (&e.mode, &e.group) {
            (Mode::Secret, Some(g)) => ConvKey::SecretGroup(g.clone()),
            (Mode::Secret, _) => ConvKey::Secret(peer),
            (_, Some(g)) => ConvKey::Group(g.clone()),
            _ => ConvKey::Direct(peer),
        }
    }

    fn line_of(&self, e: &HistoryEntry) -> ChatLine {
        ChatLine {
            from: e.from.clone(),
            text: e.text.clone(),
            sent_at: e.sent_at,
            delivery: match (e.from == self.me, e.delivered) {
                (true, true) => Delivery::Delivered,
                (true, false) => Delivery::Sent,
                (false, _) => Delivery::Received,
            },
            // Our own lines can be marked again (a receipt) by their id.
            local_id: match e.from == self.me {
                true => hex::decode(&e.client_id)
                    .map(|id| local_id_of(&id))
                    .unwrap_or(0),
                false => 0,
            },
            failure: None,
            // A timer starts when the message is first shown: now, if not yet.
            expires_at: e.expire_secs.map(|secs| {
                e.shown_at
                    .unwrap_or(self.now_ms)
                    .saturating_add(i64::from(secs) * 1000)
            }),
        }
    }

    fn conversation_mut(&mut self, key: &ConvKey) -> &mut Conversation {
        if let Some(i) = self.conversations.iter().position(|c| &c.key == key) {
            return &mut self.conversations[i];
        }
        self.conversations.push(Conversation {
            key: key.clone(),
            lines: Vec::new(),
            unread: 0,
            last_activity: 0,
            timer: None,
        });
        self.conversations.last_mut().expect("just pushed")
    }

    fn open_conversation(&mut self, key: ConvKey) {
        let conv = self.conversation_mut(&key);
        conv.unread = 0;
        self.open = Some(key.clone());
        self.scroll = 0;
        self.search = None;
        self.confirm = None;
        self.view = View::Chat;
        // What the status said was about the chat before.
        self.say(match &key {
            ConvKey::Secret(_) | ConvKey::SecretGroup(_) => "end-to-end encrypted",
            ConvKey::Direct(_) | ConvKey::Group(_) => "kept by the relay, sealed at rest",
        });
        self.selected = Some(key);
    }

    /// Moves the highlight `by` rows in the list: Up/Down stop at the ends,
    /// Tab and Shift-Tab (`around`) go round.
    pub(super) fn move_selection(&mut self, by: isize, around: bool) {
        let list: Vec<ConvKey> = self.sorted().iter().map(|c| c.key.clone()).collect();
        if list.is_empty() {
            return;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|k| list.iter().position(|c| c == k));
        let next = match at {
            Some(at) if around => (at as isize + by).rem_euclid(list.len() as isize) as usize,
            Some(at) => at.saturating_add_signed(by).min(list.len() - 1),
            None => 0,
        };
        self.selected = Some(list[next].clone());
    }

    /// Opens the highlighted conversation; from a secret chat to the normal
    /// one with the same person only when asked twice.
    pub(super) fn open_selected(&mut self) {
        let Some(key) = self.selected.clone() else {
            return;
        };
        if !self.sorted().iter().any(|c| c.key == key) {
            // Highlighted once, gone from the list since (left empty).
            self.selected = None;
            return;
        }
        let down = match (&self.open, &key) {
            (Some(ConvKey::Secret(a)), ConvKey::Direct(b)) => a == b,
            _ => false,
        };
        if down && self.confirm.as_ref() != Some(&key) {
            let user = key.peer().unwrap_or_default().to_owned();
            self.confirm = Some(key);
            self.warn(&format!(
                "⚠ the normal chat with {user} is NOT end-to-end encrypted (the relay reads it): \
                 Enter again opens it, Esc stays here"
            ));
            return;
        }
        self.open_conversation(key);
    }

    /// The text of the page over the chat (the help, a safety number…).
    pub fn page_text(&self) -> &str {
        match &self.view {
            View::Chat => "",
            View::Help => HELP,
            View::Text { text, .. } => text,
        }
    }

    /// The transcript's size at the terminal's size: (width, height) inside its frame.
    pub fn transcript_size(&self) -> (usize, usize) {
        let (width, height) = self.size;
        let areas = super::view::layout(self, Rect::new(0, 0, width, height));
        (
            areas.messages.width.saturating_sub(2) as usize,
            areas.messages.height.saturating_sub(2) as usize,
        )
    }

    /// How far the open conversation scrolls up at most.
    pub fn max_scroll(&self) -> usize {
        let Some(conv) = self.open_conversation_ref() else {
            return 0;
        };
        let (width, height) = self.transcript_size();
        super::transcript::rows(self, conv, width)
            .len()
            .saturating_sub(height)
    }

    pub(super) fn scroll_by(&mut self, rows: isize) {
        self.scroll = self
            .scroll
            .saturating_add_signed(rows)
            .min(self.max_scroll());
    }

    /// The open conversation's messages (by index) that hold the search term.
    pub fn search_hits(&self) -> Vec<usize> {
        let (Some(search), Some(conv)) = (&self.search, self.open_conversation_ref()) else {
            return Vec::new();
        };
        let term = search.term.to_lowercase();
        conv.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.text.to_lowercase().contains(&term))
            .map(|(i, _)| i)
            .collect()
    }

    /// The message the search is on, if any.
    pub fn current_hit(&self) -> Option<usize> {
        let hits = self.search_hits();
        let current = self.search.as_ref()?.current;
        hits.get(current.min(hits.len().checked_sub(1)?)).copied()
    }

    /// Moves to the next (`by` 1) or previous (-1) hit and scrolls to it.
    pub(super) fn step_search(&mut self, by: isize) {
        let hits = self.search_hits();
        let Some(search) = &mut self.search else {
            return;
        };
        if hits.is_empty() {
            return;
        }
        search.current = search
            .current
            .min(hits.len() - 1)
            .saturating_add_signed(by)
            .min(hits.len() - 1);
        let status = format!(
            "hit {} of {} for {:?}: n/N next/previous, Esc ends the search",
            search.current + 1,
            hits.len(),
            search.term
        );
        self.say(&status);
        self.show_hit();
    }

    /// Scrolls so that the current hit is in view, a third from the top.
    fn show_hit(&mut self) {
        let (Some(hit), Some(conv)) = (self.current_hit(), self.open_conversation_ref()) else {
            return;
        };
        let (width, height) = self.transcript_size();
        let rows = super::transcript::rows(self, conv, width);
        let Some(first) = rows.iter().position(|r| r.message == hit) else {
            return;
        };
        let top = first.saturating_sub(height / 3);
        let max = rows.len().saturating_sub(height);
        self.scroll = max.saturating_sub(top.min(max));
    }

    /// Applies one event; returns what must be done outside.
    pub fn update(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            Event::Key(_) => Vec::new(),
            Event::Paste(text) => {
                if self.view == View::Chat {
                    let text = text.replace("\r\n", "\n").replace('\r', "\n");
                    self.input.insert_str(text);
                }
                Vec::new()
            }
            Event::ScrollUp => {
                self.scroll_by(3);
                Vec::new()
            }
            Event::ScrollDown => {
                self.scroll_by(-3);
                Vec::new()
            }
            Event::Incoming(entries) => self.incoming(entries),
            Event::Tick { now_ms } => {
                self.now_ms = now_ms;
                for c in &mut self.conversations {
                    c.lines
                        .retain(|l| l.expires_at.is_none_or(|at| at > now_ms));
                }
                Vec::new()
            }
            Event::TimerSet { peer, secs } => {
                self.conversation_mut(&ConvKey::Secret(peer.clone())).timer = secs;
                Vec::new()
            }
            Event::GroupTimerSet { group, secs } => {
                self.conversation_mut(&ConvKey::SecretGroup(group.clone()))
                    .timer = secs;
                Vec::new()
            }
            Event::Kept { local_id } => {
                if let Some(at) = self
                    .unsaved
                    .iter()
                    .position(|(_, l)| l.local_id == local_id)
                {
                    let (key, line) = self.unsaved.remove(at);
                    let conv = self.conversation_mut(&key);
                    conv.last_activity = conv.last_activity.max(line.sent_at);
                    conv.lines.push(line);
                }
                Vec::new()
            }
            Event::Delivered { local_id } => {
                self.set_delivery(local_id, Delivery::Sent);
                Vec::new()
            }
            Event::Receipt { local_ids } => {
                for local_id in local_ids {
                    self.set_delivery(local_id, Delivery::Delivered);
                }
                Vec::new()
            }
            Event::Failed { local_id, reason }
                if self.unsaved.iter().any(|(_, l)| l.local_id == local_id) =>
            {
                // Never kept: give the text back rather than show a line.
                if let Some(at) = self
                    .unsaved
                    .iter()
                    .position(|(_, l)| l.local_id == local_id)
                {
                    let (_, line) = self.unsaved.remove(at);
                    if self.input.is_empty() {
                        self.set_input(&line.text);
                    }
                }
                self.warn(&format!("not sent: {reason}"));
                Vec::new()
            }
            Event::Failed { local_id, reason } => {
                // Kept in view, marked: it is kept in the vault too.
                self.set_delivery(local_id, Delivery::Failed);
                let mut text = None;
                for line in self.conversations.iter_mut().flat_map(|c| &mut c.lines) {
                    if line.local_id == local_id {
                        line.failure = Some(reason.clone());
                        text = Some(line.text.clone());
                    }
                }
                // Typed here a moment ago: its text goes back into the
                // input to be fixed, instead of waiting in the outbox.
                match text {
                    Some(text) if self.typed.contains(&local_id) && self.input.is_empty() => {
                        self.set_input(&text);
                        self.warn(&format!(
                            "not sent: {reason}; its text is back in the input"
                        ));
                        let id = hex::encode(local_id.to_be_bytes());
                        vec![Effect::Outbox(OutboxAction::Withdraw(id[..8].to_owned()))]
                    }
                    _ => {
                        self.warn(&format!("not sent: {reason} (/outbox retries or drops it)"));
                        Vec::new()
                    }
                }
            }
            Event::Connection(c) => {
                self.connection = c;
                Vec::new()
            }
            Event::Notice(text) => {
                self.say(&text);
                Vec::new()
            }
            Event::Warning(text) => {
                self.warn(&text);
                Vec::new()
            }
            Event::GroupCreated { name } => {
                self.open_conversation(ConvKey::Group(name));
                Vec::new()
            }
            Event::OutboxText(text) => {
                self.help_scroll = 0;
                self.view = View::Text {
                    title: "outbox: /retry ID, /drop ID",
                    text,
                };
                Vec::new()
            }
            Event::VerifyText(text) => {
                self.help_scroll = 0;
                self.view = View::Text {
                    title: "verify",
                    text,
                };
                Vec::new()
            }
            Event::Resize { width, height } => {
                self.size = (width, height);
                self.scroll = self.scroll.min(self.max_scroll());
                Vec::new()
            }
            Event::Forwarded {
                client_id,
                to,
                text,
                expire,
            } => {
                self.say(&format!("sending for `sotto send` to {}", to.title()));
                self.compose(to, client_id, text, expire)
            }
        }
    }

    /// Each secret chat's timer, as the profile keeps it: 1:1 chats by
    /// peer, secret groups by name.
    pub fn set_timers(
        &mut self,
        timers: &std::collections::BTreeMap<String, u32>,
        group_timers: &std::collections::BTreeMap<String, u32>,
    ) {
        for conv in &mut self.conversations {
            match &conv.key {
                ConvKey::Secret(peer) => conv.timer = timers.get(peer).copied(),
                ConvKey::SecretGroup(group) => conv.timer = group_timers.get(group).copied(),
                _ => {}
            }
        }
    }

    fn set_delivery(&mut self, local_id: u64, delivery: Delivery) {
        for c in &mut self.conversations {
            for l in &mut c.lines {
                // A receipt can come before the relay's answer: ✓✓ stays.
                let after = l.delivery == Delivery::Delivered && delivery == Delivery::Sent;
                if l.local_id == local_id && local_id != 0 && !after {
                    l.delivery = delivery;
                }
            }
        }
    }

    fn incoming(&mut self, entries: Vec<HistoryEntry>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for entry in entries {
            let key = self.key_of(&entry);
            let line = self.line_of(&entry);
            let is_open = self.open.as_ref() == Some(&key);
            let conv = self.conversation_mut(&key);
            conv.last_activity = conv.last_activity.max(line.sent_at);
            conv.lines.push(line);
            if !is_open {
                conv.unread += 1;
                effects.push(Effect::Bell);
            }
        }
        effects.dedup();
        effects
    }

    /// Shows our new message as pending in `key`'s conversation and asks for it to be sent.
    pub(super) fn compose(
        &mut self,
        key: ConvKey,
        client_id: [u8; 16],
        text: String,
        expire: Option<u32>,
    ) -> Vec<Effect> {
        let local_id = local_id_of(&client_id);
        let me = self.me.clone();
        let now = crate::profile::now_ms();
        // Shown once the vault has it (Event::Kept), not before.
        self.unsaved.push((
            key.clone(),
            ChatLine {
                from: me,
                text: text.clone(),
                sent_at: now,
                delivery: Delivery::Pending,
                local_id,
                expires_at: expire.map(|secs| now.saturating_add(i64::from(secs) * 1000)),
                failure: None,
            },
        ));
        match key {
            ConvKey::Secret(to) => vec![Effect::SendSecret {
                local_id,
                client_id,
                to,
                text,
                expire,
            }],
            to => vec![Effect::SendNormal {
                local_id,
                client_id,
                to,
                text,
            }],
        }
    }

    pub(super) fn command(&mut self, command: &str) -> Vec<Effect> {
        let mut words = command.split_whitespace();
        let name = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let open_peer = self.open.as_ref().and_then(|k| k.peer().map(str::to_owned));
        match (name, args.as_slice()) {
            ("secret" | "chat", [user]) => {
                if let Err(e) = sotto_proto::names::validate(user) {
                    return self.warn(&format!("/{name} {user}: {e}"));
                }
                if *user == self.me {
                    return self.warn("a chat needs someone else");
                }
                let user = (*user).to_owned();
                self.open_conversation(match name {
                    "secret" => ConvKey::Secret(user),
                    _ => ConvKey::Direct(user),
                });
                Vec::new()
            }
            ("group", [name, members @ ..]) if !members.is_empty() => {
                // Opened once the relay created it (Event::GroupCreated).
                self.say(&format!("creating #{name}…"));
                vec![Effect::CreateGroup {
                    name: (*name).to_owned(),
                    members: members.iter().map(|m| (*m).to_owned()).collect(),
                }]
            }
            ("verify", []) => match (open_peer, &self.open) {
                (Some(user), _) => vec![Effect::Verify { user }],
                (None, Some(ConvKey::SecretGroup(group))) => vec![Effect::VerifyGroup {
                    group: group.clone(),
                }],
                _ => self.say("/verify needs an open 1:1 conversation or secret group"),
            },
            ("trust", []) => match open_peer {
                Some(user) => vec![Effect::Trust { user }],
                None => self.say("/trust needs an open 1:1 conversation"),
            },
            ("timer", [value]) => {
                if !self.open.as_ref().is_some_and(ConvKey::is_secret) {
                    return self.warn("/timer works in a secret chat (/secret USER)");
                }
                match crate::secret::parse_timer(value) {
                    Ok(timer) => {
                        let Some(key) = self.open.clone() else {
                            return Vec::new();
                        };
                        self.conversation_mut(&key).timer = timer;
                        self.say(&match timer {
                            Some(secs) => format!(
                                "new messages disappear {secs} s after they are read (for everyone \
                                 in this chat)"
                            ),
                            None => {
                                "disappearing messages off (for everyone in this chat)".to_owned()
                            }
                        });
                        match &key {
                            ConvKey::SecretGroup(group) => vec![Effect::SetGroupTimer {
                                group: group.clone(),
                                secs: timer,
                            }],
                            key => match key.peer() {
                                Some(peer) => vec![Effect::SetTimer {
                                    peer: peer.to_owned(),
                                    secs: timer,
                                }],
                                None => Vec::new(),
                            },
                        }
                    }
                    Err(e) => self.say(&format!("{e:#}")),
                }
            }
            ("search", words) if !words.is_empty() => {
                let term = command["search".len()..].trim().to_owned();
                self.search = Some(Search {
                    term: term.clone(),
                    current: usize::MAX,
                });
                let hits = self.search_hits().len();
                if hits == 0 {
                    self.search = None;
                    return self.say(&format!("no message here contains {term:?}"));
                }
                self.show_hit();
                let count = match hits {
                    1 => "1 message contains".to_owned(),
                    n => format!("{n} messages contain"),
                };
                self.say(&format!(
                    "{count} {term:?} (newest shown): n/N next/previous, Esc ends the search"
                ))
            }
            ("outbox", []) => vec![Effect::Outbox(OutboxAction::List)],
            ("retry", [id]) => vec![Effect::Outbox(OutboxAction::Retry((*id).to_owned()))],
            ("drop", [id]) => vec![Effect::Outbox(OutboxAction::Drop((*id).to_owned()))],
            ("help", []) => {
                self.view = View::Help;
                self.help_scroll = 0;
                Vec::new()
            }
            ("quit", []) => {
                self.quit = true;
                vec![Effect::Quit]
            }
            _ => self.warn(&format!(
                "unknown command /{}: /help lists the commands",
                sotto_proto::printable::printable(command)
            )),
        }
    }

    pub(super) fn say(&mut self, text: &str) -> Vec<Effect> {
        self.status = text.to_owned();
        self.alert = false;
        Vec::new()
    }

    /// A status line in red: something did not happen, or needs a second look.
    pub(super) fn warn(&mut self, text: &str) -> Vec<Effect> {
        self.status = text.to_owned();
        self.alert = true;
        Vec::new()
    }
}
