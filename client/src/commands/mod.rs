//! The `sotto` commands, one file each. Each takes its arguments and a writer
//! for what it prints, so tests can run them without a terminal.

pub mod group;
pub mod init;
pub mod outbox;
pub mod send;
pub mod sync;
pub mod verify;

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A fresh random message id: a retry reuses it, so the relay stores the message once.
pub fn new_client_id() -> [u8; sotto_proto::CLIENT_ID_LEN] {
    let mut id = [0u8; sotto_proto::CLIENT_ID_LEN];
    rand::rng().fill_bytes(&mut id);
    id
}

/// RFC 3339 (UTC) of a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Runs `attempt` up to three times while it fails in a way a retry may fix
/// (the connection dropped), waiting a little longer each time. The last
/// failure says how many tries took how long, as measured.
pub async fn with_retries<T, F, Fut>(mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    const ATTEMPTS: u32 = 3;
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    for _ in 1..ATTEMPTS {
        match attempt().await {
            Err(e) if crate::relay::transient(&e) => {
                tokio::time::sleep(delay).await;
                delay *= 3;
            }
            other => return other,
        }
    }
    attempt().await.map_err(|e| {
        if crate::relay::transient(&e) {
            e.context(format!(
                "gave up after {ATTEMPTS} tries in {:.1} s",
                started.elapsed().as_secs_f64()
            ))
        } else {
            e
        }
    })
}

/// Runs a binary's async `main` on a multi-threaded runtime; on error prints
/// `program: reason` (one line, with its causes, escaped: a relay's or a
/// peer's words may be in it) and exits 1. A reader that went away (`| head`)
/// is no error: exit 0, quietly.
pub fn run_main<F: Future<Output = anyhow::Result<()>>>(program: &str, main: F) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(main) {
        Ok(()) => {}
        Err(e) if crate::output::is_broken_pipe(&e) => {}
        Err(e) => {
            let reason = format!("{e:#}");
            eprintln!("{program}: {}", sotto_proto::printable::printable(&reason));
            std::process::exit(1);
        }
    }
}
