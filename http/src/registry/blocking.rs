//! Store calls from async handlers: each runs on tokio's blocking pool,
//! so no runtime thread waits on the component.

use axum::http::StatusCode;

use super::errors::Failure;

/// Runs `f` on the blocking pool; its error as a spec error.
pub async fn run<T: Send + 'static>(
    f: impl FnOnce() -> kist::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
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
