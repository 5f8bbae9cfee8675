//! Group commit: many writers, one flush.
//!
//! A writer applies its batch, then waits on [`GroupCommit::durable`]. One
//! thread collects every writer waiting at that moment, flushes the store once,
//! and wakes them all: concurrent sends share a flush, and no send is answered
//! before its bytes are on disk. The flusher is a plain thread rather than a
//! task, so a flush costs no hand-off to the async runtime's blocking pool.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{Store, StoreError};

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct GroupCommit {
    waiters: mpsc::Sender<Waiter>,
}

impl GroupCommit {
    /// Starts the flushing thread. It ends once every clone of the returned
    /// handle is dropped; join it to know the store is no longer used.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let thread = std::thread::Builder::new()
            .name("sotto-flush".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let started = std::time::Instant::now();
                    let result = store.flush().map_err(|e| e.to_string());
                    tracing::debug!(
                        writers = batch.len(),
                        micros = started.elapsed().as_micros() as u64,
                        "group commit"
                    );
                    for waiter in batch {
                        let _ = waiter.send(result.clone());
                    }
                }
            })?;
        Ok((GroupCommit { waiters: tx }, thread))
    }

    /// Returns once everything applied before the call is flushed to disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .send(tx)
            .map_err(|_| StoreError::Backend("the flushing thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("the flushing thread has stopped".into()))?
            .map_err(StoreError::Backend)
    }
}
