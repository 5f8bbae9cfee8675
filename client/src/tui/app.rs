//! The chat client's state and its update logic: an [`Event`] in, the state
//! changed and a list of [`Effect`]s out. Nothing here draws or touches the
//! network, so every behaviour is testable without a terminal.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
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
}

impl ConvKey {
    pub fn title(&self) -> String {
        match self {
            ConvKey::Direct(u) => u.clone(),
            ConvKey::Group(g) => format!("#{g}"),
            ConvKey::Secret(u) => format!("🔒 {u}"),
        }
    }

    /// The other person of a 1:1 conversation.
    pub fn peer(&self) -> Option<&str> {
        match self {
            ConvKey::Direct(u) | ConvKey::Secret(u) => Some(u),
            ConvKey::Group(_) => None,
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, ConvKey::Secret(_))
    }
}

/// Where a message we wrote stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Typed, not yet stored by the relay (queued while offline).
    Pending,
    /// Stored by the relay.
    Sent,
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
    Offline { retry_in_secs: u64 },
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
    ScrollUp,
    ScrollDown,
    /// Messages that arrived (or, at start, the history).
    Incoming(Vec<HistoryEntry>),
    /// A message we wrote was stored by the relay.
    Delivered {
        local_id: u64,
    },
    /// A message we wrote was refused for good.
    Failed {
        local_id: u64,
        reason: String,
    },
    Connection(Connection),
    /// A line for the status bar.
    Notice(String),
    /// The safety number view for the open conversation.
    VerifyText(String),
    /// What waits in the outbox, as `sotto outbox list` shows it.
    OutboxText(String),
    /// The terminal changed size: only a redraw.
    Resize,
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
    Verify {
        user: String,
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
}

pub struct App {
    pub me: String,
    pub fingerprint: String,
    pub conversations: Vec<Conversation>,
    pub open: Option<ConvKey>,
    /// Index into [`App::sorted`] of the highlighted conversation in the list.
    pub selected: usize,
    pub input: String,
    /// Lines scrolled up from the newest message.
    pub scroll: usize,
    pub status: String,
    pub connection: Connection,
    pub view: View,
    /// The search term highlighted in the open conversation.
    pub search: Option<String>,
    pub quit: bool,
    /// The app's clock (milliseconds since the epoch), moved by [`Event::Tick`].
    pub now_ms: i64,
    /// Messages typed but not yet kept in the vault: shown only once
    /// [`Event::Kept`] says they are (a crash can lose nothing shown).
    pub unsaved: Vec<(ConvKey, ChatLine)>,
}

pub const HELP: &str = "\
Keys
  Enter          send the message (or open the highlighted conversation)
  Alt-Enter      new line in the message
  Up/Down        highlight a conversation;  Enter (empty input) opens it
  PgUp/PgDn      scroll the conversation (the mouse wheel too)
  Esc            close this view, or the conversation
  Ctrl-C         quit

Commands
  /secret USER        open (or start) the secret chat with USER
  /group NAME USER... create a normal-mode group and open it
  /verify             show the safety number of the open chat, and how to compare it
  /trust              accept the open chat's changed identity key
  /timer 30s|off      disappearing messages in the open secret chat
  /outbox             unsent messages; then /retry ID or /drop ID
  /search TEXT        find TEXT in the open conversation
  /help               this help
  /quit               quit";

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
            selected: 0,
            input: String::new(),
            scroll: 0,
            status: "/help lists the commands".into(),
            connection: Connection::Connecting,
            view: View::Chat,
            search: None,
            quit: false,
            now_ms: crate::profile::now_ms(),
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
                local_id: hex::decode(&p.client_id)
                    .map(|id| local_id_of(&id))
                    .unwrap_or(0),
                expires_at: None,
            });
        }
        if let Some(key) = open {
            app.open_conversation(key);
        }
        app
    }

    /// Conversations, most recent first.
    pub fn sorted(&self) -> Vec<&Conversation> {
        let mut list: Vec<&Conversation> = self.conversations.iter().collect();
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
            delivery: if e.from == self.me {
                Delivery::Sent
            } else {
                Delivery::Received
            },
            local_id: 0,
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
        self.view = View::Chat;
        self.selected = self.sorted().iter().position(|c| c.key == key).unwrap_or(0);
    }

    /// Applies one event; returns what must be done outside.
    pub fn update(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            Event::Key(_) => Vec::new(),
            Event::ScrollUp => {
                self.scroll = self.scroll.saturating_add(3);
                Vec::new()
            }
            Event::ScrollDown => {
                self.scroll = self.scroll.saturating_sub(3);
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
                        self.input = line.text;
                    }
                }
                self.status = format!("not sent: {reason}");
                Vec::new()
            }
            Event::Failed { local_id, reason } => {
                // Kept in view, marked: it is kept in the vault too.
                self.set_delivery(local_id, Delivery::Failed);
                self.status = format!("not sent: {reason} (`sotto outbox` retries or drops it)");
                Vec::new()
            }
            Event::Connection(c) => {
                self.connection = c;
                Vec::new()
            }
            Event::Notice(text) => {
                self.status = text;
                Vec::new()
            }
            Event::OutboxText(text) => {
                self.view = View::Text {
                    title: "outbox: /retry ID, /drop ID (Esc closes)",
                    text,
                };
                Vec::new()
            }
            Event::VerifyText(text) => {
                self.view = View::Text {
                    title: "verify (Esc closes)",
                    text,
                };
                Vec::new()
            }
            Event::Resize => Vec::new(),
            Event::Forwarded {
                client_id,
                to,
                text,
                expire,
            } => {
                self.status = format!("sending for `sotto send` to {}", to.title());
                self.compose(to, client_id, text, expire)
            }
        }
    }

    /// Each secret chat's timer, as the profile keeps it.
    pub fn set_timers(&mut self, timers: &std::collections::BTreeMap<String, u32>) {
        for conv in &mut self.conversations {
            if let ConvKey::Secret(peer) = &conv.key {
                conv.timer = timers.get(peer).copied();
            }
        }
    }

    fn set_delivery(&mut self, local_id: u64, delivery: Delivery) {
        for c in &mut self.conversations {
            for l in &mut c.lines {
                if l.local_id == local_id {
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

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c') if ctrl => {
                self.quit = true;
                vec![Effect::Quit]
            }
            KeyCode::Esc => {
                if self.view != View::Chat {
                    self.view = View::Chat;
                } else if self.search.is_some() {
                    self.search = None;
                } else {
                    self.open = None;
                }
                Vec::new()
            }
            KeyCode::Enter if alt => {
                self.input.push('\n');
                Vec::new()
            }
            KeyCode::Enter => self.submit(),
            KeyCode::Backspace => {
                self.input.pop();
                Vec::new()
            }
            KeyCode::Up => {
                self.selected = self.selected.saturating_sub(1);
                Vec::new()
            }
            KeyCode::Down => {
                let n = self.conversations.len();
                if n > 0 {
                    self.selected = (self.selected + 1).min(n - 1);
                }
                Vec::new()
            }
            KeyCode::PageUp => {
                self.scroll = self.scroll.saturating_add(10);
                Vec::new()
            }
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_sub(10);
                Vec::new()
            }
            KeyCode::Char(c) if !ctrl => {
                self.input.push(c);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn submit(&mut self) -> Vec<Effect> {
        if self.input.trim().is_empty() {
            self.input.clear();
            let key = self.sorted().get(self.selected).map(|c| c.key.clone());
            if let Some(key) = key {
                self.open_conversation(key);
            }
            return Vec::new();
        }
        let input = std::mem::take(&mut self.input);
        if let Some(command) = input.strip_prefix('/') {
            return self.command(command.trim());
        }
        let Some(key) = self.open.clone() else {
            self.input = input;
            self.status = "open a conversation first (Up/Down and Enter, or /secret USER)".into();
            return Vec::new();
        };
        let timer = self.open_conversation_ref().and_then(|c| c.timer);
        self.scroll = 0;
        self.compose(key, crate::commands::new_client_id(), input, timer)
    }

    /// Shows our new message as pending in `key`'s conversation and asks for it to be sent.
    fn compose(
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

    fn command(&mut self, command: &str) -> Vec<Effect> {
        let mut words = command.split_whitespace();
        let name = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let open_peer = self.open.as_ref().and_then(|k| k.peer().map(str::to_owned));
        match (name, args.as_slice()) {
            ("secret", [user]) => {
                self.open_conversation(ConvKey::Secret((*user).to_owned()));
                self.status = format!("secret chat with {user}: end-to-end encrypted");
                Vec::new()
            }
            ("group", [name, members @ ..]) if !members.is_empty() => {
                self.open_conversation(ConvKey::Group((*name).to_owned()));
                vec![Effect::CreateGroup {
                    name: (*name).to_owned(),
                    members: members.iter().map(|m| (*m).to_owned()).collect(),
                }]
            }
            ("verify", []) => match open_peer {
                Some(user) => vec![Effect::Verify { user }],
                None => self.say("/verify needs an open 1:1 conversation"),
            },
            ("trust", []) => match open_peer {
                Some(user) => vec![Effect::Trust { user }],
                None => self.say("/trust needs an open 1:1 conversation"),
            },
            ("timer", [value]) => {
                if !self.open.as_ref().is_some_and(ConvKey::is_secret) {
                    return self.say("/timer works in a secret chat (/secret USER)");
                }
                match crate::secret::parse_timer(value) {
                    Ok(timer) => {
                        let Some(key) = self.open.clone() else {
                            return Vec::new();
                        };
                        self.conversation_mut(&key).timer = timer;
                        self.say(&match timer {
                            Some(secs) => format!(
                                "new messages disappear {secs} s after they are read (on both sides)"
                            ),
                            None => "disappearing messages off (on both sides)".to_owned(),
                        });
                        match key.peer() {
                            Some(peer) => vec![Effect::SetTimer {
                                peer: peer.to_owned(),
                                secs: timer,
                            }],
                            None => Vec::new(),
                        }
                    }
                    Err(e) => self.say(&format!("{e:#}")),
                }
            }
            ("search", words) if !words.is_empty() => {
                let term = words.join(" ");
                let hits = self
                    .open_conversation_ref()
                    .map(|c| c.lines.iter().filter(|l| l.text.contains(&term)).count())
                    .unwrap_or(0);
                self.search = Some(term.clone());
                self.say(&format!("{hits} messages contain {term:?} (Esc clears)"))
            }
            ("outbox", []) => vec![Effect::Outbox(OutboxAction::List)],
            ("retry", [id]) => vec![Effect::Outbox(OutboxAction::Retry((*id).to_owned()))],
            ("drop", [id]) => vec![Effect::Outbox(OutboxAction::Drop((*id).to_owned()))],
            ("help", []) => {
                self.view = View::Help;
                Vec::new()
            }
            ("quit", []) => {
                self.quit = true;
                vec![Effect::Quit]
            }
            _ => self.say(&format!(
                "unknown command /{command}: /help lists the commands"
            )),
        }
    }

    fn say(&mut self, text: &str) -> Vec<Effect> {
        self.status = text.to_owned();
        Vec::new()
    }
}
