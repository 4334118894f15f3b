//! The library's error type, and the one place that maps the component's
//! WIT `error` and wasmtime failures into it.

use crate::bindings::exports::kist::content::registry::RegistryError;
use crate::bindings::exports::kist::content::types::Error as WitError;

/// Everything a kist operation can fail with.
///
/// The first eleven cases are the WIT `error` variant: the component refused
/// the operation and nothing stored was changed. The rest are failures of
/// the sandbox around it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The blob, ingest or ref does not exist.
    #[error("not found")]
    NotFound,
    /// The blob is already stored (on commit: the ingest was removed, and
    /// the content is there: a commit that gets this has succeeded).
    #[error("already exists (the content is stored: a commit that gets this has succeeded)")]
    AlreadyExists,
    /// Another writer or operation holds the ref or blob; retry later.
    #[error("unavailable: locked by another writer")]
    Unavailable,
    /// Malformed input; nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A size or digest mismatch, or a conflicting re-open; the ingest is kept.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A read or truncate past the end.
    #[error("out of range")]
    OutOfRange,
    /// No room: the store's filesystem is full, or a quota would be
    /// crossed (the message says which); resume after freeing space.
    #[error("no space: {0}")]
    NoSpace(String),
    /// Another I/O failure, naming the operation and file.
    #[error("I/O error: {0}")]
    Io(String),
    /// The input exceeds a size limit the caller set (an archive or an
    /// extraction); nothing was stored.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Something stored is damaged (a blob's bytes or file, a record kist
    /// wrote); the message names it. Storing the content again, or
    /// `kist fsck --repair`, replaces or quarantines it.
    #[error("damaged: {0}")]
    Corrupt(String),
    /// The handle is confined to a holder ([`Store::confined_to`]) and the
    /// operation needs more (it administers the whole store, or names
    /// another holder); nothing changed.
    ///
    /// [`Store::confined_to`]: crate::Store::confined_to
    #[error("denied: {0}")]
    Denied(String),
    /// A registry operation was refused with one of the distribution
    /// spec's errors (never [`RegistryError::Store`]: store failures are
    /// the cases above).
    #[error("registry: {0:?}")]
    Registry(RegistryError),
    /// The component ran a whole deadline without asking the host for
    /// anything (a runaway loop) and was stopped.
    #[error("the store component ran past its deadline without progress and was interrupted")]
    Timeout,
    /// The component trapped (for example it hit its memory limit) or could
    /// not be loaded; the next call gets a fresh instance.
    #[error("the store component failed: {0}")]
    Component(String),
}

// By hand: the generated `RegistryError` is not comparable. Every case
// shows all it holds, so equal cases with equal texts are equal.
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && format!("{self:?}") == format!("{other:?}")
    }
}

impl Eq for Error {}

/// Results of kist operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<WitError> for Error {
    fn from(e: WitError) -> Self {
        match e {
            WitError::NotFound => Self::NotFound,
            WitError::AlreadyExists => Self::AlreadyExists,
            WitError::Unavailable => Self::Unavailable,
            WitError::InvalidArgument(m) => Self::InvalidArgument(m),
            WitError::FailedPrecondition(m) => Self::FailedPrecondition(m),
            WitError::OutOfRange => Self::OutOfRange,
            WitError::NoSpace(m) => Self::NoSpace(m),
            WitError::Io(m) => Self::Io(m),
            WitError::TooLarge(m) => Self::TooLarge(m),
            WitError::Corrupt(m) => Self::Corrupt(m),
            WitError::Denied(m) => Self::Denied(m),
        }
    }
}

impl From<wasmtime::Error> for Error {
    fn from(e: wasmtime::Error) -> Self {
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => Self::Timeout,
            // One line: a trap's kind, not the wasm backtrace wasmtime adds.
            Some(trap) => Self::Component(format!("the component trapped: {trap}")),
            None => {
                let cause = e.root_cause().to_string();
                Self::Component(cause.lines().next().unwrap_or_default().to_owned())
            }
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => {
                Self::NoSpace(e.to_string())
            }
            _ => Self::Io(e.to_string()),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e {
            Error::NotFound => std::io::ErrorKind::NotFound,
            Error::AlreadyExists => std::io::ErrorKind::AlreadyExists,
            Error::InvalidArgument(_) => std::io::ErrorKind::InvalidInput,
            Error::NoSpace(_) => std::io::ErrorKind::StorageFull,
            Error::Timeout => std::io::ErrorKind::TimedOut,
            Error::Denied(_) => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
