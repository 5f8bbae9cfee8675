//! `sotto chat` run inside a test: its event loop on ratatui's TestBackend,
//! scripted keys in, what it shows out, and a way to wait for a condition on
//! what it shows (never a bare sleep).

use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sotto_client::profile::Profile;
use sotto_client::tui::app::{App, Connection, ConvKey, Delivery, Event};
use sotto_client::tui::run_with;
use tokio::sync::{mpsc, watch};

/// What the chat client shows: whether it is online, and every line of every
/// conversation.
#[derive(Clone, Default, Debug)]
pub struct Seen {
    pub online: bool,
    pub lines: Vec<(ConvKey, String, Delivery)>,
}

impl Seen {
    /// `text` is shown in `conv` with this delivery mark.
    pub fn shows(&self, conv: &ConvKey, text: &str, delivery: Delivery) -> bool {
        self.lines
            .iter()
            .any(|(c, t, d)| c == conv && t == text && *d == delivery)
    }

    /// `text` is shown with this delivery mark, in any conversation.
    pub fn has(&self, text: &str, delivery: Delivery) -> bool {
        self.lines
            .iter()
            .any(|(_, t, d)| t == text && *d == delivery)
    }
}

pub type ChatTask = tokio::task::JoinHandle<anyhow::Result<App>>;

/// Starts the chat loop for `profile` with `open` open; returns its key
/// sender, what it shows, and its task.
pub fn start(
    profile: Profile,
    open: ConvKey,
) -> (
    mpsc::UnboundedSender<Event>,
    watch::Receiver<Seen>,
    ChatTask,
) {
    let (keys, keys_rx) = mpsc::unbounded_channel();
    let (seen_tx, seen) = watch::channel(Seen::default());
    let task = tokio::spawn(async move {
        let mut terminal = Terminal::new(TestBackend::new(100, 24))?;
        run_with(
            &mut terminal,
            profile,
            Some(open),
            keys_rx,
            || {},
            |app| {
                seen_tx.send_replace(Seen {
                    online: app.connection == Connection::Online,
                    lines: app
                        .conversations
                        .iter()
                        .flat_map(|c| {
                            c.lines
                                .iter()
                                .map(|l| (c.key.clone(), l.text.clone(), l.delivery))
                        })
                        .collect(),
                });
            },
        )
        .await
    });
    (keys, seen, task)
}

/// Waits (at most a minute) until what the chat shows meets `cond`.
pub async fn wait_for(seen: &mut watch::Receiver<Seen>, what: &str, cond: impl Fn(&Seen) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if cond(&seen.borrow_and_update()) {
                return;
            }
            seen.changed().await.expect("the chat loop is running");
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "timed out waiting for {what}: {:?}",
        *seen.borrow()
    );
}

fn key(keys: &mpsc::UnboundedSender<Event>, code: KeyCode, modifiers: KeyModifiers) {
    keys.send(Event::Key(KeyEvent::new(code, modifiers)))
        .expect("the chat loop takes keys");
}

/// Types `text` and Enter.
pub fn typed(keys: &mpsc::UnboundedSender<Event>, text: &str) {
    for c in text.chars() {
        key(keys, KeyCode::Char(c), KeyModifiers::NONE);
    }
    key(keys, KeyCode::Enter, KeyModifiers::NONE);
}

/// Ctrl-C.
pub fn quit(keys: &mpsc::UnboundedSender<Event>) {
    key(keys, KeyCode::Char('c'), KeyModifiers::CONTROL);
}
