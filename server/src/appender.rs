//! Batched appends: send handlers hand their messages to one thread, which
//! writes every message waiting at that moment in a single atomic batch
//! ([`NormalArchive::append_many`]). The async workers never block on the
//! store's write path, and one transaction carries many sends.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::RelayError;
use crate::archive::{Appended, NewNormal, NormalArchive};
use crate::store::StoreError;

/// The most messages written in one batch.
const MAX_BATCH: usize = 256;

type Job = (NewNormal, oneshot::Sender<Result<Appended, RelayError>>);

#[derive(Clone)]
pub struct Appender {
    jobs: mpsc::Sender<Job>,
}

fn stopped() -> RelayError {
    RelayError::Store(StoreError::Backend("the append thread has stopped".into()))
}

impl Appender {
    /// Starts the append thread; it ends once every clone of the handle is dropped.
    pub fn start(
        archive: Arc<NormalArchive>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sotto-append".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    jobs.extend(rx.try_iter().take(MAX_BATCH - 1));
                    let (msgs, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
                    let started = std::time::Instant::now();
                    let count = msgs.len();
                    // A bug below must not stop every later send: answer this batch with an error.
                    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        archive.append_many(msgs)
                    }))
                    .unwrap_or_else(|_| {
                        tracing::error!("an append batch panicked; its senders get an error");
                        (0..count)
                            .map(|_| Err(RelayError::Corrupt("the append failed")))
                            .collect()
                    });
                    tracing::debug!(
                        messages = results.len(),
                        micros = started.elapsed().as_micros() as u64,
                        "batched append"
                    );
                    for (result, reply) in results.into_iter().zip(replies) {
                        let _ = reply.send(result);
                    }
                }
            })?;
        Ok((Appender { jobs: tx }, thread))
    }

    /// Appends one message (batched with whatever else is waiting). Not yet durable.
    pub async fn append(&self, msg: NewNormal) -> Result<Appended, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send((msg, tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}
