//! The layer around every route of `kist serve`: counts each request into
//! [`Metrics`] and writes one JSON access-log line when its response body
//! ends (sent to its end, or dropped: a client that went away), so the
//! duration and byte counts are the transfer's, not its first byte's.

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use kist_admission::Connection;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{Metrics, RequestLabels, RouteLabels};

/// Where access-log lines go: one JSON object per request.
pub enum AccessLog {
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(Mutex<std::fs::File>),
}

impl AccessLog {
    /// Appends to the file at `path`, creating it if it is missing.
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::File(Mutex::new(file)))
    }

    fn write(&self, line: &str) {
        // A log that cannot be written must not fail the request.
        let _ = match self {
            Self::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
            Self::File(file) => writeln!(file.lock().expect("access log lock"), "{line}"),
        };
    }
}

/// Who made a request, as the registry's authentication found it: set on
/// the response for the access log.
#[derive(Clone)]
pub(crate) struct User(pub String);

/// What the layer shares.
struct Observer {
    metrics: Metrics,
    log: Option<AccessLog>,
}

/// `router` with every request counted into `metrics` and, with `log`,
/// written to it.
pub fn observed(router: Router, metrics: &Metrics, log: Option<AccessLog>) -> Router {
    let observer = Arc::new(Observer {
        metrics: metrics.clone(),
        log,
    });
    router.layer(axum::middleware::from_fn_with_state(observer, observe))
}

/// The route template of `path`, never a name or digest.
fn route_of(path: &str) -> &'static str {
    if let Some(route) = crate::registry::route_of(path) {
        return route;
    }
    match path {
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        _ if path.split('/').count() == 5 => "/{kind}/{namespace}/{name}/{file}",
        _ => "/{unknown}",
    }
}

async fn observe(State(observer): State<Arc<Observer>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let labels = RouteLabels {
        method: request.method().to_string(),
        route: route_of(request.uri().path()),
    };
    let path = request.uri().path().to_owned();
    let client = request
        .extensions()
        .get::<Arc<Connection>>()
        .map(|c| c.client().to_string());
    let counts = observer.metrics.counts();
    counts.in_flight.get_or_create(&labels).inc();
    let (received, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let bytes_in = counts.bytes_in.get_or_create_owned(&labels);
    let bytes_out = counts.bytes_out.get_or_create_owned(&labels);
    // Recorded when dropped: with the response's end, or here if the
    // client goes away before there is a response (status 0).
    let mut ended = Ended {
        observer: Arc::clone(&observer),
        labels,
        path,
        status: 0,
        started,
        client,
        user: None,
        received: Arc::clone(&received),
        sent: Arc::clone(&sent),
    };
    let request = request.map(|body| {
        Body::new(Counted {
            inner: body,
            total: bytes_in,
            this: received,
            ended: None,
        })
    });
    let response = next.run(request).await;
    ended.status = response.status().as_u16();
    ended.user = response.extensions().get::<User>().map(|u| u.0.clone());
    counts
        .requests
        .get_or_create(&RequestLabels {
            method: ended.labels.method.clone(),
            route: ended.labels.route,
            status: ended.status,
        })
        .inc();
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            total: bytes_out,
            this: sent,
            ended: Some(ended),
        })
    })
}

/// A body whose data bytes are added to `total` and `this` as they pass;
/// `ended` is dropped (the request recorded) when it ends or is dropped.
struct Counted {
    inner: Body,
    total: Counter,
    this: Arc<AtomicU64>,
    ended: Option<Ended>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                this.total.inc_by(n);
                this.this.fetch_add(n, Ordering::Relaxed);
            }
            Poll::Ready(None) => drop(this.ended.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request whose response has not ended yet; recorded when dropped.
struct Ended {
    observer: Arc<Observer>,
    labels: RouteLabels,
    path: String,
    status: u16,
    started: Instant,
    client: Option<String>,
    user: Option<String>,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let counts = self.observer.metrics.counts();
        counts.in_flight.get_or_create(&self.labels).dec();
        counts
            .durations
            .get_or_create(&self.labels)
            .observe(elapsed.as_secs_f64());
        let Some(log) = &self.observer.log else {
            return;
        };
        let line = serde_json::json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "method": self.labels.method,
            "path": self.path,
            "route": self.labels.route,
            "status": self.status,
            "bytes_in": self.received.load(Ordering::Relaxed),
            "bytes_out": self.sent.load(Ordering::Relaxed),
            "duration_ms": elapsed.as_secs_f64() * 1e3,
            "client": self.client,
            "user": self.user,
        });
        log.write(&line.to_string());
    }
}
