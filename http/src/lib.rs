//! kist's HTTP server (`kist serve`): artifact downloads and an OCI
//! registry (distribution-spec v1.1, under `/v2/`) in one router. All
//! storage logic stays in the store component: this crate only speaks
//! HTTP over a [`kist::Store`].
//!
//! Requests run store calls on tokio's blocking pool, each on an instance
//! from the store's pool, so downloads proceed in parallel.
//!
//! Slow and stalled clients cannot hold the server: reads of blob bytes
//! never wait on a client while holding a thread, a client that stops
//! reading is disconnected, downloads in flight are capped per client
//! address, and shutdown has a deadline (see [`Config`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let store = kist::Store::open("/var/lib/kist").expect("store");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! let config = kist_http::Config::default();
//! let stop = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! kist_http::serve(listener, kist_http::router(&store), &config, stop, std::future::pending())
//!     .await
//! # }
//! ```

#![deny(missing_docs)]

mod artifacts;
mod body;
mod client;
mod connections;
mod limits;
mod range;
mod registry;
mod tls;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kist::Store;

pub use connections::{Config, serve};
pub use registry::{Access, Htpasswd};
pub use tls::Tls;

/// Every route kist serves for `store`, the registry open to everyone.
/// Unknown paths get 404; a known path asked with another method gets 405
/// with `Allow`.
pub fn router(store: &Store) -> Router {
    router_with(store, Access::default())
}

/// Every route kist serves for `store`, the registry's `/v2/` behind
/// `access` (artifact downloads are public, as before).
pub fn router_with(store: &Store, access: Access) -> Router {
    let stall = Config::default().header_timeout;
    Router::new()
        .merge(artifacts::routes(store.clone()))
        .merge(registry::routes(store.clone(), access, stall))
}

/// `503 Service Unavailable` for a client that has as many downloads in
/// flight as it may: it can retry in a moment.
fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        "too many downloads in flight from this address\n",
    )
        .into_response()
}
