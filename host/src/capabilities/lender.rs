//! `kist:content/lender`: a range of a file the component opened and
//! checked, lent to the host, which then reads it natively (`pread` into
//! its own buffers, or hands the descriptor to `sendfile`) without calling
//! the component again.
//!
//! The loan is made only from a descriptor in the instance's resource
//! table, which the component can only have opened beneath the store, and
//! only for a regular file open for reading and a range within it: a
//! hostile component can make the host send nothing else. Every read
//! re-checks two things the component cannot take back by itself: that
//! the file is still linked (a purge or a collection unlinks it, and its
//! bytes stop being served at once), and that the component has not
//! revoked its loans since (it does whenever what a caller may see
//! shrinks).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Resource;
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::Descriptor;

use super::CapabilitiesView;
use super::copier::file;
use crate::bindings::kist::content::copier::CopyError;
use crate::bindings::kist::content::lender::{Host, HostLoan, LoanError};

/// Most bytes one `read-at` of the WIT loan returns.
const MAX_READ: u64 = 16 << 20;

/// Reads ahead ([`Loan::warm`]) running in the process.
static WARMING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Most reads ahead running at once in the process (each holds a buffer
/// of up to 1 MiB while it runs).
const MAX_WARMING: usize = 64;

/// How many times a store's component revoked its loans: a loan made at
/// generation `n` is void once it is past `n`.
#[derive(Default)]
pub(crate) struct Revocations(AtomicU64);

impl Revocations {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Bytes of one blob file, lent by the component.
pub struct Loan {
    file: Arc<File>,
    start: u64,
    size: u64,
    generation: u64,
    revocations: Arc<Revocations>,
}

impl Loan {
    /// The bytes lent.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the component revoked its loans since this one was made
    /// (what a caller may see shrank: ask it again before reading on for
    /// a caller whose view is limited).
    pub fn revoked(&self) -> bool {
        self.revocations.now() != self.generation
    }

    /// Whether the lent file is still linked (not purged or collected):
    /// one `fstat`.
    pub fn linked(&self) -> bool {
        self.check().is_ok()
    }

    /// Whether the lent file is still linked (not purged or collected).
    fn check(&self) -> Result<(), LoanError> {
        match self.file.metadata() {
            Ok(meta) if meta.nlink() == 0 => Err(LoanError::Gone),
            Ok(_) => Ok(()),
            Err(e) => Err(LoanError::Io(e.to_string())),
        }
    }

    /// Fills `buf` from `offset` within the loan; returns the bytes read,
    /// fewer than `buf` only at the loan's end. Fails with `gone` once the
    /// file was removed; [`revoked`](Self::revoked) is the caller's to
    /// heed.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, LoanError> {
        self.check()?;
        if offset > self.size {
            return Err(LoanError::OutOfRange(format!(
                "offset {offset} is past the loan's {} bytes",
                self.size
            )));
        }
        let want = buf.len().min((self.size - offset) as usize);
        let mut read = 0;
        while read < want {
            let at = self.start + offset + read as u64;
            match self.file.read_at(&mut buf[read..want], at) {
                // The file is immutable: shorter than lent means damaged.
                Ok(0) => return Err(LoanError::Io(format!("the file ends at {at}"))),
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LoanError::Io(e.to_string())),
            }
        }
        Ok(read)
    }

    /// Whether the page cache holds all of `len` bytes from `offset`
    /// (`mincore` of a mapping of them: no I/O, and no read that would
    /// start the kernel's read-ahead, as `RWF_NOWAIT` reads do). True when
    /// it cannot be told.
    pub(crate) fn cached(&self, offset: u64, len: u64) -> bool {
        let len = len.min(self.size.saturating_sub(offset));
        if len == 0 {
            return true;
        }
        resident(&self.file, self.start + offset, len as usize).unwrap_or(true)
    }

    /// Reads `len` bytes from `offset` on a thread of its own and drops
    /// them, so they are in the page cache when a read asks: several of
    /// these keep the device as busy as it needs to be to reach its speed
    /// (one synchronous read at a time reaches a fraction of it), with no
    /// buffer held once they end. `None` if no thread could be started.
    pub(crate) fn warm(&self, offset: u64, len: usize) -> Option<std::thread::JoinHandle<()>> {
        // The process's reads ahead are bounded, and so the memory their
        // buffers take (64 MiB), however many readers read cold blobs.
        if WARMING.fetch_add(1, Ordering::AcqRel) >= MAX_WARMING {
            WARMING.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let file = Arc::clone(&self.file);
        let at = self.start + offset;
        let spawned = std::thread::Builder::new()
            .name("kist-read-ahead".into())
            .spawn(move || {
                let mut buf = vec![0; len];
                let _ = file.read_at(&mut buf, at);
                drop(buf);
                WARMING.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            WARMING.fetch_sub(1, Ordering::AcqRel);
        }
        spawned.ok()
    }
}

/// Whether every page of `len` bytes at `at` of `file` is in the page
/// cache; `None` if the kernel would not say.
fn resident(file: &File, at: u64, len: usize) -> Option<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    let skew = (at % page as u64) as usize;
    let span = skew + len;
    let offset = libc::off_t::try_from(at - skew as u64).ok()?;
    // SAFETY: a fresh private read-only mapping of an open file, never
    // dereferenced (mincore only asks about its pages) and unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset,
        )
    };
    if map == libc::MAP_FAILED {
        return None;
    }
    let mut pages = vec![0u8; span.div_ceil(page)];
    // SAFETY: `map` spans `span` bytes and `pages` has a byte per page.
    let asked = unsafe { libc::mincore(map, span, pages.as_mut_ptr()) };
    // SAFETY: the mapping made above, of `span` bytes.
    unsafe { libc::munmap(map, span) };
    (asked == 0).then(|| pages.iter().all(|p| p & 1 == 1))
}

impl Host for CapabilitiesView<'_> {
    fn lend(
        &mut self,
        source: Resource<Descriptor>,
        offset: u64,
        length: u64,
    ) -> wasmtime::Result<Result<Resource<Loan>, LoanError>> {
        // The loan owns the descriptor: it leaves the component's table.
        let descriptor = self.table.delete(source)?;
        let file = match file(&descriptor, OpenMode::READ, "source") {
            Ok(f) => f,
            Err(CopyError::BadDescriptor(m)) => return Ok(Err(LoanError::BadDescriptor(m))),
            Err(CopyError::Io(m)) => return Ok(Err(LoanError::Io(m))),
            // Checking a descriptor writes nothing.
            Err(CopyError::NoSpace) => return Ok(Err(LoanError::Io("no space".into()))),
        };
        let end = match file.metadata() {
            Ok(meta) => meta.len(),
            Err(e) => return Ok(Err(LoanError::Io(e.to_string()))),
        };
        if offset.checked_add(length).is_none_or(|last| last > end) {
            return Ok(Err(LoanError::OutOfRange(format!(
                "{length} bytes at {offset} of a {end}-byte file"
            ))));
        }
        let revocations = Arc::clone(&self.ctx.revocations);
        let loan = Loan {
            file,
            start: offset,
            size: length,
            generation: revocations.now(),
            revocations,
        };
        Ok(Ok(self.table.push(loan)?))
    }

    fn revoke(&mut self) -> wasmtime::Result<()> {
        self.ctx.revocations.0.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

impl HostLoan for CapabilitiesView<'_> {
    fn size(&mut self, this: Resource<Loan>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.size)
    }

    fn read_at(
        &mut self,
        this: Resource<Loan>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, LoanError>> {
        let loan = self.table.get(&this)?;
        if loan.revoked() {
            return Ok(Err(LoanError::Revoked));
        }
        let mut buf = vec![0; len.min(MAX_READ).min(loan.size.saturating_sub(offset)) as usize];
        Ok(loan.read_at(&mut buf, offset).map(|n| {
            buf.truncate(n);
            buf
        }))
    }

    fn drop(&mut self, this: Resource<Loan>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
