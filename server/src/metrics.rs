//! What an operator can watch: counters and gauges in the Prometheus text
//! format, served on `metrics_listen` (off unless set; loopback unless the
//! operator says otherwise). Labels name kinds and decisions only: never a
//! username, a blind, an address or a group.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// The relay's metrics; each component is handed this and counts its own.
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub connections_refused: Family<Labels, Counter>,
    pub logins: Family<Labels, Counter>,
    pub messages_stored: Family<Labels, Counter>,
    pub deliveries: Family<Labels, Counter>,
    pub secret_queue_envelopes: Gauge,
    pub secret_queue_bytes: Gauge,
    pub refusals: Family<Labels, Counter>,
    pub flush_seconds: Histogram,
    pub warrant_requests: Family<Labels, Counter>,
    /// Frames being read now, and the bytes they declared (what the relay
    /// has committed to buffer for them).
    pub frames_reading: Gauge,
    pub frame_bytes_reading: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub streams_closed_unfinished: Counter<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sotto");
        let m = Metrics {
            connections: Gauge::default(),
            connections_refused: Family::default(),
            logins: Family::default(),
            messages_stored: Family::default(),
            deliveries: Family::default(),
            secret_queue_envelopes: Gauge::default(),
            secret_queue_bytes: Gauge::default(),
            refusals: Family::default(),
            flush_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            warrant_requests: Family::default(),
            frames_reading: Gauge::default(),
            frame_bytes_reading: Gauge::default(),
            streams_closed_unfinished: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("connections", "Connections held now", m.connections.clone());
        registry.register(
            "connections_refused",
            "Connections refused, by reason (relay_full, address_full)",
            m.connections_refused.clone(),
        );
        registry.register(
            "logins",
            "Logins and registrations, by kind and result",
            m.logins.clone(),
        );
        registry.register(
            "messages_stored",
            "Messages stored and acknowledged to their sender, by mode",
            m.messages_stored.clone(),
        );
        registry.register(
            "deliveries",
            "Messages handed to their recipient (pushed live or fetched), by mode",
            m.deliveries.clone(),
        );
        registry.register(
            "secret_queue_envelopes",
            "Secret envelopes waiting for their recipients",
            m.secret_queue_envelopes.clone(),
        );
        registry.register(
            "secret_queue_bytes",
            "Bytes of secret envelopes waiting for their recipients",
            m.secret_queue_bytes.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused by a limit, by kind",
            m.refusals.clone(),
        );
        registry.register(
            "flush_seconds",
            "Time of one store flush (one per writer batch)",
            m.flush_seconds.clone(),
        );
        registry.register(
            "warrant_requests",
            "Warrant and unmask requests, by kind and decision",
            m.warrant_requests.clone(),
        );
        registry.register(
            "frames_reading",
            "Request frames being read now",
            m.frames_reading.clone(),
        );
        registry.register(
            "frame_bytes_reading",
            "Bytes the frames being read now declared",
            m.frame_bytes_reading.clone(),
        );
        registry.register(
            "streams_closed_unfinished",
            "Streams closed because their frame did not arrive in time",
            m.streams_closed_unfinished.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one in `family` under `name = value`.
    pub fn count(family: &Family<Labels, Counter>, name: &'static str, value: &'static str) {
        family.get_or_create(&vec![(name, value)]).inc();
    }

    /// Counts one refusal by a limit of `kind`.
    pub fn refused(&self, kind: &'static str) {
        Self::count(&self.refusals, "kind", kind);
    }

    /// Counts one warrant or unmask request (`kind`) and its decision.
    /// Counts one warrant request of `kind` answered with `decision`
    /// ("granted", "pending" for review, or "refused").
    pub fn warrant_request(&self, kind: &'static str, decision: &'static str) {
        self.warrant_requests
            .get_or_create(&vec![("kind", kind), ("decision", decision)])
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A frame being read: counted while it lives.
pub struct Reading<'a> {
    metrics: &'a Metrics,
    bytes: i64,
}

impl<'a> Reading<'a> {
    pub fn start(metrics: &'a Metrics) -> Self {
        metrics.frames_reading.inc();
        Reading { metrics, bytes: 0 }
    }

    /// The frame declared `bytes`.
    pub fn declared(&mut self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.metrics.frame_bytes_reading.inc_by(bytes - self.bytes);
        self.bytes = bytes;
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.metrics.frames_reading.dec();
        self.metrics.frame_bytes_reading.dec_by(self.bytes);
    }
}

/// Serves `GET /metrics` on `listen` until the returned task is aborted.
/// `refresh` runs before each answer (gauges read from the relay's state).
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    refresh: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use anyhow::Context;
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot serve metrics on {listen}"))?;
    let addr = listener.local_addr()?;
    let refresh = Arc::new(refresh);
    // A few scrapers at a time; an error (out of descriptors) backs off.
    let scrapers = Arc::new(tokio::sync::Semaphore::new(16));
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = scrapers.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let (metrics, refresh) = (metrics.clone(), refresh.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    let response = if request.uri().path() == "/metrics" {
                        refresh();
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(metrics.render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"see /metrics\n")))
                    };
                    async move { response }
                });
                let serving = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), serving).await;
            });
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_each_metric_and_its_labels_but_nothing_else() {
        let m = Metrics::new();
        m.refused("send_rate");
        Metrics::count(&m.messages_stored, "mode", "secret");
        m.flush_seconds.observe(0.0003);
        {
            let mut reading = Reading::start(&m);
            reading.declared(1000);
            assert!(m.render().contains("sotto_frame_bytes_reading 1000"));
        }
        let text = m.render();
        assert!(
            text.contains("sotto_refusals_total{kind=\"send_rate\"} 1"),
            "{text}"
        );
        assert!(text.contains("sotto_messages_stored_total{mode=\"secret\"} 1"));
        assert!(text.contains("sotto_flush_seconds_count 1"));
        assert!(text.contains("sotto_frames_reading 0"));
        assert!(text.contains("sotto_frame_bytes_reading 0"));
    }
}
