//! Live delivery between relay nodes: a push for a user goes to the
//! connections this node holds for them, and on core NATS to the subject
//! `live.<user token>`, which each node listens on while it holds a
//! connection of that user. Nothing is stored: a push is a courtesy on top
//! of the inbox and the secret queue (see `crate::hub`), and one that does
//! not arrive is fetched from there.
//!
//! A push crosses the cluster's network sealed by the relay, padded, with
//! its subject in the associated data: the cluster's operator sees that a
//! user (a keyed blind) was sent something, not what or by whom, and cannot
//! redirect a push to another user's subject. It can publish a push it saw
//! again: the client drops a message or envelope whose id it has seen.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use prost::Message;
use sotto_proto::v1::Push;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::seal::Sealer;
use crate::store::Tree;

/// Domain of the keyed blind that names a user's live subject.
const SUBJECT_DOMAIN: &str = "cluster/live subject";

/// Pushes waiting for the link's task; past this, pushes to other nodes are
/// dropped (as a slow connection's are). Subscription changes are never
/// dropped: they wait on a channel of their own.
const PUSHES: usize = 4096;

/// Where a push received from another node is delivered on this one.
pub type Deliver = Arc<dyn Fn(&str, Push) + Send + Sync>;

enum Command {
    Listen(String),
    Stop(String),
    /// Answered once every command before it is done.
    Barrier(oneshot::Sender<()>),
}

/// This node's link to the others.
pub struct LiveLink {
    commands: mpsc::UnboundedSender<Command>,
    pushes: mpsc::Sender<(String, Vec<u8>)>,
    sealer: Arc<Sealer>,
    /// This node, in every push it sends: its own come back to it, and are
    /// dropped (they were delivered here already).
    origin: u64,
}

fn subject(sealer: &Sealer, user: &str) -> String {
    format!(
        "live.{}",
        hex::encode(sealer.blind(SUBJECT_DOMAIN, &sealer.blind_user(user)))
    )
}

/// origin (8) ‖ user length (2) ‖ user ‖ push.
fn encode(origin: u64, user: &str, push: &Push) -> Vec<u8> {
    let mut out = origin.to_be_bytes().to_vec();
    out.extend_from_slice(&(user.len() as u16).to_be_bytes());
    out.extend_from_slice(user.as_bytes());
    push.encode(&mut out).expect("a Vec grows");
    out
}

fn decode(plain: &[u8]) -> Option<(u64, String, Push)> {
    let origin = u64::from_be_bytes(plain.get(..8)?.try_into().ok()?);
    let len = u16::from_be_bytes(plain.get(8..10)?.try_into().ok()?) as usize;
    let user = std::str::from_utf8(plain.get(10..10 + len)?)
        .ok()?
        .to_owned();
    let push = Push::decode(plain.get(10 + len..)?).ok()?;
    Some((origin, user, push))
}

impl LiveLink {
    /// Starts the link's task on the current runtime.
    pub fn start(client: async_nats::Client, sealer: Arc<Sealer>, deliver: Deliver) -> LiveLink {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (pushes, push_rx) = mpsc::channel(PUSHES);
        let origin = rand::random::<u64>();
        tokio::spawn(run(
            client.clone(),
            sealer.clone(),
            origin,
            deliver,
            command_rx,
        ));
        tokio::spawn(publish(client, push_rx));
        LiveLink {
            commands,
            pushes,
            sealer,
            origin,
        }
    }

    /// Listens for `user`'s pushes from other nodes (the first connection
    /// of theirs here).
    pub fn listen(&self, user: &str) {
        self.send(Command::Listen(user.to_owned()));
    }

    /// Stops listening for `user` (their last connection here went).
    pub fn stop(&self, user: &str) {
        self.send(Command::Stop(user.to_owned()));
    }

    /// Sends `push` for `user` to the other nodes.
    pub fn publish(&self, user: &str, push: &Push) {
        let subject = subject(&self.sealer, user);
        let sealed = self.sealer.seal_padded(
            Tree::Meta,
            subject.as_bytes(),
            &encode(self.origin, user, push),
        );
        if self.pushes.try_send((subject, sealed)).is_err() {
            debug!("the link to the other relay nodes is behind: a push was dropped");
        }
    }

    /// Waits until every listen asked for before is in place at the cluster
    /// (a push sent by another node from then on reaches this one).
    pub async fn settled(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            warn!("the link to the other relay nodes is gone");
        }
    }
}

async fn publish(client: async_nats::Client, mut pushes: mpsc::Receiver<(String, Vec<u8>)>) {
    while let Some((subject, sealed)) = pushes.recv().await {
        if let Err(e) = client.publish(subject, sealed.into()).await {
            debug!(error = %e, "a push to the other nodes was not sent");
        }
    }
}

async fn run(
    client: async_nats::Client,
    sealer: Arc<Sealer>,
    origin: u64,
    deliver: Deliver,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    // Per user listened for: how to stop its forwarding task, and the task.
    let mut listening: HashMap<String, (oneshot::Sender<()>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    while let Some(command) = commands.recv().await {
        match command {
            Command::Listen(user) => {
                let subject = subject(&sealer, &user);
                let subscriber = match client.subscribe(subject.clone()).await {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "cannot listen for a user's pushes from other nodes");
                        continue;
                    }
                };
                let (sealer, deliver) = (sealer.clone(), deliver.clone());
                let (stop, stopped) = oneshot::channel();
                let task = tokio::spawn(forward(
                    subscriber, stopped, subject, sealer, origin, deliver,
                ));
                if let Some(old) = listening.insert(user, (stop, task)) {
                    old.1.abort();
                }
            }
            Command::Stop(user) => {
                // Waited for: the unsubscription is sent before any later
                // barrier's round trip, so once settled the server has it.
                if let Some((stop, task)) = listening.remove(&user) {
                    let _ = stop.send(());
                    let _ = task.await;
                }
            }
            Command::Barrier(done) => {
                // The server has every subscription made before once it
                // answered a round trip after them.
                if let Err(e) = client.flush().await {
                    warn!(error = %e, "the cluster did not answer a flush");
                }
                let _ = done.send(());
            }
        }
    }
    for (_, task) in listening.into_values() {
        task.abort();
    }
}

async fn forward(
    mut subscriber: async_nats::Subscriber,
    mut stop: oneshot::Receiver<()>,
    subject: String,
    sealer: Arc<Sealer>,
    origin: u64,
    deliver: Deliver,
) {
    loop {
        let message = tokio::select! {
            _ = &mut stop => {
                if let Err(e) = subscriber.unsubscribe().await {
                    debug!(error = %e, "an unsubscription was not sent");
                }
                return;
            }
            message = subscriber.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let opened = sealer.open_padded(Tree::Meta, subject.as_bytes(), &message.payload);
        let Some((from, user, push)) = opened.ok().and_then(|plain| decode(&plain)) else {
            warn!("a push from the cluster did not open: dropped");
            continue;
        };
        if from != origin && subject == self::subject(&sealer, &user) {
            deliver(&user, push);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_decodes_as_encoded_and_truncations_do_not() {
        let push = Push {
            kind: Some(sotto_proto::v1::push::Kind::PrekeysLow(
                sotto_proto::v1::PrekeysLow {
                    remaining: 3,
                    pq_remaining: 4,
                },
            )),
        };
        let bytes = encode(7, "bob", &push);
        assert_eq!(decode(&bytes), Some((7, "bob".to_owned(), push)));
        for cut in 0..10 + 3 {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
    }
}
