//! `sotto chat`: the terminal client.
//!
//! - [`app`]: the state and its update logic (events in, state and effects out);
//! - `keys`: what each key does (the list, the editor, history, search);
//! - [`view`]: drawing the state with ratatui;
//! - [`transcript`]: a conversation as rows (headers, indented further
//!   rows, marks), which [`wrap`] lays out by display width;
//! - [`network`]: the task that owns the profile and the relay connection;
//! - [`forwarded`]: the answers owed to `sotto send` processes that handed
//!   this client a message through [`crate::control`]'s socket.
//!
//! The loop: an event (a key from the terminal, a delivery from the network
//! task, or a message from `sotto send`) → [`app::App::update`] → effects go
//! to the network task (or ring the bell) → redraw. The terminal is restored
//! on exit, on Ctrl-C and on panic.

pub mod app;
pub mod forwarded;
mod keys;
pub mod network;
pub mod transcript;
pub mod view;

/// Text laid out by display width (shared with `sync` and `sotto-warrant`).
pub use sotto_proto::layout as wrap;

#[cfg(test)]
mod tests;

use anyhow::Result;
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event as TermEvent, MouseEventKind};
use tokio::sync::mpsc::{self, UnboundedReceiver};

use crate::profile::Profile;
use app::{App, ConvKey, Effect, Event};

/// Runs the chat client in this terminal until the user quits.
pub async fn run(profile: Profile, open: Option<ConvKey>) -> Result<()> {
    let (keys_tx, keys_rx) = mpsc::unbounded_channel();
    // ratatui::init enters raw mode and the alternate screen, and installs a
    // panic hook that restores the terminal before the panic is printed.
    let mut terminal = ratatui::init();
    let _ = ratatui::crossterm::execute!(
        std::io::stdout(),
        event::EnableMouseCapture,
        event::EnableBracketedPaste
    );
    std::thread::spawn(move || {
        while let Ok(ev) = event::read() {
            let ev = match ev {
                TermEvent::Key(k) => Event::Key(k),
                TermEvent::Mouse(m) if m.kind == MouseEventKind::ScrollUp => Event::ScrollUp,
                TermEvent::Mouse(m) if m.kind == MouseEventKind::ScrollDown => Event::ScrollDown,
                TermEvent::Resize(width, height) => Event::Resize { width, height },
                TermEvent::Paste(text) => Event::Paste(text),
                _ => continue,
            };
            if keys_tx.send(ev).is_err() {
                break;
            }
        }
    });
    let bell = || {
        use std::io::Write;
        let _ = std::io::stdout().write_all(b"\x07");
        let _ = std::io::stdout().flush();
    };
    let result = run_with(&mut terminal, profile, open, keys_rx, bell, |_| {}).await;
    let _ = ratatui::crossterm::execute!(
        std::io::stdout(),
        event::DisableBracketedPaste,
        event::DisableMouseCapture
    );
    ratatui::restore();
    result.map(drop)
}

/// The event loop on any backend: `keys` feeds terminal events, `observe` sees
/// the state after every update (tests use both, with ratatui's TestBackend).
pub async fn run_with<B: Backend>(
    terminal: &mut Terminal<B>,
    profile: Profile,
    open: Option<ConvKey>,
    mut keys: UnboundedReceiver<Event>,
    bell: impl Fn(),
    mut observe: impl FnMut(&App),
) -> Result<App>
where
    B::Error: Send + Sync + 'static,
{
    let mut app = App::new(
        &profile.config.username,
        &profile.config.fingerprint,
        profile.history(),
        &profile.pending,
        open,
    );
    // Times are shown in the user's zone (TZ, else the system's; UTC if neither is readable).
    app.zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    app.set_timers(&profile.timers, &profile.secret_groups.timers_by_name());
    if let Ok(size) = terminal.size() {
        app.update(Event::Resize {
            width: size.width,
            height: size.height,
        });
    }
    // The clock that takes disappearing messages away at their time.
    let mut clock = tokio::time::interval(std::time::Duration::from_secs(1));
    // This process holds the profile, so `sotto send` hands its messages here.
    let (forwarded_tx, mut forwarded_rx) = mpsc::unbounded_channel();
    let control = match crate::control::serve(&profile.dir, forwarded_tx) {
        Ok(socket) => Some(socket),
        Err(e) => {
            app.update(Event::Notice(format!(
                "`sotto send` cannot send through this client ({e}): it waits until you quit"
            )));
            None
        }
    };
    let mut owing = forwarded::Owing::default();
    let (effects_tx, effects_rx) = mpsc::unbounded_channel();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let network = tokio::spawn(network::run(profile, effects_rx, events_tx));
    loop {
        terminal.draw(|frame| view::draw(frame, &app))?;
        observe(&app);
        if app.quit {
            break;
        }
        let event = tokio::select! {
            Some(e) = keys.recv() => e,
            Some(e) = events_rx.recv() => e,
            Some(f) = forwarded_rx.recv() => owing.take(f),
            _ = clock.tick() => Event::Tick { now_ms: crate::profile::now_ms() },
            else => break,
        };
        // Keys that came in a burst (typing fast, a paste without bracketed
        // paste) are all taken before the next redraw.
        let mut batch = vec![event];
        while batch.len() < 4096 {
            match keys.try_recv() {
                Ok(key) => batch.push(key),
                Err(_) => break,
            }
        }
        for event in batch {
            let connection = match &event {
                Event::Connection(now) => now,
                _ => &app.connection,
            };
            owing.settle(&event, connection);
            for effect in app.update(event) {
                match effect {
                    Effect::Bell => bell(),
                    Effect::Quit => {}
                    other => {
                        let _ = effects_tx.send(other);
                    }
                }
            }
            if app.quit {
                break;
            }
        }
    }
    // No new requests; those not answered yet hear that the client quit.
    drop(control);
    drop(effects_tx);
    // Let the network task finish what it was doing (it saves before it
    // talks to the relay), then make sure it is gone: it holds the profile,
    // and the profile is locked until it is dropped.
    let mut network = network;
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut network)
        .await
        .is_err()
    {
        network.abort();
        let _ = network.await;
    }
    Ok(app)
}
