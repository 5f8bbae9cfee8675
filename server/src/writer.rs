//! The relay's one writing thread, and its group commit.
//!
//! Send handlers hand their messages to the writer, which writes every normal
//! message waiting at that moment in one segment ([`NormalArchive::append_many`])
//! and every secret envelope in one batch (`SecretQueue::enqueue_many`),
//! flushes the store once, and only then answers them all. Other handlers
//! (acks, registrations, prekeys) write their own records and then wait on
//! [`Writer::durable`], which rides on the writer's next flush. While one flush
//! runs, the next requests gather behind it: the busier the relay, the more of
//! them share a flush, and nobody is answered before their bytes are on disk.
//!
//! A second thread makes the archive's checkpoints when they are due, so sends
//! go on meanwhile. Both are plain threads rather than tasks, so a write costs
//! no hand-off to the async runtime's blocking pool.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::RelayError;
use crate::archive::{Appended, Archive, NewNormal};
use crate::metrics::Metrics;
use crate::secret_queue::{NewSecret, Queue, Queued};
use crate::store::{Store, StoreError};

/// The most requests written in one round (and, give or take one round, served by one flush).
const MAX_BATCH: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, RelayError>>;

enum Job {
    Normal(NewNormal, Reply<Appended>),
    Secret(NewSecret, Reply<Queued>),
    /// Someone wrote and waits for a flush.
    Durable(Reply<()>),
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

fn stopped() -> RelayError {
    RelayError::Store(StoreError::Backend("the writing thread has stopped".into()))
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

/// Answers each requester; if the flush failed, nothing of the batch is
/// durable and every requester hears so.
fn reply<T>(
    results: Vec<Result<T, RelayError>>,
    replies: Vec<Reply<T>>,
    flushed: &Result<(), StoreError>,
) {
    let results = match flushed {
        Ok(()) => results,
        Err(e) => crate::failed_with(results, e),
    };
    for (result, reply) in results.into_iter().zip(replies) {
        let _ = reply.send(result);
    }
}

/// One flush's worth of requests, sorted by kind.
#[derive(Default)]
struct Round {
    normal: Vec<NewNormal>,
    normal_replies: Vec<Reply<Appended>>,
    secret: Vec<NewSecret>,
    secret_replies: Vec<Reply<Queued>>,
    durable: Vec<Reply<()>>,
}

impl Round {
    fn add(&mut self, job: Job) {
        match job {
            Job::Normal(m, r) => {
                self.normal.push(m);
                self.normal_replies.push(r);
            }
            Job::Secret(e, r) => {
                self.secret.push(e);
                self.secret_replies.push(r);
            }
            Job::Durable(r) => self.durable.push(r),
        }
    }

    fn len(&self) -> usize {
        self.normal.len() + self.secret.len() + self.durable.len()
    }

    /// Writes the round (not yet durable); its answers wait for the flush.
    fn write(self, archive: &Archive, secrets: &Queue) -> Written {
        let (n, s) = (self.normal.len(), self.secret.len());
        let normal = if n > 0 {
            guarded(n, || archive.append_many(self.normal))
        } else {
            Vec::new()
        };
        let secret = if s > 0 {
            guarded(s, || secrets.enqueue_many(self.secret))
        } else {
            Vec::new()
        };
        Written {
            normal: (normal, self.normal_replies),
            secret: (secret, self.secret_replies),
            durable: self.durable,
        }
    }
}

/// A round written to the store, its answers held until the flush.
struct Written {
    normal: (Vec<Result<Appended, RelayError>>, Vec<Reply<Appended>>),
    secret: (Vec<Result<Queued, RelayError>>, Vec<Reply<Queued>>),
    durable: Vec<Reply<()>>,
}

/// Writes what waits, and what arrives while it writes, then flushes once and
/// answers everyone: the flush costs the same for one request or many.
fn commit(
    first: Job,
    jobs: &mpsc::Receiver<Job>,
    store: &dyn Store,
    archive: &Archive,
    secrets: &Queue,
    metrics: &Metrics,
) {
    let started = std::time::Instant::now();
    let mut written = Vec::new();
    let mut requests = 0;
    let mut next = Some(first);
    while let Some(job) = next.take() {
        let mut round = Round::default();
        for job in std::iter::once(job).chain(jobs.try_iter().take(MAX_BATCH - 1)) {
            round.add(job);
        }
        requests += round.len();
        written.push(round.write(archive, secrets));
        if requests < MAX_BATCH {
            next = jobs.try_recv().ok();
        }
    }
    let writing = started.elapsed();
    let flushed = store.flush();
    metrics
        .flush_seconds
        .observe((started.elapsed() - writing).as_secs_f64());
    if let Err(e) = &flushed {
        tracing::error!(error = %e, "a flush failed; its requests are refused");
    }
    for round in written {
        reply(round.normal.0, round.normal.1, &flushed);
        reply(round.secret.0, round.secret.1, &flushed);
        let d = round.durable.len();
        reply((0..d).map(|_| Ok(())).collect(), round.durable, &flushed);
    }
    tracing::debug!(
        requests,
        write_micros = writing.as_micros() as u64,
        flush_micros = (started.elapsed() - writing).as_micros() as u64,
        "group commit"
    );
}

fn checkpoint(archive: &Archive) {
    let started = std::time::Instant::now();
    match archive.checkpoint() {
        Ok(0) => {}
        Ok(messages) => tracing::debug!(
            messages,
            micros = started.elapsed().as_micros() as u64,
            "archive checkpoint"
        ),
        Err(e) => tracing::warn!(error = %e, "archive checkpoint failed; the next one retries"),
    }
}

impl Writer {
    /// Starts the writing thread (and the checkpoint thread); they end once
    /// every clone of the handle is dropped, with a last checkpoint. Join the
    /// returned thread to know the store is no longer used.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        archive: Arc<Archive>,
        secrets: Arc<Queue>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (wake, due) = mpsc::sync_channel::<()>(1);
        let checkpoints = {
            let archive = archive.clone();
            std::thread::Builder::new()
                .name("sotto-checkpoint".into())
                .spawn(move || {
                    while due.recv().is_ok() {
                        // A wake-up asked for while one ran may find nothing due.
                        if archive.checkpoint_due() {
                            checkpoint(&archive);
                        }
                    }
                    // The writer has ended: cover everything it wrote.
                    checkpoint(&archive);
                })?
        };
        let thread = std::thread::Builder::new()
            .name("sotto-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    commit(first, &rx, &*store, &archive, &secrets, &metrics);
                    if archive.checkpoint_due() {
                        // Full means one is already asked for.
                        let _ = wake.try_send(());
                    }
                }
                drop(wake);
                let _ = checkpoints.join();
            })?;
        Ok((Writer { jobs: tx }, thread))
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Appends one normal message (batched with whatever else waits); returns
    /// once it is flushed to disk.
    pub async fn append(&self, msg: NewNormal) -> Result<Appended, RelayError> {
        self.submit(|reply| Job::Normal(msg, reply)).await
    }

    /// Queues one secret envelope (batched likewise); returns once it is on disk.
    pub(crate) async fn enqueue(&self, envelope: NewSecret) -> Result<Queued, RelayError> {
        self.submit(|reply| Job::Secret(envelope, reply)).await
    }

    /// Returns once everything written to the store before the call is on disk.
    pub async fn durable(&self) -> Result<(), RelayError> {
        self.submit(Job::Durable).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::archive::{Destination, NormalArchive};
    use crate::seal::{MasterKey, Sealer};
    use crate::secret_queue::SecretQueue;
    use crate::store::{PowerCut, implementations};

    const SENDERS: usize = 8;
    fn quota() -> crate::secret_queue::Quota {
        crate::config::Limits::default().secret_quota()
    }
    const EACH: usize = 30;

    /// What a sender was told was stored: (secret?, text).
    type Acked = Arc<Mutex<Vec<(bool, String)>>>;

    fn sealer() -> Arc<Sealer> {
        let master = MasterKey::generate();
        Arc::new(master.unwrap_data_key(&master.wrap_new_data_key()).unwrap())
    }

    async fn send(writer: Writer, sender: usize, acked: Acked) {
        for i in 0..EACH {
            let text = format!("{sender}/{i}");
            let mut client_id = [0u8; 16];
            client_id[..8].copy_from_slice(&(sender as u64).to_be_bytes());
            client_id[8..].copy_from_slice(&(i as u64).to_be_bytes());
            let secret = i % 3 == 2;
            if secret {
                let queued = writer
                    .enqueue(NewSecret {
                        from: format!("s{sender}"),
                        to: "rs".into(),
                        client_id,
                        ciphertext: text.clone().into_bytes(),
                        ttl_ms: 3_600_000,
                    })
                    .await;
                assert!(matches!(queued, Ok(Queued::New(_))));
            } else {
                let appended = writer
                    .append(NewNormal {
                        from: format!("s{sender}"),
                        to: Destination::User("rn".into()),
                        text: text.clone(),
                        client_id,
                    })
                    .await;
                assert!(matches!(appended, Ok(Appended::New { .. })));
            }
            acked.lock().unwrap().push((secret, text));
        }
    }

    /// What a relay restarted on `fresh` finds: normal texts to `rn`, secret ones to `rs`.
    fn found(fresh: Arc<dyn Store>, sealer: &Arc<Sealer>) -> (Vec<String>, Vec<String>) {
        let archive = NormalArchive::open(fresh.clone(), sealer.clone()).unwrap();
        let secrets = SecretQueue::open(fresh, sealer.clone(), quota()).unwrap();
        let (inbox, _) = archive.inbox("rn", 10_000).unwrap();
        let (pending, _) = secrets.pending("rs", 10_000).unwrap();
        (
            inbox.into_iter().map(|e| e.record.text).collect(),
            pending
                .into_iter()
                .map(|e| String::from_utf8(e.ciphertext.to_vec()).unwrap())
                .collect(),
        )
    }

    /// Whatever moment the power goes, every message its sender was told is
    /// stored is in what the store had flushed: the writer answers only after
    /// the flush covering the write returned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_acknowledged_message_survives_a_power_cut_at_any_moment() {
        for (name, open) in implementations() {
            let dir = tempfile::tempdir().unwrap();
            let sealer = sealer();
            let cut_store = Arc::new(PowerCut::new(open(&dir.path().join("db"))));
            let store: Arc<dyn Store> = cut_store.clone();
            let archive = Arc::new(Archive::Local(Arc::new(
                NormalArchive::open(store.clone(), sealer.clone()).unwrap(),
            )));
            let secrets = Arc::new(Queue::Local(
                SecretQueue::open(store.clone(), sealer.clone(), quota()).unwrap(),
            ));
            let (writer, thread) =
                Writer::start(store, archive, secrets, Arc::new(Metrics::new())).unwrap();

            let acked: Acked = Arc::default();
            let senders: Vec<_> = (0..SENDERS)
                .map(|s| tokio::spawn(send(writer.clone(), s, acked.clone())))
                .collect();
            // Power cuts at moments spread over the run: each notes what its
            // senders had been told by then (read before the cut).
            let mut cuts = Vec::new();
            while !senders.iter().all(|s| s.is_finished()) {
                let told = acked.lock().unwrap().len();
                cuts.push((told, cut_store.cut()));
                tokio::time::sleep(std::time::Duration::from_micros(300)).await;
            }
            for s in senders {
                s.await.unwrap();
            }
            let total = acked.lock().unwrap().len();
            cuts.push((total, cut_store.cut()));
            drop(writer);
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
            assert_eq!(total, SENDERS * EACH, "{name}");

            // At most ten of them, from the first to the last, are restored and read.
            let step = cuts.len().div_ceil(10);
            let chosen: Vec<_> = cuts
                .iter()
                .enumerate()
                .filter(|(i, _)| i % step == 0 || *i == cuts.len() - 1)
                .map(|(_, c)| *c)
                .collect();
            let acked = acked.lock().unwrap().clone();
            for (n, (told, cut)) in chosen.into_iter().enumerate() {
                let fresh = open(&dir.path().join(format!("after-cut-{n}")));
                cut_store.restore(cut, &*fresh).unwrap();
                let (normal, secret) = found(fresh, &sealer);
                for (is_secret, text) in &acked[..told] {
                    let kept = if *is_secret { &secret } else { &normal };
                    assert!(
                        kept.contains(text),
                        "{name}: {text} was acknowledged before cut {n} and is lost"
                    );
                }
            }
        }
    }
}
