//! Store calls from async handlers: each runs on tokio's blocking pool,
//! so no runtime thread waits on the component.

use axum::http::StatusCode;

use super::errors::Failure;

/// A store call running on the blocking pool.
pub type Running<T> = tokio::task::JoinHandle<kist::Result<T>>;

/// Runs `f` on the blocking pool; its error as a spec error.
pub async fn run<T: Send + 'static>(
    f: impl FnOnce() -> kist::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    join(spawn(f)).await
}

/// Starts `f` on the blocking pool, to [`join`] later.
pub fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> kist::Result<T> + Send + 'static,
) -> Running<T> {
    tokio::task::spawn_blocking(f)
}

/// The outcome of a call [`spawn`] started.
pub async fn join<T>(running: Running<T>) -> Result<T, Failure> {
    match running.await {
        Ok(result) => result.map_err(Failure::from),
        Err(e) => {
            tracing::warn!("registry call panicked: {e}");
            Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "the store call failed",
            ))
        }
    }
}
