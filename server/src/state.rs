//! What every connection shares: the relay's components, each a handle of
//! its own, so a handler (or the warrant desk) is given the few it uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::accounts::Accounts;
use crate::admission::Admission;
use crate::archive::Archive;
use crate::config::RelayConfig;
use crate::groups::Groups;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::prekeys::Prekeys;
use crate::quotas::Quotas;
use crate::secret_queue::Queue;
use crate::store::Store;
use crate::warrant::WarrantDesk;
use crate::warrant::notices::Notices;
use crate::writer::Writer;

/// What every connection shares.
pub struct RelayState {
    pub(crate) config: RelayConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) accounts: Accounts,
    pub(crate) groups: Groups,
    pub(crate) archive: Arc<Archive>,
    pub(crate) writer: Writer,
    pub(crate) prekeys: Prekeys,
    pub(crate) secret_queue: Arc<Queue>,
    /// Serves warrants and unmask requests; holds no handle on the secret queue.
    pub(crate) warrants: WarrantDesk,
    /// Warrant notices waiting for the people they tell.
    pub(crate) notices: Notices,
    /// What each account and address may ask for over time.
    pub(crate) quotas: Quotas,
    /// Who holds a connection.
    pub(crate) admission: Arc<Admission>,
    pub(crate) hub: Hub,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) next_connection: AtomicU64,
}

impl RelayState {
    /// Secret envelopes waiting for their recipients, relay-wide.
    pub fn secret_envelopes_waiting(&self) -> Result<usize, crate::RelayError> {
        self.secret_queue.envelopes()
    }

    /// Deletes the secret envelopes whose time-to-live ended by `now_ms`.
    pub fn expire_secret_envelopes(&self, now_ms: i64) -> Result<usize, crate::RelayError> {
        self.secret_queue.expire(now_ms)
    }

    /// How many one-time (curve) prekeys `user` has left to hand out.
    pub async fn one_time_prekeys_left(&self, user: &str) -> Result<usize, crate::RelayError> {
        Ok(self.prekeys.left(user).await?.one_time)
    }

    /// How many one-time ML-KEM-1024 prekeys `user` has left to hand out.
    pub async fn pq_one_time_prekeys_left(&self, user: &str) -> Result<usize, crate::RelayError> {
        Ok(self.prekeys.left(user).await?.pq_one_time)
    }

    /// Entries in one of the store's trees (for tests that prove nothing is left).
    pub fn stored_entries(&self, tree: crate::store::Tree) -> Result<usize, crate::RelayError> {
        Ok(self.store.count(tree)?)
    }

    /// The metrics, read from the state where they are gauges, as text.
    pub fn metrics_text(&self) -> String {
        self.refresh_gauges();
        self.metrics.render()
    }

    /// Sets the gauges that are read from the relay's state.
    pub(crate) fn refresh_gauges(&self) {
        self.metrics
            .connections
            .set(i64::from(self.admission.connections()));
        let (envelopes, bytes) = self.secret_queue.totals();
        self.metrics
            .secret_queue_envelopes
            .set(i64::try_from(envelopes).unwrap_or(i64::MAX));
        self.metrics
            .secret_queue_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}
