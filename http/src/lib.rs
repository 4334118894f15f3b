//! kist's HTTP server (`kist serve`): artifact downloads and an OCI
//! registry (distribution-spec v1.1, under `/v2/`) in one router. All
//! storage logic stays in the store component: this crate only speaks
//! HTTP over a [`kist::Store`].
//!
//! Requests run store calls on tokio's blocking pool, each on an instance
//! from the store's pool, so downloads proceed in parallel.
//!
//! Slow, stalled and greedy clients cannot hold the server: every
//! connection and every body goes through the admission layer
//! ([`Admission`], shared with the containerd socket in `kist serve`):
//! budgets of connections, bodies and memory per client address and in
//! total (a full server makes room for a newcomer by cutting the slowest
//! body of whoever holds most), and a minimum transfer rate after a grace,
//! measured on the socket. Reads of blob bytes never wait on a client
//! while holding a thread, and shutdown has a deadline (see [`Config`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let store = kist::Store::open("/var/lib/kist").expect("store");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! let config = kist_http::Config::default();
//! let admission = kist_http::Admission::start(kist_http::Limits::default());
//! let stop = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! let router = kist_http::router(&store);
//! kist_http::serve(listener, router, &config, &admission, stop, std::future::pending()).await
//! # }
//! ```

#![deny(missing_docs)]

mod artifacts;
mod body;
mod client;
mod connections;
mod metrics;
mod observe;
mod range;
mod registry;
mod tls;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kist::Store;

pub use connections::{Config, serve};
pub use kist_admission::{Admission, Limits};
pub use metrics::Metrics;
pub use observe::{AccessLog, observed};
pub use registry::{
    Access, Htpasswd, MANIFEST_TYPES, Mirror, PolicyFile, Tokens, Upstream, UpstreamFailed,
};
pub use tls::Tls;

/// Every route kist serves for `store`, the registry open to everyone.
/// Unknown paths get 404; a known path asked with another method gets 405
/// with `Allow`.
pub fn router(store: &Store) -> Router {
    router_with(store, std::sync::Arc::default(), None)
}

/// Every route kist serves for `store`, the registry's `/v2/` behind
/// `access` (artifact downloads are public, as before) and, with a
/// `mirror`, a pull-through cache of its upstream; keep a clone of
/// `access` to [`reload`](Access::reload) it.
pub fn router_with(
    store: &Store,
    access: std::sync::Arc<Access>,
    mirror: Option<std::sync::Arc<Mirror>>,
) -> Router {
    Router::new()
        .merge(artifacts::routes(store.clone()))
        .merge(registry::routes(store.clone(), access, mirror))
}

/// `503 Service Unavailable` for a body the admission refused: the client
/// can retry in a moment.
fn busy(refused: kist_admission::Refused) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        format!("{refused}\n"),
    )
        .into_response()
}
