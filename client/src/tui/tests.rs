//! The chat client without a terminal: key events in, state out; and snapshots
//! of the main screens drawn on ratatui's TestBackend.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Connection, ConvKey, Delivery, Effect, Event, View};
use super::view;
use crate::profile::{HistoryEntry, Mode};

/// 2026-11-28 09:00 UTC, and a minute later for each next message.
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
        delivered: false,
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
    settle(&mut app);
    app
}

/// Online, at 09:30 on the day of [`T0`], in an 80×16 terminal.
fn settle(app: &mut App) {
    app.update(Event::Connection(Connection::Online));
    app.update(Event::Tick {
        now_ms: T0 + 30 * 60_000,
    });
    app.update(Event::Resize {
        width: 80,
        height: 16,
    });
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
    screen_at(app, 80, 16)
}

fn screen_at(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
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
    assert_eq!(app.input_text(), "line one\nline two");
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
    // Opened only once the relay created it.
    assert_eq!(app.open, Some(ConvKey::Direct("bob".into())));
    app.update(Event::GroupCreated {
        name: "crew".into(),
    });
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
    assert_eq!(app.input_text(), "hello?");
    assert!(app.status.contains("open a chat first"), "{}", app.status);
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
    app.update(Event::GroupCreated {
        name: "team".into(),
    });
    assert_eq!(
        app.open_conversation_ref().unwrap().unread,
        0,
        "opening reads it"
    );
}

#[test]
fn scrolling_stops_at_the_oldest_message() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    let many: Vec<HistoryEntry> = (0..30)
        .map(|n| {
            entry(
                "bob",
                Some("bob"),
                None,
                Mode::Normal,
                &format!("number {n}"),
                4 + n,
            )
        })
        .collect();
    app.update(Event::Incoming(many));
    // 32 rows, 10 of them visible in an 80×16 terminal.
    assert_eq!(app.max_scroll(), 22);
    app.update(key(KeyCode::PageUp));
    assert_eq!(app.scroll, 10);
    app.update(key(KeyCode::PageUp));
    app.update(key(KeyCode::PageUp));
    assert_eq!(app.scroll, 22, "clamped at the oldest message");
    assert!(screen(&app).contains("lunch at noon?"));
    app.update(Event::ScrollDown);
    assert_eq!(app.scroll, 19);
    for _ in 0..5 {
        app.update(key(KeyCode::PageDown));
    }
    assert_eq!(app.scroll, 0);
    assert!(screen(&app).contains("number 29"));
}

#[test]
fn search_ignores_case_counts_in_the_singular_and_jumps_with_n() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    command(&mut app, "/search USUAL");
    assert_eq!(app.search.as_ref().map(|s| s.term.as_str()), Some("USUAL"));
    assert!(
        app.status.starts_with("1 message contains \"USUAL\""),
        "{}",
        app.status
    );
    assert_eq!(app.current_hit(), Some(1));
    let many: Vec<HistoryEntry> = (0..30)
        .map(|n| {
            let text = if n % 10 == 0 {
                format!("Usual {n}")
            } else {
                format!("filler {n}")
            };
            entry("bob", Some("bob"), None, Mode::Normal, &text, 4 + n)
        })
        .collect();
    app.update(Event::Incoming(many));
    command(&mut app, "/search usual");
    assert!(
        app.status.starts_with("4 messages contain"),
        "{}",
        app.status
    );
    // The newest hit first; N goes back, n forward, and the view follows.
    assert_eq!(app.current_hit(), Some(22));
    app.update(key(KeyCode::Char('N')));
    app.update(key(KeyCode::Char('N')));
    assert_eq!(app.current_hit(), Some(2));
    assert!(app.scroll > 0);
    assert!(screen(&app).contains("Usual 0"), "{}", screen(&app));
    app.update(key(KeyCode::Char('N')));
    assert_eq!(app.current_hit(), Some(1), "stops at the oldest");
    app.update(key(KeyCode::Char('n')));
    assert_eq!(app.current_hit(), Some(2));
    command(&mut app, "/search nothing like it");
    assert_eq!(app.search, None);
    assert!(app.status.starts_with("no message here contains"));
    command(&mut app, "/search usual");
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
    assert_eq!(app.input_text(), "a draft");
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
    let mut app = app(None);
    app.update(Event::Resize {
        width: 80,
        height: 24,
    });
    command(&mut app, "/help");
    insta::assert_snapshot!(screen_at(&app, 80, 24));
    // It scrolls to its last line, and no further.
    for _ in 0..10 {
        app.update(key(KeyCode::PageDown));
    }
    let end = screen_at(&app, 80, 24);
    assert!(end.contains("/quit               quit"), "{end}");
    // Clamped at the end: one Up shows one line more at the top.
    app.update(key(KeyCode::Up));
    assert!(screen_at(&app, 80, 24).contains("lines 21–39 of 40"));
    app.update(key(KeyCode::Down));
    insta::assert_snapshot!("help_view_scrolled_to_the_end", end);
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
    // Typed now (the real clock), gone a minute later.
    app.update(Event::Tick {
        now_ms: crate::profile::now_ms() + 60_000,
    });
    assert!(
        app.open_conversation_ref()
            .unwrap()
            .lines
            .iter()
            .all(|l| l.text != "brief")
    );
}

fn ctrl(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn conv(app: &App, key: &ConvKey) -> super::app::Conversation {
    app.conversations
        .iter()
        .find(|c| &c.key == key)
        .unwrap()
        .clone()
}

#[test]
fn snapshot_the_highlight_stays_on_its_chat_when_a_message_re_sorts_the_list() {
    let mut app = app(None);
    let team = ConvKey::Group("team".into());
    // dave, team, bob: the highlight moves from dave to team.
    app.update(key(KeyCode::Down));
    assert_eq!(app.selected, Some(team.clone()));
    // bob writes: bob goes to the top, team is now the last row.
    app.update(Event::Incoming(vec![entry(
        "bob",
        Some("bob"),
        None,
        Mode::Normal,
        "are you there?",
        10,
    )]));
    let order: Vec<ConvKey> = app.sorted().iter().map(|c| c.key.clone()).collect();
    assert_eq!(order[2], team);
    assert_eq!(
        app.selected,
        Some(team.clone()),
        "the highlight follows the chat"
    );
    let shown = screen(&app);
    assert!(shown.contains("│> #team"), "{shown}");
    insta::assert_snapshot!(shown);
    enter(&mut app);
    assert_eq!(app.open, Some(team));
}

#[test]
fn a_secret_reply_never_lands_in_the_normal_chat_after_a_re_sort() {
    // Bob's finding: alice's normal chat is open, he highlights the secret
    // one, a message re-sorts the list, he presses Enter and types.
    let mut app = App::new(
        "bob",
        "sha256:00",
        &[
            entry("alice", Some("alice"), None, Mode::Normal, "normal hi", 0),
            entry("alice", Some("alice"), None, Mode::Secret, "secret hi", 1),
            entry("carol", Some("carol"), None, Mode::Normal, "hey", 2),
        ],
        &[],
        Some(ConvKey::Direct("alice".into())),
    );
    settle(&mut app);
    let secret = ConvKey::Secret("alice".into());
    for _ in 0..3 {
        if app.selected != Some(secret.clone()) {
            app.update(key(KeyCode::Tab));
        }
    }
    assert_eq!(app.selected, Some(secret.clone()));
    app.update(Event::Incoming(vec![entry(
        "alice",
        Some("alice"),
        None,
        Mode::Normal,
        "another normal one",
        5,
    )]));
    enter(&mut app);
    assert_eq!(app.open, Some(secret));
    let effects = command(&mut app, "the secret reply");
    assert!(
        matches!(effects.as_slice(), [Effect::SendSecret { to, .. }] if to == "alice"),
        "{effects:?}"
    );
}

#[test]
fn from_a_secret_chat_the_normal_one_with_the_same_person_needs_a_second_enter() {
    let mut app = app(Some(ConvKey::Secret("dave".into())));
    app.update(Event::Incoming(vec![entry(
        "dave",
        Some("dave"),
        None,
        Mode::Normal,
        "plain",
        10,
    )]));
    let normal = ConvKey::Direct("dave".into());
    for _ in 0..4 {
        if app.selected != Some(normal.clone()) {
            app.update(key(KeyCode::Tab));
        }
    }
    assert_eq!(app.selected, Some(normal.clone()));
    enter(&mut app);
    assert_eq!(app.open, Some(ConvKey::Secret("dave".into())), "not yet");
    assert!(app.alert && app.status.contains("NOT end-to-end encrypted"));
    // Any other key takes the question back.
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::BackTab));
    enter(&mut app);
    assert_eq!(app.open, Some(ConvKey::Secret("dave".into())));
    enter(&mut app);
    assert_eq!(app.open, Some(normal));
    assert!(!app.alert);
}

#[test]
fn chat_opens_a_normal_chat_and_nothing_is_left_when_it_stays_empty() {
    let mut app = app(None);
    command(&mut app, "/chat erin");
    assert_eq!(app.open, Some(ConvKey::Direct("erin".into())));
    assert!(
        app.sorted()
            .iter()
            .any(|c| c.key == ConvKey::Direct("erin".into()))
    );
    app.update(key(KeyCode::Esc));
    assert_eq!(app.open, None);
    assert!(
        app.sorted()
            .iter()
            .all(|c| c.key != ConvKey::Direct("erin".into()))
    );
    enter(&mut app);
    assert_eq!(app.open, None, "a chat gone from the list is not opened");
    // A group the relay refuses is never opened nor listed.
    let effects = command(&mut app, "/group ghosts nosuchuser");
    assert!(matches!(effects.as_slice(), [Effect::CreateGroup { .. }]));
    app.update(Event::Warning(
        "group #ghosts was not created: the relay refused: no account named nosuchuser".into(),
    ));
    assert!(app.alert);
    assert!(
        app.sorted()
            .iter()
            .all(|c| c.key != ConvKey::Group("ghosts".into()))
    );
    assert_eq!(app.open, None);
    command(&mut app, "/chat bad name!");
    assert!(app.alert, "{}", app.status);
}

#[test]
fn the_status_line_follows_the_open_chat() {
    let mut app = app(Some(ConvKey::Secret("dave".into())));
    command(&mut app, "/timer 30s");
    assert!(app.status.contains("30 s"), "{}", app.status);
    command(&mut app, "/chat bob");
    let shown = screen(&app);
    let status = shown.lines().last().unwrap();
    assert!(!status.contains("30"), "{status}");
    assert!(status.contains("normal"), "{status}");
}

#[test]
fn editing_moves_by_characters_and_words_and_deletes_with_ctrl_u_and_ctrl_w() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    type_text(&mut app, "see you tomorrow");
    app.update(ctrl('w'));
    assert_eq!(app.input_text(), "see you ");
    type_text(&mut app, "later");
    app.update(Event::Key(KeyEvent::new(
        KeyCode::Left,
        KeyModifiers::CONTROL,
    )));
    type_text(&mut app, "much ");
    assert_eq!(app.input_text(), "see you much later");
    app.update(key(KeyCode::Home));
    type_text(&mut app, "I'll ");
    app.update(key(KeyCode::End));
    type_text(&mut app, "!");
    assert_eq!(app.input_text(), "I'll see you much later!");
    app.update(key(KeyCode::Left));
    app.update(ctrl('u'));
    assert_eq!(app.input_text(), "!");
    app.update(key(KeyCode::Backspace));
    app.update(key(KeyCode::Delete));
    assert!(app.input.is_empty());
}

#[test]
fn ctrl_p_and_ctrl_n_walk_the_sent_messages_and_come_back_to_the_draft() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    command(&mut app, "first");
    command(&mut app, "second\nwith two lines");
    type_text(&mut app, "a draft");
    app.update(ctrl('p'));
    assert_eq!(app.input_text(), "second\nwith two lines");
    app.update(ctrl('p'));
    assert_eq!(app.input_text(), "first");
    app.update(ctrl('p'));
    assert_eq!(app.input_text(), "first", "stays at the oldest");
    app.update(ctrl('n'));
    app.update(ctrl('n'));
    assert_eq!(app.input_text(), "a draft");
    // A recalled message is edited and sent like a typed one.
    app.update(ctrl('p'));
    app.update(ctrl('p'));
    type_text(&mut app, " again");
    let effects = enter(&mut app);
    assert!(
        matches!(effects.as_slice(), [Effect::SendNormal { text, .. }] if text == "first again"),
        "{effects:?}"
    );
}

#[test]
fn a_64_kib_paste_is_one_event_and_is_sent_whole() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    let line = "pasted text with\ttabs and 東京 and emoji 👩\u{200d}👩\u{200d}👧\r\n";
    let mut pasted = String::new();
    while pasted.len() + line.len() <= sotto_proto::MAX_TEXT {
        pasted.push_str(line);
    }
    let started = std::time::Instant::now();
    app.update(Event::Paste(pasted.clone()));
    screen(&app);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let effects = enter(&mut app);
    let [Effect::SendNormal { text, .. }] = effects.as_slice() else {
        panic!("{effects:?}");
    };
    assert_eq!(*text, pasted.replace("\r\n", "\n"));
}

#[test]
fn blank_messages_are_refused_with_the_cli_s_words_and_kept() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    type_text(&mut app, "   ");
    app.update(Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT)));
    assert!(enter(&mut app).is_empty());
    assert_eq!(
        app.status,
        crate::outbox::refusal(" ").unwrap(),
        "the same words as `sotto send`"
    );
    assert!(app.alert);
    assert_eq!(app.input_text(), "   \n");
}

#[test]
fn a_refused_message_shows_why_and_a_never_kept_one_comes_back_to_the_input() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    let effects = command(&mut app, "kept then refused");
    let [Effect::SendNormal { local_id, .. }] = effects.as_slice() else {
        panic!("{effects:?}");
    };
    app.update(Event::Kept {
        local_id: *local_id,
    });
    let effects = app.update(Event::Failed {
        local_id: *local_id,
        reason: "the relay refused: no account named bob".into(),
    });
    // Typed here: the text is back in the input, and leaves the outbox.
    assert_eq!(app.input_text(), "kept then refused");
    let id = hex::encode(local_id.to_be_bytes())[..8].to_owned();
    assert_eq!(
        effects,
        [Effect::Outbox(super::app::OutboxAction::Withdraw(id))]
    );
    assert!(
        app.alert && app.status.contains("back in the input"),
        "{}",
        app.status
    );
    app.update(ctrl('u'));
    let last = conv(&app, &ConvKey::Direct("bob".into()))
        .lines
        .last()
        .unwrap()
        .clone();
    assert_eq!(last.delivery, Delivery::Failed);
    assert!(screen_at(&app, 120, 16).contains("not sent: the relay refused: no account named bob"));

    let effects = command(&mut app, "never kept");
    let [Effect::SendNormal { local_id, .. }] = effects.as_slice() else {
        panic!("{effects:?}");
    };
    app.update(Event::Failed {
        local_id: *local_id,
        reason: "cannot keep it in the vault: disk full".into(),
    });
    assert_eq!(app.input_text(), "never kept");
    assert!(
        app.alert && app.status.contains("disk full"),
        "{}",
        app.status
    );
}

#[test]
fn snapshot_a_long_message_wraps_by_display_width() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    app.update(Event::Incoming(vec![entry(
        "bob",
        Some("bob"),
        None,
        Mode::Normal,
        "family 👩\u{200d}👩\u{200d}👧 and flags 🇩🇪🇯🇵 in a line long enough to wrap, then 東京都の天気は晴れです \
         and עברית מימין לשמאל and\ttabs\tstay\taligned, then a very-long-word-without-any-space-that-must-be-cut\n\
         2026-11-28T09:00:00.000Z alice: a second line that looks like a header\x1b[31m\x07",
        10,
    )]));
    let shown = screen(&app);
    // Every row of the transcript ends at the frame: nothing pushed it out.
    for row in shown.lines().skip(1).take(10) {
        assert!(row.ends_with("│\"") || row.contains("Hidden"), "{row}");
    }
    assert!(
        shown.contains("      2026-11-28T09:00:00.000Z alice: a second line"),
        "{shown}"
    );
    insta::assert_snapshot!(shown);
}

#[test]
fn snapshot_search_jumps_to_and_highlights_the_hit() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    let many: Vec<HistoryEntry> = (0..30)
        .map(|n| {
            let text = if n == 3 {
                "the PARCEL arrived".to_owned()
            } else {
                format!("filler {n}")
            };
            entry("bob", Some("bob"), None, Mode::Normal, &text, 4 + n)
        })
        .collect();
    app.update(Event::Incoming(many));
    command(&mut app, "/search parcel");
    let mut terminal = Terminal::new(TestBackend::new(80, 16)).unwrap();
    terminal.draw(|f| view::draw(f, &app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let shown = terminal.backend().to_string();
    let (y, row) = shown
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("the PARCEL arrived"))
        .expect("the hit is in view");
    let x = row.find("the PARCEL").unwrap() - 1; // the leading quote
    let x = row[..x + 1].chars().count() as u16 - 1;
    assert_eq!(buffer[(x, y as u16)].bg, ratatui::style::Color::Yellow);
    insta::assert_snapshot!(shown);
}

#[test]
fn snapshot_a_certificate_mismatch_is_shown_with_both_fingerprints() {
    let mut app = app(Some(ConvKey::Direct("bob".into())));
    app.update(Event::Connection(Connection::CertificateMismatch {
        relay: "relay.example:4433".into(),
        pinned: format!("sha256:{}", "ab".repeat(32)),
        presented: format!("sha256:{}", "cd".repeat(32)),
    }));
    let shown = screen_at(&app, 80, 24);
    assert!(shown.contains(&"ab".repeat(32)) && shown.contains(&"cd".repeat(32)));
    insta::assert_snapshot!(shown);
}

#[test]
fn a_receipt_marks_a_secret_message_delivered_and_the_relays_answer_never_undoes_it() {
    let mut app = app(Some(ConvKey::Secret("dave".into())));
    let effects = command(&mut app, "got it?");
    let [Effect::SendSecret { local_id, .. }] = effects.as_slice() else {
        panic!("{effects:?}");
    };
    let local_id = *local_id;
    app.update(Event::Kept { local_id });
    app.update(Event::Receipt {
        local_ids: vec![local_id],
    });
    app.update(Event::Delivered { local_id });
    let last = conv(&app, &ConvKey::Secret("dave".into()))
        .lines
        .last()
        .unwrap()
        .clone();
    assert_eq!(last.delivery, Delivery::Delivered);
    assert!(
        screen(&app).contains("alice: got it? ✓✓"),
        "{}",
        screen(&app)
    );
    // From the history too: our delivered line, after a restart.
    let mut sent = entry("alice", Some("dave"), None, Mode::Secret, "from before", 5);
    sent.delivered = true;
    let app = App::new("alice", "sha256:00", &[sent], &[], None);
    assert_eq!(
        conv(&app, &ConvKey::Secret("dave".into())).lines[0].delivery,
        Delivery::Delivered
    );
}

#[test]
fn a_typed_secret_message_goes_to_the_open_secret_chat_whatever_is_highlighted() {
    let mut app = app(Some(ConvKey::Secret("dave".into())));
    app.update(Event::Incoming(vec![entry(
        "dave",
        Some("dave"),
        None,
        Mode::Normal,
        "plain",
        10,
    )]));
    type_text(&mut app, "for your eyes only");
    let normal = ConvKey::Direct("dave".into());
    for _ in 0..4 {
        if app.selected != Some(normal.clone()) {
            app.update(key(KeyCode::Tab));
        }
    }
    // Enter with text sends it to the open chat: the list's highlight
    // never redirects it, and opening another chat needs an empty input.
    let effects = enter(&mut app);
    assert!(
        matches!(effects.as_slice(), [Effect::SendSecret { to, text, .. }]
            if to == "dave" && text == "for your eyes only"),
        "{effects:?}"
    );
    assert_eq!(app.open, Some(ConvKey::Secret("dave".into())));
}

#[test]
fn snapshot_a_normal_message_turns_delivered_when_the_relay_says_it_was_acknowledged() {
    use crate::delivery;
    use crate::profile::{Profile, ProfileConfig};
    use sotto_proto::v1::Delivered;

    let dir = tempfile::tempdir().unwrap();
    let config = ProfileConfig {
        relay: "127.0.0.1:4433".into(),
        fingerprint: format!("sha256:{}", "ab".repeat(32)),
        username: "alice".into(),
    };
    let pass = "correct horse battery";
    let profile_dir = dir.path().join("alice");
    let mut profile = Profile::create(
        &profile_dir,
        config,
        crate::identity::Identity::generate(),
        pass,
    )
    .unwrap();
    let history = [
        ("alice", Some("bob"), None, "lunch at noon?", 1),
        ("bob", Some("bob"), None, "sure", 2),
        ("alice", Some("carol"), None, "are you coming?", 3),
        ("alice", Some("bob"), None, "or one?", 4),
        ("alice", None, Some("team"), "standup at ten", 5),
    ];
    for (from, peer, group, text, minute) in history {
        let mut e = entry(from, peer, group, Mode::Normal, text, minute);
        // A line is found by its client id's first eight bytes.
        e.client_id = format!("{minute:02}").repeat(16);
        profile.remember(e);
    }
    let bob = ConvKey::Direct("bob".into());
    let mut app = App::new(
        "alice",
        "sha256:00",
        profile.history(),
        &[],
        Some(bob.clone()),
    );
    settle(&mut app);
    let marks = |app: &App, key: &ConvKey| -> Vec<(String, Delivery)> {
        conv(app, key)
            .lines
            .iter()
            .map(|l| (l.text.clone(), l.delivery))
            .collect()
    };
    let line = |text: &str, delivery| (text.to_owned(), delivery);
    assert_eq!(
        marks(&app, &bob),
        [
            line("lunch at noon?", Delivery::Sent),
            line("sure", Delivery::Received),
            line("or one?", Delivery::Sent),
        ]
    );

    // The relay: bob's client acknowledged alice's messages up to the first
    // (its id is minute + 1). Only that chat's, and only up to it.
    let delivered = Delivered {
        peer: "bob".into(),
        group: String::new(),
        upto: 2,
    };
    let marked = delivery::apply(&mut profile, &delivered);
    assert_eq!(marked.len(), 1);
    app.update(super::network::receipt(&marked));
    assert_eq!(
        marks(&app, &bob),
        [
            line("lunch at noon?", Delivery::Delivered),
            line("sure", Delivery::Received),
            line("or one?", Delivery::Sent),
        ]
    );
    let shown = screen(&app);
    assert!(shown.contains("alice: lunch at noon? ✓✓"), "{shown}");
    assert!(shown.contains("alice: or one? ✓ "), "{shown}");
    insta::assert_snapshot!(shown);
    let carol = ConvKey::Direct("carol".into());
    assert_eq!(
        marks(&app, &carol),
        [line("are you coming?", Delivery::Sent)]
    );
    // Told again, or told of another chat by a name that is a group's: nothing more.
    assert!(delivery::apply(&mut profile, &delivered).is_empty());
    let team_as_peer = Delivered {
        peer: "team".into(),
        group: String::new(),
        upto: 100,
    };
    assert!(delivery::apply(&mut profile, &team_as_peer).is_empty());
    let team = Delivered {
        peer: String::new(),
        group: "team".into(),
        upto: 100,
    };
    assert_eq!(delivery::apply(&mut profile, &team).len(), 1);

    // Kept in the vault: after a restart, still ✓✓.
    profile.save().unwrap();
    drop(profile);
    let profile = Profile::open(&profile_dir, pass).unwrap();
    let app = App::new("alice", "sha256:00", profile.history(), &[], None);
    assert_eq!(
        marks(&app, &bob),
        [
            line("lunch at noon?", Delivery::Delivered),
            line("sure", Delivery::Received),
            line("or one?", Delivery::Sent),
        ]
    );
    assert_eq!(
        marks(&app, &ConvKey::Group("team".into())),
        [line("standup at ten", Delivery::Delivered)]
    );
}

#[test]
fn a_secret_group_message_opens_its_own_locked_chat_not_the_senders() {
    let mut app = app(None);
    app.update(Event::Incoming(vec![entry(
        "carol",
        None,
        Some("council"),
        Mode::Secret,
        "the plan stands",
        20,
    )]));
    let council = ConvKey::SecretGroup("council".into());
    let conv = app
        .conversations
        .iter()
        .find(|c| c.key == council)
        .expect("a conversation of the secret group");
    assert_eq!(conv.lines.len(), 1);
    assert_eq!(council.title(), "🔒 #council");
    assert!(council.is_secret());
    // Not in a 1:1 secret chat with its sender, nor in a normal group of that name.
    assert!(app.conversations.iter().all(|c| {
        c.key != ConvKey::Secret("carol".into()) && c.key != ConvKey::Group("council".into())
    }));
}

#[test]
fn in_a_secret_group_verify_lists_every_member_and_timer_sets_the_groups() {
    let mut app = app(Some(ConvKey::SecretGroup("council".into())));
    assert_eq!(
        command(&mut app, "/verify"),
        [Effect::VerifyGroup {
            group: "council".into()
        }]
    );
    assert_eq!(
        command(&mut app, "/timer 5m"),
        [Effect::SetGroupTimer {
            group: "council".into(),
            secs: Some(300)
        }]
    );
    assert_eq!(app.open_conversation_ref().unwrap().timer, Some(300));
    // A member turns it off: the chat shows it.
    app.update(Event::GroupTimerSet {
        group: "council".into(),
        secs: None,
    });
    assert_eq!(app.open_conversation_ref().unwrap().timer, None);
    // Messages typed there go out as secret group messages.
    type_text(&mut app, "the plan stands");
    let effects = enter(&mut app);
    assert!(
        matches!(effects.as_slice(), [Effect::SendNormal { to: ConvKey::SecretGroup(g), .. }] if g == "council"),
        "{effects:?}"
    );
}
