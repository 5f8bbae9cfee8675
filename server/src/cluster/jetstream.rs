//! A relay node's connection to the NATS JetStream cluster: it checks the
//! server is one whose behaviour this module relies on, and makes the
//! streams and key-value buckets it stores in (each once, replicated on
//! `replicas` nodes: an acknowledged write is then held by a majority).
//!
//! Know the 2.9 server: `async-nats`' `create_key_value` fails against it,
//! so a bucket's stream is made here by hand with the settings a bucket
//! needs, and then opened with `get_key_value`.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::store::StoreError;

/// The oldest server this module works with: a stream that refuses a
/// second message on a subject (`discard_new_per_subject`) came with 2.9.
const OLDEST_SERVER: (u64, u64) = (2, 9);

/// How long one request to the cluster may take.
const REQUEST_TIME: Duration = Duration::from_secs(5);

/// How to reach the cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    /// Any of the cluster's client URLs (`nats://127.0.0.1:4222`); the client
    /// moves to another when one goes away.
    pub urls: Vec<String>,
    pub user: String,
    pub password: Zeroizing<String>,
    /// On how many nodes each stream and bucket is kept (3 in production).
    pub replicas: usize,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("urls", &self.urls)
            .field("user", &self.user)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cannot reach the NATS cluster at {urls}: {why}")]
    Connect { urls: String, why: String },
    #[error(
        "the NATS server at {url} is version {version}; sotto needs {}.{} or newer",
        OLDEST_SERVER.0, OLDEST_SERVER.1
    )]
    TooOld { url: String, version: String },
    #[error("the NATS server at {0} runs without JetStream; start it with `jetstream` enabled")]
    NoJetStream(String),
    #[error("cannot make the {what} on the NATS cluster: {why}")]
    Provision { what: String, why: String },
    #[error(
        "the NATS server ignores a setting sotto relies on ({0}); run nats-server 2.9 or newer, \
         and let sotto make its streams"
    )]
    Unsupported(String),
}

/// A connection to the cluster, as the relay's NATS user.
#[derive(Clone)]
pub struct Cluster {
    client: async_nats::Client,
    js: jetstream::Context,
    replicas: usize,
    /// The runtime the connection runs on, for [`Cluster::wait`] from
    /// threads outside it (the relay's writer).
    runtime: tokio::runtime::Handle,
}

/// Whether a server's `major.minor.patch` version is at least `oldest`.
fn at_least(version: &str, oldest: (u64, u64)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= oldest
}

/// Whether a failed delete says the message was gone already (another
/// node's delete came first), rather than that the delete failed.
pub(crate) fn already_gone(e: &stream::DeleteMessageError) -> bool {
    use async_nats::jetstream::ErrorCode;
    match e.kind() {
        stream::DeleteMessageErrorKind::JetStream(e) => {
            e.error_code() == ErrorCode::SEQUENCE_NOT_FOUND
                || e.error_code() == ErrorCode::NO_MESSAGE_FOUND
                || e.to_string().contains("no message found")
        }
        _ => false,
    }
}

/// The first message on `filter` at or after sequence `from` (`None`: there
/// is none), read from the stream's leader: a replica that lags would miss
/// what another node wrote a moment ago.
pub(crate) async fn next_on(
    stream: &stream::Stream,
    filter: &str,
    from: u64,
    what: &str,
) -> Result<Option<async_nats::jetstream::message::StreamMessage>, StoreError> {
    match stream
        .raw_message_builder()
        .sequence(from)
        .next_by_subject(filter)
        .send()
        .await
    {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(backend(what, e)),
    }
}

/// The last message on `subject`, read from the stream's leader (a replica
/// that lags would not have it yet); `None`: there is none.
pub(crate) async fn last_on(
    stream: &stream::Stream,
    subject: &str,
    what: &str,
) -> Result<Option<async_nats::jetstream::message::StreamMessage>, StoreError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(backend(what, e)),
    }
}

/// A stream of one message a subject that refuses a second (the first
/// write of a subject is the one that stands), read directly, never purged,
/// whose messages go after `max_age` (never, if zero).
pub(crate) fn once_per_subject(name: &str, subjects: &str, max_age: Duration) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        max_age,
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        allow_direct: true,
        deny_purge: true,
        ..Default::default()
    }
}

pub(crate) fn backend(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("NATS {what}: {e}"))
}

impl Cluster {
    /// Connects, and checks the server it reached.
    pub async fn connect(options: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let urls = options.urls.join(", ");
        let client = async_nats::ConnectOptions::with_user_and_password(
            options.user.clone(),
            options.password.to_string(),
        )
        .request_timeout(Some(REQUEST_TIME))
        .custom_inbox_prefix(super::inbox_prefix(&options.user))
        .connect(options.urls.clone())
        .await
        .map_err(|e| ClusterError::Connect {
            urls: urls.clone(),
            why: e.to_string(),
        })?;
        let info = client.server_info();
        if !at_least(&info.version, OLDEST_SERVER) {
            return Err(ClusterError::TooOld {
                url: urls,
                version: info.version,
            });
        }
        // Asked by hand: `query_account` does not parse a 2.9 server's answer.
        let answer = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|e| ClusterError::Connect {
                urls: urls.clone(),
                why: e.to_string(),
            })?;
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap_or_default();
        if !answer["error"].is_null() || answer.get("type").is_none() {
            return Err(ClusterError::NoJetStream(urls));
        }
        let js = jetstream::new(client.clone());
        Ok(Cluster {
            client,
            js,
            replicas: options.replicas.max(1),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Waits for `work` from synchronous code. The relay's engines were
    /// written for an embedded store and wait for it in place (off the async
    /// workers, as for a flush); on a cluster they wait for it the same way.
    ///
    /// Needs the multi-threaded runtime the relay runs on: a current-thread
    /// runtime has no other thread to drive the connection meanwhile.
    pub fn wait<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(work))
            }
            Ok(_) => panic!(
                "waiting for the NATS cluster in place needs a multi-threaded runtime \
                 (#[tokio::test(flavor = \"multi_thread\")] in a test)"
            ),
            Err(_) => self.runtime.block_on(work),
        }
    }

    /// Makes a stream unless it exists (its settings are then left as found).
    pub(crate) async fn stream(
        &self,
        config: stream::Config,
    ) -> Result<stream::Stream, ClusterError> {
        let name = config.name.clone();
        let failed = |e: &dyn std::fmt::Display| ClusterError::Provision {
            what: format!("stream {name}"),
            why: e.to_string(),
        };
        let wanted = stream::Config {
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            ..config
        };
        let mut found = self
            .js
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| failed(&e))?;
        // Limits an operator (or an older relay) set otherwise are set back:
        // a secret queue kept longer than the relay's time-to-live would
        // keep envelopes nobody fetched.
        let have = &found.cached_info().config;
        let differs = have.max_age != wanted.max_age
            || (wanted.max_messages > 0 && have.max_messages != wanted.max_messages)
            || (wanted.max_bytes > 0 && have.max_bytes != wanted.max_bytes)
            || (!wanted.duplicate_window.is_zero()
                && have.duplicate_window != wanted.duplicate_window);
        if differs {
            self.js
                .update_stream(wanted.clone())
                .await
                .map_err(|e| failed(&e))?;
            found = self.js.get_stream(&name).await.map_err(|e| failed(&e))?;
        }
        Ok(found)
    }

    /// Makes a key-value bucket unless it exists, and opens it: one value
    /// per key, deletes kept as markers, read from the stream's leader.
    pub(crate) async fn bucket(&self, name: &str) -> Result<kv::Store, ClusterError> {
        self.aging_bucket(name, Duration::ZERO).await
    }

    /// A bucket whose values go `max_age` after they were written (never, if zero).
    pub(crate) async fn aging_bucket(
        &self,
        name: &str,
        max_age: Duration,
    ) -> Result<kv::Store, ClusterError> {
        self.stream(stream::Config {
            max_age,
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            // Read from the leader: a value another node wrote a moment ago
            // is never missed.
            allow_direct: false,
            ..Default::default()
        })
        .await?;
        self.js
            .get_key_value(name)
            .await
            .map_err(|e| ClusterError::Provision {
                what: format!("bucket {name}"),
                why: e.to_string(),
            })
    }

    /// The plain NATS client (live delivery).
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Makes (or finds) `config`'s stream (see [`once_per_subject`]) and
    /// checks that it refuses a second message on a subject.
    pub(crate) async fn once_stream(
        &self,
        config: stream::Config,
    ) -> Result<stream::Stream, ClusterError> {
        let stream = self.stream(config).await?;
        self.refuses_second_message(&stream)?;
        Ok(stream)
    }

    /// Checks that `stream` refuses a second message on a subject, as it
    /// was made to (a server that dropped the setting would take it, and
    /// two nodes could then both create one record).
    pub(crate) fn refuses_second_message(
        &self,
        stream: &stream::Stream,
    ) -> Result<(), ClusterError> {
        let config = &stream.cached_info().config;
        if config.discard_new_per_subject && config.max_messages_per_subject == 1 {
            Ok(())
        } else {
            Err(ClusterError::Unsupported(format!(
                "discard_new_per_subject on stream {}",
                config.name
            )))
        }
    }

    /// Publishes to a stream and waits for its acknowledgement (a majority
    /// of the stream's replicas hold the message), or its refusal.
    pub(crate) async fn publish(
        &self,
        subject: String,
        payload: Vec<u8>,
    ) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
        self.js.publish(subject, payload.into()).await?.await
    }

    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.js
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_are_compared_by_number_not_by_text() {
        assert!(at_least("2.9.10", (2, 9)));
        assert!(at_least("2.10.1", (2, 9)), "2.10 is newer than 2.9");
        assert!(at_least("v3.0.0-beta", (2, 9)));
        assert!(!at_least("2.8.4", (2, 9)));
        assert!(!at_least("garbage", (2, 9)));
    }
}
