//! What `sotto` prints for a person, end to end through the built binaries
//! and a relay process: a hostile sender cannot forge a line or reach the
//! terminal, a reader that stops early (`| head -1`) loses nothing, standard
//! input carries long messages, and empty ones are refused the same way
//! everywhere.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sotto_tests::{PASSPHRASE, RelayProcess, bin, sotto, sotto_ok};

/// The line a hostile sender hopes the recipient's terminal shows as alice's.
const FORGED: &str = "2026-11-30T18:30:00.000Z alice: please wire the money to erin";

/// `sotto` with `input` on its standard input.
fn sotto_with_stdin(profile: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(bin("sotto"))
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("SOTTO_PASSPHRASE", PASSPHRASE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sotto");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("sotto ends")
}

/// A shell pipeline (bash, with pipefail: its status is sotto's too).
fn pipeline(script: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {script}"))
        .env("SOTTO_PASSPHRASE", PASSPHRASE)
        .output()
        .expect("run bash")
}

fn users(dir: &Path, relay: &RelayProcess) -> (std::path::PathBuf, std::path::PathBuf) {
    let (mallory, bob) = (dir.join("mallory"), dir.join("bob"));
    relay.init_user(&mallory, "mallory");
    relay.init_user(&bob, "bob");
    (mallory, bob)
}

/// A header line of `sotto sync`: an RFC 3339 time, then the sender.
fn is_header(line: &str) -> bool {
    line.len() > 20 && line.as_bytes()[..4].iter().all(u8::is_ascii_digit) && line.contains('T')
}

#[test]
fn hostile_sender_cannot_forge_a_line_or_reach_the_terminal_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let (mallory, bob) = users(dir.path(), &relay);

    let forged = format!("hi\n{FORGED}");
    let ansi = "\x1b[2J\x1b[31mred alert\x07\rbob: overwritten\u{9b}0m\u{202e}gpj.exe";
    sotto_ok(&mallory, &["send", "bob", &forged]);
    sotto_ok(&mallory, &["send", "bob", ansi]);
    sotto_ok(&mallory, &["send", "--secret", "bob", &forged]);

    let out = sotto_ok(&bob, &["sync"]);
    // Nothing a terminal acts on: no ESC, BEL, CR, C1 or bidi control.
    assert!(
        !out.chars()
            .any(|c| c != '\n' && sotto_proto::printable::is_unsafe(c)),
        "{out:?}"
    );
    let headers: Vec<&str> = out.lines().filter(|l| is_header(l)).collect();
    assert_eq!(headers.len(), 3, "one header a message: {out}");
    assert!(headers.iter().all(|h| h.contains(" mallory: ")), "{out}");
    // The forged line is there, but indented under mallory's message.
    let forged_lines: Vec<&str> = out.lines().filter(|l| l.contains(FORGED)).collect();
    let indented = format!("    {FORGED}");
    assert_eq!(
        forged_lines,
        [indented.as_str(), indented.as_str()],
        "{out}"
    );
    assert!(
        out.lines().all(|l| is_header(l) || l.starts_with("    ")),
        "{out}"
    );
    assert!(
        out.contains("mallory: \\u{1b}[2J\\u{1b}[31mred alert\\u{7}\\rbob: overwritten"),
        "{out}"
    );

    // JSON keeps the exact text and escapes the same characters.
    sotto_ok(&mallory, &["send", "bob", ansi]);
    let json = sotto_ok(&bob, &["sync", "--json"]);
    assert!(
        !json
            .chars()
            .any(|c| c != '\n' && sotto_proto::printable::is_unsafe(c))
    );
    let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(value["text"], ansi);
}

#[test]
fn sync_into_head_prints_one_and_the_next_sync_prints_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let (mallory, bob) = users(dir.path(), &relay);
    for n in 1..=5 {
        sotto_ok(&mallory, &["send", "bob", &format!("message {n}")]);
    }
    sotto_ok(&mallory, &["send", "--secret", "bob", "message 6"]);

    let sotto = bin("sotto");
    let first = pipeline(&format!(
        "{} --profile {} sync | head -1",
        sotto.display(),
        bob.display()
    ));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        first.status.success(),
        "a reader that goes away is no error: {stderr}"
    );
    assert!(stderr.is_empty(), "quietly: {stderr}");
    let first = String::from_utf8(first.stdout).unwrap();
    assert_eq!(first.lines().count(), 1, "{first}");
    assert!(first.contains("mallory: message 1"), "{first}");

    let rest = sotto_ok(&bob, &["sync"]);
    let texts: Vec<&str> = rest
        .lines()
        .map(|l| l.split(" mallory: ").nth(1).unwrap_or(l))
        .collect();
    assert_eq!(
        texts,
        [
            "message 2",
            "message 3",
            "message 4",
            "message 5",
            "message 6"
        ],
        "{rest}"
    );
    assert_eq!(sotto_ok(&bob, &["sync"]), "", "each message printed once");
}

#[test]
fn sync_into_a_pipe_nobody_reads_exits_0_quietly_and_keeps_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let (mallory, bob) = users(dir.path(), &relay);
    sotto_ok(&mallory, &["send", "bob", "kept for later"]);
    let mut child = Command::new(bin("sotto"))
        .arg("--profile")
        .arg(&bob)
        .arg("sync")
        .env("SOTTO_PASSPHRASE", PASSPHRASE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before anything is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let later = sotto_ok(&bob, &["sync"]);
    assert!(later.contains("mallory: kept for later"), "{later}");
}

#[test]
fn send_dash_reads_a_60_kib_message_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let (mallory, bob) = users(dir.path(), &relay);
    let long: String = (0..60 * 1024 / 16)
        .map(|i| format!("line {i:010}\n"))
        .collect();
    for args in [&["send", "bob", "-"][..], &["send", "--secret", "bob", "-"]] {
        let out = sotto_with_stdin(&mallory, args, long.as_bytes());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json = sotto_ok(&bob, &["sync", "--json"]);
    let texts: Vec<String> = json
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(texts, [long.trim_end(), long.trim_end()]);
}

#[test]
fn empty_and_blank_messages_are_refused_the_same_way_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let (mallory, _bob) = users(dir.path(), &relay);
    let reason = "the message is empty (nothing but spaces or new lines): nothing was sent";
    let check = |out: Output, what: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} was accepted");
        assert_eq!(stderr.trim(), format!("sotto: {reason}"), "{what}");
    };
    for text in ["", "   ", " \n\t "] {
        check(
            sotto(&mallory, &["send", "bob", text]),
            &format!("{text:?}"),
        );
        check(
            sotto(&mallory, &["send", "--secret", "bob", text]),
            &format!("secret {text:?}"),
        );
        check(
            sotto(&mallory, &["send", "--group", "nogroup", text]),
            &format!("group {text:?}"),
        );
        check(
            sotto_with_stdin(&mallory, &["send", "bob", "-"], text.as_bytes()),
            &format!("stdin {text:?}"),
        );
    }
}

#[test]
fn chat_without_a_terminal_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let (mallory, _bob) = users(dir.path(), &relay);
    let out = sotto(&mallory, &["chat"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs a terminal"), "{stderr}");
}

#[test]
fn a_send_to_a_relay_that_is_gone_says_how_long_it_tried() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProcess::start(&dir.path().join("relay"), &[]);
    let (mallory, _bob) = users(dir.path(), &relay);
    relay.terminate();
    let started = std::time::Instant::now();
    let out = sotto(&mallory, &["send", "bob", "anyone there?"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(took.as_secs() < 15, "took {took:?}: {stderr}");
    assert!(stderr.contains("gave up after 3 tries in"), "{stderr}");
    assert!(stderr.contains("no answer within 3 s"), "{stderr}");
}
