//! Live delivery: which connections asked for pushes, per user.
//!
//! Pushes are a courtesy on top of the inbox: a push that cannot be queued (the
//! connection is slow or gone) is dropped, and the message waits in the inbox
//! for the next fetch. Nothing is lost by dropping a push.

use std::collections::HashMap;
use std::sync::Mutex;

use sotto_proto::v1::Push;
use tokio::sync::mpsc;

/// Pushes queued per connection before further ones are dropped.
const PUSH_QUEUE: usize = 256;

/// Per user: each subscribed connection's id and push queue.
type Subscribers = HashMap<String, Vec<(u64, mpsc::Sender<Push>)>>;

pub struct Hub {
    subscribers: Mutex<Subscribers>,
    /// Subscribed connections one account may have at once.
    per_account: usize,
}

impl Hub {
    pub fn new(per_account: u32) -> Self {
        Hub {
            subscribers: Mutex::new(Subscribers::new()),
            per_account: per_account as usize,
        }
    }

    /// Registers connection `conn_id` of `user` for pushes; `None` when the
    /// account has as many subscribed connections as it may.
    pub fn subscribe(&self, user: &str, conn_id: u64) -> Option<mpsc::Receiver<Push>> {
        let mut subs = self.lock();
        let list = subs.entry(user.to_owned()).or_default();
        if list.len() >= self.per_account {
            return None;
        }
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        list.push((conn_id, tx));
        Some(rx)
    }

    pub fn unsubscribe(&self, user: &str, conn_id: u64) {
        let mut subs = self.lock();
        if let Some(list) = subs.get_mut(user) {
            list.retain(|(id, _)| *id != conn_id);
            if list.is_empty() {
                subs.remove(user);
            }
        }
    }

    /// Queues `push` on every subscribed connection of `user`.
    pub fn push(&self, user: &str, push: &Push) {
        if let Some(list) = self.lock().get(user) {
            for (_, tx) in list {
                let _ = tx.try_send(push.clone());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
