//! The chat client without a terminal: key events in, state out; and snapshots
//! of the main screens drawn on ratatui's TestBackend.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Connection, ConvKey, Delivery, Effect, Event, View};
use super::view;
use crate::profile::{HistoryEntry, Mode};

/// 2026-11-30 09:00 UTC, and a minute later for each next message.
const T0: i64 = 1_795_856_400_000;

fn entry(
    from: &str,
    peer: Option<&str>,
    group: Option<&str>,
    mode: Mode,
    text: &str,
    minute: i64,
) -> HistoryEntry {
    HistoryEntry {
        id: minute as u64 + 1,
        mode,
        from: from.into(),
        peer: peer.map(Into::into),
        group: group.map(Into::into),
        text: text.into(),
        sent_at: T0 + minute * 60_000,
        client_id: format!("{minute:032}"),
        expire_secs: None,
        shown_at: None,
        unprinted: false,
    }
}

fn history() -> Vec<HistoryEntry> {
    vec![
        entry("bob", Some("bob"), None, Mode::Normal, "lunch at noon?", 0),
        entry(
            "alice",
            Some("bob"),
            None,
            Mode::Normal,
            "sure, the usual place",
            1,
        ),
        entry(
            "carol",
            None,
            Some("team"),
            Mode::Normal,
            "standup moved to ten",
            2,
        ),
        entry(
            "dave",
            Some("dave"),
            None,
            Mode::Secret,
            "the keys are under the mat",
            3,
        ),
    ]
}

fn app(open: Option<ConvKey>) -> App {
    let mut app = App::new(
        "alice",
        &format!("sha256:{}", "ab".repeat(32)),
        &history(),
        &[],
        open,
    );
    app.update(Event::Connection(Connection::Online));
    app
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn type_text(app: &mut App, text: &str) -> Vec<Effect> {
    text.chars()
        .flat_map(|c| app.update(key(KeyCode::Char(c))))
        .collect()
}

fn enter(app: &mut App) -> Vec<Effect> {
    app.update(key(KeyCode::Enter))
}

fn command(app: &mut App, text: &str) -> Vec<Effect> {
    type_text(app, text);
    enter(app)
}

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 16)).unwrap();
    terminal.draw(|f| view::draw(f, app)).unwrap();
    terminal.backend().to_string()
}

#[test]
fn typing_then_enter_sends_to_the_open_conversation() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    type_text(&mut app, "see you");
    let effects = enter(&mut app);
    let [
        Effect::SendNormal {
            local_id, to, text, ..
        },
    ] = effects.as_slice()
    else {
        panic!("expected one send, got {effects:?}");
    };
    assert_eq!(
        (to, text.as_str()),
        (&ConvKey::Direct("bob".into()), "see you")
    );
    assert!(app.input.is_empty());
    // Not shown before the vault has it.
    assert!(
        app.open_conversation_ref()
            .unwrap()
            .lines
            .iter()
            .all(|l| l.local_id != *local_id)
    );
    app.update(Event::Kept {
        local_id: *local_id,
    });
    let last = app
        .open_conversation_ref()
        .unwrap()
        .lines
        .last()
        .unwrap()
        .clone();
    assert_eq!(last.delivery, Delivery::Pending);
    app.update(Event::Delivered {
        local_id: *local_id,
    });
    assert_eq!(
        app.open_conversation_ref()
            .unwrap()
            .lines
            .last()
            .unwrap()
            .delivery,
        Delivery::Sent
    );
}

#[test]
fn a_secret_chat_sends_secret_with_its_timer() {
    let mut app = app(None);
    command(&mut app, "/secret dave");
    assert_eq!(app.open, Some(ConvKey::Secret("dave".into())));
    command(&mut app, "/timer 30s");
    type_text(&mut app, "gone soon");
    let effects = enter(&mut app);
    assert!(matches!(
        effects.as_slice(),
        [Effect::SendSecret { to, text, expire: Some(30), .. }] if to == "dave" && text == "gone soon"
    ));
    command(&mut app, "/timer off");
    assert_eq!(app.open_conversation_ref().unwrap().timer, None);
}

#[test]
fn alt_enter_inserts_a_new_line() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    type_text(&mut app, "line one");
    app.update(Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT)));
    type_text(&mut app, "line two");
    assert_eq!(app.input, "line one\nline two");
    let effects = enter(&mut app);
    assert!(
        matches!(effects.as_slice(), [Effect::SendNormal { text, .. }] if text == "line one\nline two")
    );
}

#[test]
fn commands_do_what_they_say_and_unknown_ones_say_so() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    assert_eq!(
        command(&mut app, "/verify"),
        [Effect::Verify { user: "bob".into() }]
    );
    assert_eq!(
        command(&mut app, "/trust"),
        [Effect::Trust { user: "bob".into() }]
    );
    assert_eq!(
        command(&mut app, "/group crew bob carol"),
        [Effect::CreateGroup {
            name: "crew".into(),
            members: vec!["bob".into(), "carol".into()]
        }]
    );
    assert_eq!(app.open, Some(ConvKey::Group("crew".into())));
    command(&mut app, "/timer 30s");
    assert!(app.status.contains("secret chat"), "{}", app.status);
    assert!(command(&mut app, "/frobnicate").is_empty());
    assert!(
        app.status.contains("unknown command /frobnicate"),
        "{}",
        app.status
    );
    command(&mut app, "/help");
    assert_eq!(app.view, View::Help);
    app.update(key(KeyCode::Esc));
    assert_eq!(app.view, View::Chat);
    assert_eq!(command(&mut app, "/quit"), [Effect::Quit]);
    assert!(app.quit);
}

#[test]
fn without_an_open_conversation_text_is_kept_and_explained() {
    let mut app = app(None);
    type_text(&mut app, "hello?");
    assert!(enter(&mut app).is_empty());
    assert_eq!(app.input, "hello?");
    assert!(app.status.contains("open a conversation first"));
}

#[test]
fn the_list_is_sorted_by_recent_and_enter_opens_the_highlighted_one() {
    let mut app = app(None);
    let order: Vec<ConvKey> = app.sorted().iter().map(|c| c.key.clone()).collect();
    assert_eq!(
        order,
        [
            ConvKey::Secret("dave".into()),
            ConvKey::Group("team".into()),
            ConvKey::Direct("bob".into())
        ]
    );
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    enter(&mut app);
    assert_eq!(app.open, Some(ConvKey::Direct("bob".into())));
}

#[test]
fn a_message_to_another_conversation_raises_its_unread_count_and_rings() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    let effects = app.update(Event::Incoming(vec![
        entry("carol", None, Some("team"), Mode::Normal, "ping", 10),
        entry("carol", None, Some("team"), Mode::Normal, "ping again", 11),
    ]));
    assert_eq!(effects, [Effect::Bell]);
    let team = app
        .conversations
        .iter()
        .find(|c| c.key == ConvKey::Group("team".into()))
        .unwrap();
    assert_eq!(team.unread, 2);
    // One for the open conversation: shown, no bell, no unread.
    let effects = app.update(Event::Incoming(vec![entry(
        "bob",
        Some("bob"),
        None,
        Mode::Normal,
        "here",
        12,
    )]));
    assert!(effects.is_empty());
    assert_eq!(app.open_conversation_ref().unwrap().unread, 0);
    command(&mut app, "/secret dave");
    command(&mut app, "/group team carol");
    assert_eq!(
        app.open_conversation_ref().unwrap().unread,
        0,
        "opening reads it"
    );
}

#[test]
fn scrollback_and_search() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    app.update(key(KeyCode::PageUp));
    assert_eq!(app.scroll, 10);
    app.update(Event::ScrollDown);
    assert_eq!(app.scroll, 7);
    app.update(key(KeyCode::PageDown));
    assert_eq!(app.scroll, 0);
    command(&mut app, "/search usual");
    assert_eq!(app.search.as_deref(), Some("usual"));
    assert!(
        app.status.starts_with("1 messages contain"),
        "{}",
        app.status
    );
    assert!(screen(&app).contains("sure, the usual place"));
    app.update(key(KeyCode::Esc));
    assert_eq!(app.search, None);
}

#[test]
fn a_message_from_sotto_send_is_shown_and_sent_like_a_typed_one() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    type_text(&mut app, "a draft");
    let effects = app.update(Event::Forwarded {
        client_id: [9; 16],
        to: ConvKey::Secret("dave".into()),
        text: "from a script".into(),
        expire: Some(30),
    });
    let [
        Effect::SendSecret {
            local_id,
            to,
            text,
            expire: Some(30),
            ..
        },
    ] = effects.as_slice()
    else {
        panic!("expected one secret send, got {effects:?}");
    };
    assert_eq!((to.as_str(), text.as_str()), ("dave", "from a script"));
    // The user's own conversation and draft are left alone.
    assert_eq!(app.open, Some(ConvKey::Direct("bob".into())));
    assert_eq!(app.input, "a draft");
    let last_in_dave = |app: &App| {
        let dave = app
            .conversations
            .iter()
            .find(|c| c.key == ConvKey::Secret("dave".into()));
        dave.unwrap().lines.last().unwrap().clone()
    };
    app.update(Event::Kept {
        local_id: *local_id,
    });
    assert_eq!(
        (
            last_in_dave(&app).from.as_str(),
            last_in_dave(&app).delivery
        ),
        ("alice", Delivery::Pending)
    );
    app.update(Event::Delivered {
        local_id: *local_id,
    });
    assert_eq!(last_in_dave(&app).delivery, Delivery::Sent);

    let effects = app.update(Event::Forwarded {
        client_id: [7; 16],
        to: ConvKey::Group("team".into()),
        text: "to the team".into(),
        expire: None,
    });
    assert!(
        matches!(effects.as_slice(), [Effect::SendNormal { client_id, to: ConvKey::Group(g), text, .. }]
            if *client_id == [7; 16] && g == "team" && text == "to the team"),
        "{effects:?}"
    );
}

#[test]
fn sotto_send_hears_stored_only_once_the_relay_stored_it() {
    use super::forwarded::Owing;
    use crate::control::{Answer, Forwarded, SendRequest};

    let mut owing = Owing::default();
    let mut ask = |to: ConvKey| {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let request = SendRequest {
            to,
            text: "hi".into(),
            expire_secs: None,
        };
        let Event::Forwarded { client_id, .. } = owing.take(Forwarded { request, answer }) else {
            panic!("a forwarded request becomes Event::Forwarded");
        };
        (super::app::local_id_of(&client_id), answered)
    };
    let (stored, mut stored_answer) = ask(ConvKey::Secret("dave".into()));
    let (refused, mut refused_answer) = ask(ConvKey::Direct("bob".into()));
    let (_, mut waiting_answer) = ask(ConvKey::Group("team".into()));

    let online = Connection::Online;
    owing.settle(
        &Event::Connection(Connection::Connecting),
        &Connection::Connecting,
    );
    owing.settle(
        &Event::Delivered {
            local_id: stored ^ 1,
        },
        &online,
    );
    assert!(stored_answer.try_recv().is_err(), "not this message's line");
    owing.settle(&Event::Delivered { local_id: stored }, &online);
    assert_eq!(
        stored_answer.try_recv().unwrap(),
        Answer::Stored("sent to dave (secret)".into())
    );
    let reason = "the relay refused: no such user".to_owned();
    owing.settle(
        &Event::Failed {
            local_id: refused,
            reason: reason.clone(),
        },
        &online,
    );
    assert_eq!(
        refused_answer.try_recv().unwrap(),
        Answer::NotStored(reason)
    );
    assert!(
        waiting_answer.try_recv().is_err(),
        "still waiting for the relay"
    );

    let offline = Connection::Offline { retry_in_secs: 2 };
    owing.settle(&Event::Connection(offline.clone()), &offline);
    let Answer::NotStored(why) = waiting_answer.try_recv().unwrap() else {
        panic!("an unreachable relay stored nothing");
    };
    assert!(
        why.contains("group team") && why.contains("has not stored it"),
        "{why}"
    );
}

#[test]
fn the_status_bar_says_when_the_relay_is_away() {
    let mut app = app(None);
    app.update(Event::Connection(Connection::Offline { retry_in_secs: 4 }));
    assert!(screen(&app).contains("relay unreachable, retrying in 4s"));
}

#[test]
fn snapshot_list_with_unread_counts() {
    let mut app = app(None);
    app.update(Event::Incoming(vec![
        entry("carol", None, Some("team"), Mode::Normal, "ping", 10),
        entry("bob", Some("bob"), None, Mode::Normal, "are you there?", 11),
    ]));
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn snapshot_normal_conversation() {
    insta::assert_snapshot!(screen(&app(Some(ConvKey::Direct("bob".into())))));
}

#[test]
fn snapshot_secret_conversation() {
    let mut app = app(Some(ConvKey::Secret("dave".into())));
    command(&mut app, "/timer 30s");
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn snapshot_verify_view() {
    let mut app = app(Some(ConvKey::Secret("dave".into())));
    app.update(Event::VerifyText(
        "Safety number with dave:\n\n10503 42548 80774 99592\n00391 24744 37551 90772\n35027 59773 50747 20445\n\nCompare it with the one dave sees."
            .into(),
    ));
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn snapshot_help_view() {
    let mut app = App::new(
        "alice",
        &format!("sha256:{}", "ab".repeat(32)),
        &history(),
        &[],
        None,
    );
    app.update(Event::Connection(Connection::Online));
    command(&mut app, "/help");
    let mut terminal = Terminal::new(TestBackend::new(80, 26)).unwrap();
    terminal.draw(|f| view::draw(f, &app)).unwrap();
    insta::assert_snapshot!(terminal.backend().to_string());
}

#[test]
fn a_disappearing_message_leaves_the_running_client_at_its_time() {
    // A 2 s timer, shown at T0: the clock is the app's, moved by Tick events.
    let mut timed = entry("dave", Some("dave"), None, Mode::Secret, "gone in two", 0);
    timed.expire_secs = Some(2);
    timed.shown_at = Some(T0);
    let mut app = App::new(
        "alice",
        "sha256:00",
        &[timed],
        &[],
        Some(ConvKey::Secret("dave".into())),
    );
    let texts = |app: &App| -> Vec<String> {
        app.open_conversation_ref()
            .map(|c| c.lines.iter().map(|l| l.text.clone()).collect())
            .unwrap_or_default()
    };
    app.update(Event::Tick { now_ms: T0 + 1_999 });
    assert_eq!(texts(&app), ["gone in two"]);
    app.update(Event::Tick { now_ms: T0 + 2_000 });
    assert!(texts(&app).is_empty(), "{:?}", texts(&app));
}

#[test]
fn setting_a_timer_tells_the_peer_and_a_peers_timer_is_applied() {
    let mut app = app(Some(ConvKey::Secret("dave".into())));
    let effects = command(&mut app, "/timer 30s");
    assert!(
        matches!(effects.as_slice(), [Effect::SetTimer { peer, secs: Some(30) }] if peer == "dave"),
        "{effects:?}"
    );
    app.update(Event::TimerSet {
        peer: "dave".into(),
        secs: Some(5),
    });
    assert_eq!(app.open_conversation_ref().unwrap().timer, Some(5));
    // Our next message there carries the timer and goes at its time.
    let effects = command(&mut app, "brief");
    let [
        Effect::SendSecret {
            expire: Some(5),
            local_id,
            ..
        },
    ] = effects.as_slice()
    else {
        panic!("{effects:?}");
    };
    app.update(Event::Kept {
        local_id: *local_id,
    });
    assert!(
        app.open_conversation_ref()
            .unwrap()
            .lines
            .iter()
            .any(|l| l.text == "brief")
    );
    let now = app.now_ms;
    app.update(Event::Tick {
        now_ms: now + 60_000,
    });
    assert!(
        app.open_conversation_ref()
            .unwrap()
            .lines
            .iter()
            .all(|l| l.text != "brief")
    );
}
