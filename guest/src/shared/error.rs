//! The one place where filesystem and capability failures become the WIT
//! `error` a caller sees.

pub use crate::bindings::exports::kist::content::types::Error;
use crate::bindings::kist::content::locks::LockError;
use crate::bindings::wasi::filesystem::types::ErrorCode;

/// Results of every operation in this component.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a filesystem error of `op` on `path` to the caller's error.
///
/// A full disk or quota is `no-space` so callers can free space and
/// resume; everything else is `io` with enough context to find the file.
pub fn fs(op: &str, path: &str, code: ErrorCode) -> Error {
    match code {
        ErrorCode::InsufficientSpace | ErrorCode::Quota => {
            Error::NoSpace(format!("the filesystem is full ({op} {path})"))
        }
        other => Error::Io(format!("{op} {path}: {}", other.message())),
    }
}

/// Maps a refused lock to the caller's error.
pub fn lock(name: &str, err: LockError) -> Error {
    match err {
        LockError::Busy => Error::Unavailable,
        LockError::InvalidName => Error::InvalidArgument(format!("invalid lock name {name:?}")),
        LockError::Io(msg) => Error::Io(format!("lock {name}: {msg}")),
    }
}

/// A malformed input: nothing was written.
pub fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// A state that forbids the operation (size or digest mismatch, ...).
pub fn precondition(msg: impl Into<String>) -> Error {
    Error::FailedPrecondition(msg.into())
}

/// Malformed persisted state (a damaged metadata file or blob file).
pub fn corrupt(path: &str, why: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{path}: {why}"))
}

/// What `e` says, to quote in another error's message.
pub fn message(e: &Error) -> String {
    match e {
        Error::InvalidArgument(m)
        | Error::FailedPrecondition(m)
        | Error::NoSpace(m)
        | Error::Io(m)
        | Error::TooLarge(m)
        | Error::Corrupt(m)
        | Error::Denied(m) => m.clone(),
        other => format!("{other:?}"),
    }
}
