//! Batched writes: send handlers hand their messages to one thread, which
//! writes every normal message waiting at that moment in one atomic batch
//! ([`NormalArchive::append_many`]) and every secret envelope in another
//! (`SecretQueue::enqueue_many`). The async workers never block on the
//! store's write path, and one transaction carries many sends.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::RelayError;
use crate::archive::{Appended, NewNormal, NormalArchive};
use crate::secret_queue::{NewSecret, Queued, SecretQueue};
use crate::store::StoreError;

/// The most messages written in one batch.
const MAX_BATCH: usize = 256;

enum Job {
    Normal(NewNormal, oneshot::Sender<Result<Appended, RelayError>>),
    Secret(NewSecret, oneshot::Sender<Result<Queued, RelayError>>),
}

#[derive(Clone)]
pub struct Appender {
    jobs: mpsc::Sender<Job>,
}

fn stopped() -> RelayError {
    RelayError::Store(StoreError::Backend("the append thread has stopped".into()))
}

/// Runs `write`; should it panic (a bug), every message of the batch gets an
/// error instead of every later send waiting forever.
fn guarded<T>(
    count: usize,
    write: impl FnOnce() -> Vec<Result<T, RelayError>>,
) -> Vec<Result<T, RelayError>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(write)).unwrap_or_else(|_| {
        tracing::error!("a write batch panicked; its senders get an error");
        (0..count)
            .map(|_| Err(RelayError::Corrupt("the write failed")))
            .collect()
    })
}

fn reply<T>(
    results: Vec<Result<T, RelayError>>,
    replies: Vec<oneshot::Sender<Result<T, RelayError>>>,
) {
    for (result, reply) in results.into_iter().zip(replies) {
        let _ = reply.send(result);
    }
}

impl Appender {
    /// Starts the write thread; it ends once every clone of the handle is dropped.
    pub(crate) fn start(
        archive: Arc<NormalArchive>,
        secrets: Arc<SecretQueue>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sotto-append".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let (mut normal, mut normal_replies) = (Vec::new(), Vec::new());
                    let (mut secret, mut secret_replies) = (Vec::new(), Vec::new());
                    for job in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH - 1)) {
                        match job {
                            Job::Normal(m, r) => {
                                normal.push(m);
                                normal_replies.push(r);
                            }
                            Job::Secret(e, r) => {
                                secret.push(e);
                                secret_replies.push(r);
                            }
                        }
                    }
                    let started = std::time::Instant::now();
                    let (n, s) = (normal.len(), secret.len());
                    if n > 0 {
                        reply(guarded(n, || archive.append_many(normal)), normal_replies);
                    }
                    if s > 0 {
                        reply(guarded(s, || secrets.enqueue_many(secret)), secret_replies);
                    }
                    tracing::debug!(
                        normal = n,
                        secret = s,
                        micros = started.elapsed().as_micros() as u64,
                        "batched write"
                    );
                }
            })?;
        Ok((Appender { jobs: tx }, thread))
    }

    /// Appends one normal message (batched with whatever else waits). Not yet durable.
    pub async fn append(&self, msg: NewNormal) -> Result<Appended, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Normal(msg, tx))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Queues one secret envelope (batched likewise). Not yet durable.
    pub(crate) async fn enqueue(&self, envelope: NewSecret) -> Result<Queued, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Secret(envelope, tx))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}
