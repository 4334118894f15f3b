//! `kist:content/locks`: `flock` on one file per lock name in
//! `<store>/locks/`, shared by every instance and process using the store.
//!
//! `flock` locks belong to an open file description, so two opens in one
//! process exclude each other just as two processes do, and the kernel
//! releases a crashed holder's locks.
//!
//! `try-lock` names (ingest refs, held for a writer's lifetime) get a file
//! of their own, unlinked on release so no files pile up; to stay correct
//! against that, a taker re-checks after locking that the path still names
//! the file it locked. `lock` (the waiting kind, for short operations on
//! one blob) locks one byte of one file, `locks/names`, at an offset the
//! name's hash gives, with an open-file-description (OFD) record lock:
//! creating and unlinking a lock file per blob doubled the metadata work
//! of a small `put`. Each name is its own lock (two names meet only if 62
//! bits of their sha256 do), so holding several at once cannot make a
//! holder wait on itself, and names never contend by accident (a fixed set
//! of stripe files did both). OFD locks, like `flock`, belong to the open
//! file description: two guards in one process exclude each other, and the
//! kernel releases a crashed holder's.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use super::CapabilitiesView;
use super::slots::Slot;
use crate::bindings::kist::content::locks::{Host, HostGuard, LockError};

/// Longest accepted lock name, in bytes.
const MAX_NAME: usize = 1024;
/// The file whose bytes `lock` locks, one per name.
const NAMES: &str = "names";
/// Longest pause between two attempts of a waiting `lock`.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// The lock directory, held open so that replacing `locks/` with a symlink
/// (the guest can write the store root) cannot redirect the host.
pub(crate) struct LockDir(Arc<OwnedFd>);

impl LockDir {
    pub(crate) fn open(root: &Path) -> std::io::Result<Self> {
        let path = root.join("locks");
        let named = |e: std::io::Error| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{}: {e} (kist's lock directory; a symlink is not followed)",
                    path.display()
                ),
            )
        };
        match std::fs::create_dir(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(named(e)),
            _ => {}
        }
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
        let dir = rustix::fs::open(&path, flags, Mode::empty()).map_err(|e| named(e.into()))?;
        Ok(Self(Arc::new(dir)))
    }

    /// Takes the lock `name`, retrying until `deadline` (once if `None`).
    fn acquire(
        &self,
        name: &str,
        deadline: Option<Instant>,
        slot: Slot,
    ) -> Result<LockGuard, LockError> {
        if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
            return Err(LockError::InvalidName);
        }
        let hash = Sha256::digest(name.as_bytes());
        let (file, own_file) = match deadline {
            None => (hex::encode(hash), true),
            Some(_) => (NAMES.to_owned(), false),
        };
        // A name's byte in `names`: 62 bits of its hash (a positive offset
        // with room for the one byte).
        let offset = i64::from_be_bytes(hash[..8].try_into().expect("8 bytes")) & (i64::MAX >> 1);
        let io = |e: rustix::io::Errno| LockError::Io(format!("lock file {file}: {e}"));
        let mut backoff = Duration::from_millis(1);
        loop {
            let flags = OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(&*self.0, file.as_str(), flags, Mode::from_raw_mode(0o600))
                .map_err(io)?;
            let locked = if own_file {
                rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)
            } else {
                lock_byte(&fd, offset)
            };
            match locked {
                // An own file's previous holder may have unlinked it between
                // our open and our lock: then retry on the new file.
                Ok(()) if own_file && !self.still_names(&file, &fd) => continue,
                Ok(()) => {
                    let unlink = own_file.then(|| (Arc::clone(&self.0), file.clone()));
                    return Ok(LockGuard {
                        name: name.to_owned(),
                        unlink,
                        _fd: fd,
                        _slot: slot,
                    });
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    if deadline.is_none_or(|d| Instant::now() >= d) {
                        return Err(LockError::Busy);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// Whether `file` in the lock directory is still the file `fd` opened.
    fn still_names(&self, file: &str, fd: &OwnedFd) -> bool {
        let now = rustix::fs::statat(&*self.0, file, AtFlags::SYMLINK_NOFOLLOW);
        match (rustix::fs::fstat(fd), now) {
            (Ok(ours), Ok(now)) => now.st_ino == ours.st_ino && now.st_dev == ours.st_dev,
            _ => false,
        }
    }
}

/// Takes an exclusive OFD record lock on the byte at `offset` of `fd`
/// without waiting: `WOULDBLOCK` while another open file description holds
/// it. Released when `fd` is closed.
fn lock_byte(fd: &OwnedFd, offset: i64) -> rustix::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is plain data, zero is a valid value for every field
    // (and `l_pid` must be 0 for OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = offset;
    lock.l_len = 1;
    // SAFETY: `fd` is an open descriptor for the call's length, and `lock`
    // a valid `flock` it only reads.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if r == 0 {
        return Ok(());
    }
    match rustix::io::Errno::from_io_error(&std::io::Error::last_os_error()) {
        // Held elsewhere: EAGAIN or EACCES, as POSIX allows either.
        Some(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
            Err(rustix::io::Errno::WOULDBLOCK)
        }
        Some(e) => Err(e),
        None => Err(rustix::io::Errno::IO),
    }
}

/// A held lock; dropping it releases the lock (and unlinks an own file).
pub struct LockGuard {
    name: String,
    /// The lock directory and the file to unlink on release (own files).
    unlink: Option<(Arc<OwnedFd>, String)>,
    /// Closed after `drop` has unlinked the file, which releases the lock.
    _fd: OwnedFd,
    /// The guard's place among the store's live guards.
    _slot: Slot,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then close (which unlocks):
        // a waiter that opened the old file notices and retries.
        if let Some((dir, file)) = &self.unlink {
            let _ = rustix::fs::unlinkat(&**dir, file.as_str(), AtFlags::empty());
        }
    }
}

type Granted = wasmtime::Result<Result<Resource<LockGuard>, LockError>>;

impl CapabilitiesView<'_> {
    fn grant(&mut self, name: &str, deadline: Option<Instant>) -> Granted {
        let Some(slot) = self.ctx.guards.take() else {
            let max = self.ctx.guards.max();
            return Ok(Err(LockError::Io(format!(
                "the store's components hold {max} locks, the most allowed"
            ))));
        };
        match self.ctx.locks.acquire(name, deadline, slot) {
            Ok(guard) => Ok(Ok(self.table.push(guard)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl Host for CapabilitiesView<'_> {
    fn try_lock(&mut self, name: String) -> Granted {
        self.grant(&name, None)
    }

    fn lock(&mut self, name: String, timeout_ms: u32) -> Granted {
        let wait = Duration::from_millis(timeout_ms.into()).min(self.ctx.max_lock_wait);
        self.grant(&name, Some(Instant::now() + wait))
    }
}

impl HostGuard for CapabilitiesView<'_> {
    fn name(&mut self, this: Resource<LockGuard>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.name.clone())
    }

    fn drop(&mut self, this: Resource<LockGuard>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
