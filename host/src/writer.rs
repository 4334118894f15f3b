//! [`Writer`]: the exclusive writer of one ingest.

use std::fs::File as StdFile;

use wasmtime::component::{Resource, ResourceAny};
use wasmtime_wasi::filesystem::{Descriptor, File};
use wasmtime_wasi::{FsPerms, OpenMode};

use crate::error::{Error, Result};
use crate::session::Session;
use crate::store::Scoped;
use crate::{IngestStatus, WriterOptions};

/// Largest chunk passed to the component in one call; bigger writes are
/// split so the guest's memory use stays bounded.
const MAX_CHUNK: usize = 4 << 20;
/// Bytes one `write-from` call copies: each call gets a deadline for its
/// bytes, and a store under a quota is charged per call.
const COPY_SLICE: u64 = 256 << 20;

/// The exclusive writer of one ingest, from [`Store::writer`](crate::Store::writer).
///
/// Writes append at the current offset. Dropping the writer without
/// [`commit`](Writer::commit) keeps the ingest: opening the same ref again
/// resumes at [`status`](Writer::status)`().offset`. Implements
/// [`std::io::Write`].
///
/// ```no_run
/// # fn main() -> Result<(), kist::Error> {
/// let store = kist::Store::open("/tmp/my-store")?;
/// let mut w = store.writer("my-upload", Some(11), None)?;
/// w.write_all(b"hello ")?;
/// w.write_all(b"world")?;
/// let digest = w.commit(None, None, &[("app", "demo")])?;
/// # Ok(()) }
/// ```
pub struct Writer {
    shared: Scoped,
    session: Option<Session>,
    handle: Option<ResourceAny>,
}

impl Writer {
    pub(crate) fn open(shared: &Scoped, reference: &str, options: &WriterOptions) -> Result<Self> {
        Self::open_with(shared, |session| {
            session.call(|api, s| {
                api.kist_content_ingester()
                    .call_open_writer(s, reference, options)
            })
        })
    }

    /// A writer of the ingest `open` opens on a pooled instance (an
    /// upload, for the registry).
    pub(crate) fn open_with(
        shared: &Scoped,
        open: impl FnOnce(&mut Session) -> Result<ResourceAny>,
    ) -> Result<Self> {
        let mut session = shared.session()?;
        match open(&mut session) {
            Ok(handle) => Ok(Self {
                shared: shared.clone(),
                session: Some(session),
                handle: Some(handle),
            }),
            Err(e) => {
                shared.recycle(session);
                Err(e)
            }
        }
    }

    fn parts(&mut self) -> (&mut Session, ResourceAny) {
        (
            self.session.as_mut().expect("live writer"),
            self.handle.expect("live writer"),
        )
    }

    /// Appends all of `data`. On failure (e.g. [`Error::NoSpace`]) the
    /// offset is where it was before the failed chunk.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let (session, handle) = self.parts();
        for chunk in data.chunks(MAX_CHUNK) {
            session.call(|api, s| {
                api.kist_content_ingester()
                    .writer()
                    .call_write(s, handle, chunk)
            })?;
        }
        Ok(())
    }

    /// Appends up to `length` bytes of `file` from `offset`, as
    /// [`write_all`](Self::write_all) would with them; returns how many
    /// were appended (fewer only when the file ends first). On failure the
    /// offset is where it was before the failed part.
    ///
    /// The fastest way to store a local file: the bytes never pass through
    /// the component. It hands kist's host its ingest and the file (lent
    /// read-only for the call), and the host copies between them with
    /// buffers of its own (direct I/O where the store's filesystem allows
    /// it, so the blob is then not in the page cache) while it hashes the
    /// same buffers on another core. The component still decides the
    /// offsets, and the commit still checks the size and digest.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = kist::Store::open("/tmp/my-store")?;
    /// let file = std::fs::File::open("/tmp/big.tar")?;
    /// let size = file.metadata()?.len();
    /// let mut w = store.writer("big.tar", Some(size), None)?;
    /// // Resumes where an earlier, interrupted ingest of the file stopped.
    /// let offset = w.status()?.offset;
    /// w.write_from_file(&file, offset, size - offset)?;
    /// let digest = w.commit(None, None, &[])?;
    /// # Ok(()) }
    /// ```
    pub fn write_from_file(&mut self, file: &StdFile, offset: u64, length: u64) -> Result<u64> {
        let (session, handle) = self.parts();
        let lent = File::new(file.try_clone()?, FsPerms::ReadOnly, OpenMode::READ, true);
        let source = session
            .store
            .data_mut()
            .table
            .push(Descriptor::File(lent))
            .map_err(|e| Error::Component(e.to_string()))?;
        let mut copied = 0;
        let result = loop {
            let slice = COPY_SLICE.min(length - copied);
            let call = session.call(|api, s| {
                api.kist_content_ingester().writer().call_write_from(
                    s,
                    handle,
                    Resource::new_borrow(source.rep()),
                    offset + copied,
                    slice,
                )
            });
            match call {
                Ok(n) if n < slice || copied + n == length => break Ok(copied + n),
                Ok(n) => copied += n,
                Err(e) => break Err(e),
            }
        };
        let _ = session.store.data_mut().table.delete(source);
        result
    }

    /// The ingest's state: offset, declared size and digest, times.
    pub fn status(&mut self) -> Result<IngestStatus> {
        let (session, handle) = self.parts();
        session.call(|api, s| api.kist_content_ingester().writer().call_status(s, handle))
    }

    /// The digest of the data written so far.
    pub fn digest(&mut self) -> Result<String> {
        let (session, handle) = self.parts();
        session.call(|api, s| {
            api.kist_content_ingester()
                .writer()
                .call_digest(s, handle)
                .map(Ok)
        })
    }

    /// Discards the data back to `size` (at most the offset): `0` starts
    /// over; more undoes a write that turned out wrong.
    pub fn truncate(&mut self, size: u64) -> Result<()> {
        let (session, handle) = self.parts();
        session.call(|api, s| {
            api.kist_content_ingester()
                .writer()
                .call_truncate(s, handle, size)
        })
    }

    /// Verifies the data against `size`, `expected` and what was declared
    /// at open, then publishes it atomically with `labels`. Returns the
    /// digest. On [`Error::FailedPrecondition`] the ingest is kept; on
    /// [`Error::AlreadyExists`] the content was already stored and the
    /// ingest is gone.
    pub fn commit(
        mut self,
        size: Option<u64>,
        expected: Option<&str>,
        labels: &[(&str, &str)],
    ) -> Result<String> {
        let labels = crate::store::labels(labels);
        let handle = self.handle.take().expect("live writer");
        let session = self.session.as_mut().expect("live writer");
        session.call(|api, s| {
            api.kist_content_ingester().writer().call_commit(
                s,
                handle,
                size,
                expected.map(str::to_owned).as_ref(),
                &labels,
            )
        })
    }
}

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(MAX_CHUNK);
        self.write_all(&buf[..n]).map_err(std::io::Error::from)?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let Some(mut session) = self.session.take() else {
            return;
        };
        if let Some(handle) = self.handle.take() {
            // Runs the guest's destructor, which saves the hash state for a
            // resume and releases the ref's lock.
            let _ = session.call(|_, s| handle.resource_drop(s).map(Ok));
        }
        self.shared.recycle(session);
    }
}
