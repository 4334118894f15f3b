//! [`Reader`]: a blob opened for reading.
//!
//! The component opens and checks the blob once and lends its file to the
//! host (`kist:content/lender`); every read after that is a `pread` of the
//! lent file, with no call into the component and no instance held. The
//! loan stops serving when the blob is purged or collected (the file is
//! unlinked), and is asked for again, with the component's check, when
//! the component revoked its loans or a second has passed since the last
//! check: a caller that lost the blob meanwhile (released, a reference
//! gone, a hold expired, another process's change) gets `NotFound` from
//! its next read.
//!
//! A component that lends to itself (the store composed with the portable
//! capabilities, for hosts without native ones) is read through its
//! `reader` resource instead: one call per chunk, each checked there.

use std::io::SeekFrom;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;

use crate::bindings::kist::content::lender::LoanError;
use crate::capabilities::Loan;
use crate::chunks::CHUNK;
use crate::error::{Error, Result};
use crate::read_ahead::ReadAhead;
use crate::session::Session;
use crate::store::Scoped;

/// Longest a reader serves a loan without the component checking again
/// (changes made by other processes revoke nothing here).
const RECHECK: Duration = Duration::from_secs(1);

/// An open blob, from [`Store::reader`](crate::Store::reader). Implements
/// [`std::io::Read`] and [`std::io::Seek`].
pub struct Reader {
    shared: Scoped,
    digest: String,
    source: Source,
    size: u64,
    pos: u64,
}

/// Where a reader's bytes come from.
enum Source {
    /// A loan the host reads natively; `checked` is when the component
    /// last checked the caller may read the blob.
    Lent {
        loan: Loan,
        checked: Instant,
        ahead: ReadAhead,
    },
    /// The component's `reader` resource, on an instance held for it.
    /// (`None` once the reader is dropped.)
    Guest {
        session: Option<Box<Session>>,
        handle: ResourceAny,
    },
}

impl Reader {
    pub(crate) fn open(shared: &Scoped, digest: &str) -> Result<Self> {
        let (source, size) = match lend(shared, digest) {
            Some(loan) => {
                let loan = loan?;
                let size = loan.size();
                let checked = Instant::now();
                let ahead = ReadAhead::default();
                (
                    Source::Lent {
                        loan,
                        checked,
                        ahead,
                    },
                    size,
                )
            }
            None => open_in_guest(shared, digest)?,
        };
        Ok(Self {
            shared: shared.clone(),
            digest: digest.to_owned(),
            source,
            size,
            pos: 0,
        })
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads up to `len` bytes at `offset` (at most 16 MiB); fewer only
    /// at the end of the blob.
    pub fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let len = len.min(16 << 20).min(self.size.saturating_sub(offset));
        let mut buf = vec![0; len as usize];
        let n = self.fill(&mut buf, offset)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Reads as [`read_at`](Self::read_at) does when that needs nothing of
    /// the component: the blob is lent and no check of the caller is due,
    /// so the read is one `pread`, fit for an async runtime's own thread
    /// (where a component call may not run, and handing the thread over
    /// for a short read costs more than the read). `None` when the read
    /// needs the component: call `read_at` where blocking is allowed.
    ///
    /// ```no_run
    /// # fn main() -> kist::Result<()> {
    /// let store = kist::Store::open("/var/lib/kist")?;
    /// let mut reader = store.reader("sha256:…")?;
    /// let bytes = match reader.read_at_lent(0, 32 << 10) {
    ///     Some(read) => read?,
    ///     None => reader.read_at(0, 32 << 10)?, // on a blocking thread
    /// };
    /// # Ok(()) }
    /// ```
    pub fn read_at_lent(&mut self, offset: u64, len: u64) -> Option<Result<Vec<u8>>> {
        match &self.source {
            Source::Lent { .. } if !self.check_due() => Some(self.read_at(offset, len)),
            _ => None,
        }
    }

    /// Whether what the component showed when it last checked this
    /// reader (the blob's info) may be shown again without asking it: the
    /// blob is lent and still linked, its loan not revoked (nothing a
    /// caller may see shrank in this process), and the check is less than
    /// a second old (another process's change shows within that).
    pub fn check_stands(&self) -> bool {
        match &self.source {
            Source::Lent { loan, checked, .. } => {
                !loan.revoked() && checked.elapsed() < RECHECK && loan.linked()
            }
            Source::Guest { .. } => false,
        }
    }

    /// Whether the component must check the caller again before the next
    /// read of a loan: a confined caller's right to the blob can end while
    /// it reads (an unconfined one keeps reading what is released, as an
    /// open file outlives its name; a purge ends both).
    fn check_due(&self) -> bool {
        match &self.source {
            Source::Lent { loan, checked, .. } => {
                self.shared.identity().confined && (loan.revoked() || checked.elapsed() >= RECHECK)
            }
            Source::Guest { .. } => false,
        }
    }

    /// Copies the rest of the blob to `out` in large chunks; returns the
    /// bytes copied. The bytes are not checked against the digest: see
    /// [`copy_verified_to`](Self::copy_verified_to).
    pub fn copy_to(&mut self, out: &mut (impl std::io::Write + ?Sized)) -> Result<u64> {
        self.copy(out, |_| {})
    }

    /// Copies the whole blob (from the start, wherever the reader is) to
    /// `out`, hashing it on the way; returns the bytes copied, or
    /// [`Error::Corrupt`] once they are all written if they do not hash to
    /// the blob's digest (bit rot, a truncated file). Write to a
    /// temporary place and keep it only on success.
    pub fn copy_verified_to(&mut self, out: &mut (impl std::io::Write + ?Sized)) -> Result<u64> {
        self.pos = 0;
        let mut check = Verifier::new(&self.digest);
        let copied = self.copy(out, |chunk| check.update(chunk))?;
        check.finish(copied)?;
        Ok(copied)
    }

    /// Copies the rest of the blob to `out`, showing each chunk to `seen`.
    fn copy(
        &mut self,
        out: &mut (impl std::io::Write + ?Sized),
        mut seen: impl FnMut(&[u8]),
    ) -> Result<u64> {
        let mut copied = 0;
        loop {
            let chunk = self.next_chunk()?;
            if chunk.is_empty() {
                return Ok(copied);
            }
            seen(&chunk);
            out.write_all(&chunk)?;
            copied += chunk.len() as u64;
        }
    }

    /// The next bytes at the current position, up to 1 MiB; empty at the
    /// end of the blob.
    pub fn next_chunk(&mut self) -> Result<bytes::Bytes> {
        let len = CHUNK.min(self.size.saturating_sub(self.pos) as usize);
        let chunk = crate::chunks::chunk(len, |buf| self.fill(buf, self.pos))?;
        self.pos += chunk.len() as u64;
        Ok(chunk)
    }

    /// Fills `buf` from `offset`; fewer bytes only at the end.
    fn fill(&mut self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if offset > self.size {
            return Err(Error::OutOfRange);
        }
        let check = self.check_due();
        match &mut self.source {
            Source::Lent {
                loan,
                checked,
                ahead,
            } => {
                if check {
                    *loan = lend(&self.shared, &self.digest).expect("lends, as it did")?;
                    *checked = Instant::now();
                }
                let read = loan.read_at(buf, offset).map_err(loan_error)?;
                ahead.after_read(loan, offset, read);
                Ok(read)
            }
            Source::Guest { session, handle } => {
                let handle = *handle;
                let len = buf.len() as u64;
                let session = session.as_mut().expect("a live reader's instance");
                let bytes = session.call(|api, s| {
                    api.kist_content_store()
                        .reader()
                        .call_read_at(s, handle, offset, len)
                })?;
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
        }
    }
}

/// The blob `digest`, checked and lent by the component, or `None` if
/// it does not lend to this host.
fn lend(shared: &Scoped, digest: &str) -> Option<Result<Loan>> {
    let mut session = match shared.session() {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let lent = session.call_lending(|api, s| {
        let lent = api
            .kist_content_lending()
            .call_lend(&mut *s, &digest.to_owned())?;
        // The loan leaves the instance's table: the instance goes back to
        // the pool, and the reader owns the file.
        Ok(match lent {
            Ok(loan) => Ok(s.data_mut().table.delete(loan)?),
            Err(e) => Err(e.into()),
        })
    });
    shared.recycle(session);
    lent
}

/// The blob `digest` opened by the component's `reader` resource, and its
/// size.
fn open_in_guest(shared: &Scoped, digest: &str) -> Result<(Source, u64)> {
    let mut session = shared.session()?;
    let opened = session
        .call(|api, s| {
            api.kist_content_store()
                .call_open_reader(s, &digest.to_owned())
        })
        .and_then(|handle| {
            let size = session.call(|api, s| {
                api.kist_content_store()
                    .reader()
                    .call_size(s, handle)
                    .map(Ok)
            })?;
            Ok((handle, size))
        });
    match opened {
        Ok((handle, size)) => {
            let session = Some(Box::new(session));
            Ok((Source::Guest { session, handle }, size))
        }
        Err(e) => {
            shared.recycle(session);
            Err(e)
        }
    }
}

/// What a failed read of a loan means to the caller.
fn loan_error(e: LoanError) -> Error {
    match e {
        LoanError::Gone | LoanError::Revoked => Error::NotFound,
        LoanError::OutOfRange(_) => Error::OutOfRange,
        LoanError::BadDescriptor(m) | LoanError::Io(m) => Error::Io(m),
    }
}

impl std::io::Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill(out, self.pos.min(self.size))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for Reader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        self.pos = target;
        Ok(target)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // A loan closes its file by itself.
        if let Source::Guest { session, handle } = &mut self.source
            && let Some(mut session) = session.take()
        {
            let handle = *handle;
            let _ = session.call(|_, s| handle.resource_drop(s).map(Ok));
            self.shared.recycle(*session);
        }
    }
}

/// Checks bytes against a digest as they come: feed them with
/// [`update`](Self::update) (or as a [`std::io::Write`]), then
/// [`finish`](Self::finish). For bytes read from elsewhere than a
/// [`Reader`] (which has [`copy_verified_to`](Reader::copy_verified_to)).
///
/// ```
/// let mut v = kist::Verifier::new(
///     "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
/// );
/// v.update(b"hello");
/// assert!(v.finish(5).is_ok());
/// ```
pub struct Verifier {
    digest: String,
    hash: Hash,
}

enum Hash {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Verifier {
    /// Checks against `digest` (`sha256:` or `sha512:`).
    pub fn new(digest: &str) -> Self {
        use sha2::Digest as _;
        let hash = if digest.starts_with("sha512:") {
            Hash::Sha512(sha2::Sha512::new())
        } else {
            Hash::Sha256(sha2::Sha256::new())
        };
        Self {
            digest: digest.to_owned(),
            hash,
        }
    }

    /// Checks `bytes`, all of a blob, against `digest`.
    pub(crate) fn check_whole(digest: &str, bytes: &[u8]) -> Result<()> {
        let mut v = Self::new(digest);
        v.update(bytes);
        v.finish(bytes.len() as u64)
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        match &mut self.hash {
            Hash::Sha256(h) => h.update(bytes),
            Hash::Sha512(h) => h.update(bytes),
        }
    }

    /// [`Error::Corrupt`] unless the bytes fed (`len` of them, for the
    /// message) hash to the digest.
    pub fn finish(self, len: u64) -> Result<()> {
        use sha2::Digest as _;
        let sum = match self.hash {
            Hash::Sha256(h) => h.finalize().to_vec(),
            Hash::Sha512(h) => h.finalize().to_vec(),
        };
        let hex = hex::encode(&sum);
        if self.digest.split_once(':').map(|(_, h)| h) == Some(hex.as_str()) {
            return Ok(());
        }
        Err(Error::Corrupt(format!(
            "blob {}: its {len} bytes hash to {hex}; storing the content again, or \
             `kist fsck --repair`, replaces or quarantines it",
            self.digest
        )))
    }
}

impl std::io::Write for Verifier {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
