//! Live delivery: which connections asked for pushes, per user.
//!
//! Pushes are a courtesy on top of the inbox: a push that cannot be queued (the
//! connection is slow or gone) is dropped, and the message waits in the inbox
//! for the next fetch. Nothing is lost by dropping a push.
//!
//! On a cluster, a push also goes to the other relay nodes, which deliver it
//! to the connections they hold for the user (see [`LiveLink`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sotto_proto::v1::Push;
use tokio::sync::mpsc;

use crate::cluster::LiveLink;

/// Pushes queued per connection before further ones are dropped.
const PUSH_QUEUE: usize = 256;

/// Per user: each subscribed connection's id and push queue.
type Subscribers = HashMap<String, Vec<(u64, mpsc::Sender<Push>)>>;

pub struct Hub {
    subscribers: Arc<Mutex<Subscribers>>,
    /// At most this many subscribed connections per account (on this node).
    per_account: usize,
    /// The other relay nodes, on a cluster.
    link: Option<LiveLink>,
}

fn lock(subscribers: &Mutex<Subscribers>) -> std::sync::MutexGuard<'_, Subscribers> {
    subscribers.lock().unwrap_or_else(|p| p.into_inner())
}

/// Queues `push` for each of `user`'s connections here.
fn deliver(subscribers: &Mutex<Subscribers>, user: &str, push: &Push) {
    if let Some(list) = lock(subscribers).get(user) {
        for (_, tx) in list {
            let _ = tx.try_send(push.clone());
        }
    }
}

impl Hub {
    pub fn new(per_account: u32) -> Self {
        Hub {
            subscribers: Arc::default(),
            per_account: per_account as usize,
            link: None,
        }
    }

    /// A hub that also reaches the users connected to the other relay
    /// nodes of a cluster, through `client` (on the current runtime).
    pub fn on_cluster(
        per_account: u32,
        client: async_nats::Client,
        sealer: Arc<crate::seal::Sealer>,
    ) -> Self {
        let subscribers: Arc<Mutex<Subscribers>> = Arc::default();
        let here = subscribers.clone();
        let link = LiveLink::start(
            client,
            sealer,
            Arc::new(move |user: &str, push: Push| deliver(&here, user, &push)),
        );
        Hub {
            subscribers,
            per_account: per_account as usize,
            link: Some(link),
        }
    }

    /// Registers a connection for `user`'s pushes; `None` when the account
    /// already has its most subscribed connections.
    pub fn subscribe(&self, user: &str, conn_id: u64) -> Option<mpsc::Receiver<Push>> {
        let mut subs = lock(&self.subscribers);
        let list = subs.entry(user.to_owned()).or_default();
        if list.len() >= self.per_account {
            return None;
        }
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        list.push((conn_id, tx));
        if list.len() == 1
            && let Some(link) = &self.link
        {
            link.listen(user);
        }
        Some(rx)
    }

    /// Waits until pushes from the other relay nodes reach every
    /// subscription made before (at once on one node).
    pub async fn settled(&self) {
        if let Some(link) = &self.link {
            link.settled().await;
        }
    }

    pub fn unsubscribe(&self, user: &str, conn_id: u64) {
        let mut subs = lock(&self.subscribers);
        if let Some(list) = subs.get_mut(user) {
            list.retain(|(id, _)| *id != conn_id);
            if list.is_empty() {
                subs.remove(user);
                if let Some(link) = &self.link {
                    link.stop(user);
                }
            }
        }
    }

    /// Queues `push` for each of `user`'s connections, here and on the
    /// other relay nodes; never waits.
    pub fn push(&self, user: &str, push: &Push) {
        deliver(&self.subscribers, user, push);
        if let Some(link) = &self.link {
            link.publish(user, push);
        }
    }
}
