//! Group commit: many writers, one flush.
//!
//! A writer applies its batch, then waits on [`GroupCommit::durable`]. One task
//! collects every writer waiting at that moment, flushes the store once, and
//! wakes them all: concurrent sends share a flush, and no send is answered
//! before its bytes are on disk.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError};

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct GroupCommit {
    waiters: mpsc::UnboundedSender<Waiter>,
}

impl GroupCommit {
    /// Starts the flushing task on the current tokio runtime. The task ends
    /// once every clone of the returned handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let store = store.clone();
                let result = tokio::task::spawn_blocking(move || store.flush())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                for waiter in batch {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        (GroupCommit { waiters: tx }, task)
    }

    /// Returns once everything applied before the call is flushed to disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .send(tx)
            .map_err(|_| StoreError::Backend("the flushing task has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("the flushing task has stopped".into()))?
            .map_err(StoreError::Backend)
    }
}
