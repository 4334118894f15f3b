//! [`Metrics`]: what `kist serve` counts, served as `/metrics` in the
//! OpenMetrics text format (which Prometheus scrapes), and `/healthz`.
//!
//! Requests are counted by method, route template (never a repository
//! name or digest: one series per endpoint) and status, with the bytes of
//! their bodies and their durations until the response body ends (so a
//! download's duration is the download's, not its first byte's). What
//! lives elsewhere (the admission's refusals, the store's usage per quota)
//! is read when scraped; collections are counted as `kist serve` runs them.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kist::Store;
use kist_admission::Admission;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How long a scrape reuses the store's usage (counted by reading every
/// record: a scraper asking often must not make the store do it often).
const USAGE_REUSED_FOR: Duration = Duration::from_secs(10);

/// A request's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub method: String,
    pub route: &'static str,
    pub status: u16,
}

/// A route's series (what is known before the response).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub method: String,
    pub route: &'static str,
}

/// A quota's series: its holder prefix, `""` for the store-wide one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    quota: String,
}

/// What `kist serve` counts; clones share the counts.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

/// The counts, which the request layer (`observe`) updates.
pub(crate) struct Inner {
    registry: Registry,
    store: Store,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) durations: Family<RouteLabels, Histogram>,
    pub(crate) bytes_in: Family<RouteLabels, Counter>,
    pub(crate) bytes_out: Family<RouteLabels, Counter>,
    pub(crate) in_flight: Family<RouteLabels, Gauge>,
    collections: Counter,
    collections_failed: Counter,
    freed: Counter,
    used: Family<QuotaLabels, Gauge>,
    limits: Family<QuotaLabels, Gauge>,
    /// When the store's usage was last read into `used` and `limits`.
    usage_read: Mutex<Option<Instant>>,
    admission: Arc<OnceLock<Arc<Admission>>>,
}

/// Histogram buckets of request durations: 1 ms to ~4.4 min, ×4 apart.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

impl Metrics {
    /// Counts for a server of `store`, all zero.
    pub fn new(store: &Store) -> Self {
        let mut registry = Registry::with_prefix("kist");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        let (bytes_in, bytes_out) = (Family::default(), Family::default());
        let in_flight = Family::default();
        let (collections, collections_failed, freed) =
            (Counter::default(), Counter::default(), Counter::default());
        let (used, limits) = (Family::default(), Family::default());
        let admission = Arc::new(OnceLock::new());
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "From a request's arrival to its response body's end (uploads and downloads \
             included), by method and route template",
            durations.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Request body bytes received, by method and route template",
            bytes_in.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Response body bytes sent, by method and route template",
            bytes_out.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests not yet answered to their body's end, by method and route template \
             (uploads in flight: route /v2/{name}/blobs/uploads/{id})",
            in_flight.clone(),
        );
        registry.register(
            "collections",
            "Collections `kist serve` ran to their end",
            collections.clone(),
        );
        registry.register(
            "collections_failed",
            "Collections `kist serve` started that failed",
            collections_failed.clone(),
        );
        registry.register(
            "collection_freed_bytes",
            "Bytes the collections freed",
            freed.clone(),
        );
        registry.register(
            "store_quota_used_bytes",
            "Bytes counted against each quota (quota=\"\": the store-wide one)",
            used.clone(),
        );
        registry.register(
            "store_quota_limit_bytes",
            "Each quota's limit in bytes (absent where the filesystem's size is unknown)",
            limits.clone(),
        );
        registry.register_collector(Box::new(Admitted(Arc::clone(&admission))));
        Self(Arc::new(Inner {
            registry,
            store: store.clone(),
            requests,
            durations,
            bytes_in,
            bytes_out,
            in_flight,
            collections,
            collections_failed,
            freed,
            used,
            limits,
            usage_read: Mutex::new(None),
            admission,
        }))
    }

    /// Reports `admission`'s refusals and cuts too (the first one given).
    pub fn watch(&self, admission: &Arc<Admission>) {
        let _ = self.0.admission.set(Arc::clone(admission));
    }

    /// Counts a collection: `Some(freed)` bytes, or `None` if it failed.
    pub fn collected(&self, freed: Option<u64>) {
        match freed {
            Some(bytes) => {
                self.0.collections.inc();
                self.0.freed.inc_by(bytes);
            }
            None => {
                self.0.collections_failed.inc();
            }
        }
    }

    /// `GET /metrics` and `GET /healthz`.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/metrics", get(scrape))
            .route("/healthz", get(health))
            .with_state(self.clone())
    }

    /// The counts, for the request layer.
    pub(crate) fn counts(&self) -> &Inner {
        &self.0
    }

    /// Reads the store's usage into the quota gauges, unless that was done
    /// less than [`USAGE_REUSED_FOR`] ago.
    fn read_usage(&self) -> kist::Result<()> {
        let mut read = self.0.usage_read.lock().expect("usage lock");
        if read.is_some_and(|at| at.elapsed() < USAGE_REUSED_FOR) {
            return Ok(());
        }
        let usage = self.0.store.retention().usage()?;
        self.0.used.clear();
        self.0.limits.clear();
        for q in usage.quotas {
            let labels = QuotaLabels {
                quota: q.quota.holder_prefix.unwrap_or_default(),
            };
            self.0.used.get_or_create(&labels).set(q.used as i64);
            if let Some(limit) = q.limit_bytes {
                self.0.limits.get_or_create(&labels).set(limit as i64);
            }
        }
        *read = Some(Instant::now());
        Ok(())
    }
}

/// `GET /metrics`: every count, the store's usage read first (on the
/// blocking pool: it is a store call). A store that fails leaves the
/// quota gauges as they were and says so in a header.
async fn scrape(State(metrics): State<Metrics>) -> Response {
    let reader = metrics.clone();
    let read = tokio::task::spawn_blocking(move || reader.read_usage()).await;
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &metrics.0.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response();
    if !matches!(read, Ok(Ok(()))) {
        let stale = header::HeaderValue::from_static("store usage unavailable");
        response.headers_mut().insert("Warning", stale);
    }
    response
}

/// `GET /healthz`: 200 `ok` when the store answers a call, 503 with the
/// error otherwise.
async fn health(State(metrics): State<Metrics>) -> Response {
    let store = metrics.0.store.clone();
    match tokio::task::spawn_blocking(move || store.retention().settings()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
    }
}

/// The admission's refusals and cuts, read when scraped.
struct Admitted(Arc<OnceLock<Arc<Admission>>>);

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admitted")
    }
}

impl Collector for Admitted {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(admission) = self.0.get() else {
            return Ok(());
        };
        let (refused, cut) = admission.counts();
        for (name, help, value) in [
            (
                "admission_refused",
                "Connections and bodies the admission layer refused (a client over its \
                 budget, or the server full)",
                refused,
            ),
            (
                "admission_cut",
                "Connections and bodies the admission layer cut (too slow, stalled, or \
                 making room)",
                cut,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
