//! The durability audit anyone can run: the relay under `strace`, twenty
//! `sotto send`s one after the other, and for each acknowledgement an
//! `fdatasync` (or `fsync`) of the store's log file that finished after the
//! send began and before the sender got its answer. kill -9 tests cannot show
//! this: only a sync that reached the disk makes an acknowledgement honest.
//!
//! Needs `strace` (`.ci/run` installs it).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sotto_tests::{RelayProcess, sotto_ok};

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Times (seconds since the epoch) at which a sync of the store's files
/// returned, from `strace -f -y -ttt -T` output.
fn store_syncs(log: &str, db: &Path) -> Vec<f64> {
    let db = db.to_string_lossy();
    log.lines()
        .filter(|l| (l.contains("fdatasync(") || l.contains("fsync(")) && l.contains(&*db))
        .filter(|l| l.contains(") = 0"))
        .filter_map(|l| {
            // "PID 1764512345.123456 fdatasync(12</…/db/db>) = 0 <0.000321>"
            let mut words = l.split_whitespace();
            let first = words.next()?;
            let start: f64 = match first.parse::<f64>() {
                Ok(t) if first.contains('.') => t,
                _ => words.next()?.parse().ok()?,
            };
            let took: f64 = l.rsplit_once('<')?.1.trim_end_matches('>').parse().ok()?;
            Some(start + took)
        })
        .collect()
}

#[test]
fn every_acknowledged_send_follows_an_fdatasync_of_the_store() {
    let strace_found = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        strace_found,
        "this audit needs strace (`apt-get install strace`; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let log_path = dir.path().join("strace.log");
    let log_arg = log_path.to_string_lossy().into_owned();
    let relay = RelayProcess::start(&data, &[]);
    // Attached to the running relay (so killing strace leaves nothing behind):
    // wait until strace says it is attached before sending anything.
    let mut strace = std::process::Command::new("strace")
        .args([
            "-f",
            "-y",
            "-ttt",
            "-T",
            "-e",
            "trace=fdatasync,fsync",
            "-o",
            &log_arg,
        ])
        .args(["-p", &relay.child.id().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut attached = std::io::BufReader::new(strace.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut attached, &mut line).unwrap();
    assert!(line.contains("attached"), "strace did not attach: {line}");
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    relay.init_user(&alice, "alice");
    relay.init_user(&bob, "bob");
    let mut windows = Vec::new();
    for n in 0..20 {
        let began = now_secs();
        sotto_ok(&alice, &["send", "bob", &format!("durable {n}")]);
        windows.push((began, now_secs()));
    }
    // SIGTERM: strace detaches and writes out its log.
    let _ = std::process::Command::new("kill")
        .arg(strace.id().to_string())
        .status();
    let _ = strace.wait();
    drop(relay);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let syncs = store_syncs(&log, &data.join("db"));
    assert!(!syncs.is_empty(), "no sync of the store at all:\n{log}");
    for (n, (began, acked)) in windows.iter().enumerate() {
        assert!(
            syncs.iter().any(|t| began <= t && t <= acked),
            "send {n} was acknowledged with no sync of the store while it ran \
             ({began:.6} to {acked:.6}); syncs: {syncs:?}"
        );
    }
}
