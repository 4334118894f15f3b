//! `kist:content/locks` as exclusive-create files under `locks/portable/`
//! in the store directory (WASI 0.2 has no file locks).
//!
//! Weaker than the native host's `flock`: a holder that crashes leaves its
//! file behind, and the name stays `busy` until the file is deleted (safe
//! only while nothing uses the store). There is no stale-lock guessing: a
//! lock held by a slow but live writer must never be broken.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::Component;
use crate::bindings::exports::kist::content::locks::{Guard, Guest, GuestGuard, LockError};
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::filesystem::preopens;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};

/// Where the lock files live, relative to the store root.
const DIR: [&str; 2] = ["locks", "portable"];
/// Longest accepted name, as in kist's native host.
const MAX_NAME: usize = 1024;
/// Longest pause between attempts while `lock` waits.
const MAX_BACKOFF_NS: u64 = 20_000_000;

impl Guest for Component {
    type Guard = FileGuard;

    fn try_lock(name: String) -> Result<Guard, LockError> {
        FileGuard::take(name, "try").map(Guard::new)
    }

    fn lock(name: String, timeout_ms: u32) -> Result<Guard, LockError> {
        let deadline = monotonic_clock::now() + u64::from(timeout_ms) * 1_000_000;
        let mut backoff = 100_000;
        loop {
            match FileGuard::take(name.clone(), "lock") {
                Err(LockError::Busy) if monotonic_clock::now() < deadline => {
                    monotonic_clock::subscribe_duration(backoff).block();
                    backoff = (backoff * 2).min(MAX_BACKOFF_NS);
                }
                taken => return taken.map(Guard::new),
            }
        }
    }
}

/// A held lock: its file exists until the guard is dropped.
pub struct FileGuard {
    name: String,
    file: String,
}

impl FileGuard {
    /// Creates the lock file for `name` in the namespace `kind` (`try` and
    /// `lock` names are separate, as the interface requires).
    fn take(name: String, kind: &str) -> Result<Self, LockError> {
        if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
            return Err(LockError::InvalidName);
        }
        let hex: String = Sha256::digest(name.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let file = format!("{kind}-{hex}");
        let created = dir()?.open_at(
            PathFlags::empty(),
            &file,
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            DescriptorFlags::WRITE,
        );
        match created {
            Ok(_) => Ok(Self { name, file }),
            Err(ErrorCode::Exist) => Err(LockError::Busy),
            Err(e) => Err(io(&file, e)),
        }
    }
}

impl GuestGuard for FileGuard {
    fn name(&self) -> String {
        self.name.clone()
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        // Nothing to report to: a file that cannot be removed stays busy,
        // which errs on the side of exclusion.
        if let Ok(dir) = dir() {
            let _ = dir.unlink_file_at(&self.file);
        }
    }
}

/// The lock directory, created on first use and held open.
fn dir() -> Result<&'static Descriptor, LockError> {
    static DIR_FD: OnceLock<Result<Descriptor, LockError>> = OnceLock::new();
    DIR_FD.get_or_init(open_dir).as_ref().map_err(Clone::clone)
}

fn open_dir() -> Result<Descriptor, LockError> {
    let (root, _) = preopens::get_directories()
        .into_iter()
        .next()
        .ok_or_else(|| LockError::Io("the host preopened no store directory".into()))?;
    let mut path = String::new();
    for part in DIR {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(part);
        match root.create_directory_at(&path) {
            Ok(()) | Err(ErrorCode::Exist) => {}
            Err(e) => return Err(io(&path, e)),
        }
    }
    root.open_at(
        PathFlags::empty(),
        &path,
        OpenFlags::DIRECTORY,
        // READ alone: hosts let a directory descriptor create and remove
        // entries anyway, and jco's shim rejects MUTATE_DIRECTORY.
        DescriptorFlags::READ,
    )
    .map_err(|e| io(&path, e))
}

fn io(path: &str, e: ErrorCode) -> LockError {
    LockError::Io(format!("{path}: {e:?}"))
}
