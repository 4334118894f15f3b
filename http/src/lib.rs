//! kist's HTTP server (`kist serve`): artifacts today; one router that
//! further APIs (the OCI distribution API) join as more route sets. All
//! storage logic stays in the store component: this crate only speaks
//! HTTP over a [`kist::Store`].
//!
//! Requests run store calls on tokio's blocking pool, each on an instance
//! from the store's pool, so downloads proceed in parallel.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let store = kist::Store::open("/var/lib/kist").expect("store");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! kist_http::serve(listener, kist_http::router(&store), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

#![deny(missing_docs)]

mod artifacts;
mod range;

use std::future::Future;

use axum::Router;

use kist::Store;

/// Every route kist serves for `store`. Unknown paths get 404.
pub fn router(store: &Store) -> Router {
    Router::new().merge(artifacts::routes(store.clone()))
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
