//! kist's errors as gRPC statuses, in one place: the codes containerd's
//! `errdefs` turns back into its own errors.

use tonic::{Code, Status};

/// The status containerd expects for `e`.
pub fn status(e: kist::Error) -> Status {
    let code = match &e {
        kist::Error::NotFound => Code::NotFound,
        kist::Error::AlreadyExists => Code::AlreadyExists,
        kist::Error::Unavailable => Code::Unavailable,
        kist::Error::InvalidArgument(_) | kist::Error::TooLarge(_) => Code::InvalidArgument,
        kist::Error::FailedPrecondition(_) => Code::FailedPrecondition,
        kist::Error::OutOfRange => Code::OutOfRange,
        kist::Error::NoSpace(_) => Code::ResourceExhausted,
        kist::Error::Corrupt(_) => Code::DataLoss,
        kist::Error::Denied(_) => Code::PermissionDenied,
        kist::Error::Timeout => Code::DeadlineExceeded,
        kist::Error::Io(_) | kist::Error::Component(_) | kist::Error::Registry(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// Runs the blocking store call `f` off the async runtime.
pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> kist::Result<R> + Send + 'static,
) -> Result<R, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("store call panicked: {e}")))?
        .map_err(status)
}
