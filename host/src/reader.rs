//! [`Reader`]: a blob opened for reading.
//!
//! Bulk reads use the component's `read-via-stream`: the guest hands the
//! host a `wasi:io` stream over the file, and the host reads it directly,
//! so blob bytes never pass through guest memory.

use std::io::SeekFrom;

use wasmtime::component::{Resource, ResourceAny};
use wasmtime_wasi::p2::{DynInputStream, StreamError};

use crate::error::{Error, Result};
use crate::session::Session;
use crate::store::Scoped;

/// Bytes asked of the stream per read.
const STREAM_CHUNK: usize = 1 << 20;

/// An open blob, from [`Store::reader`](crate::Store::reader). Implements
/// [`std::io::Read`] and [`std::io::Seek`].
pub struct Reader {
    shared: Scoped,
    digest: String,
    session: Option<Session>,
    handle: ResourceAny,
    size: u64,
    pos: u64,
    stream: Option<Resource<DynInputStream>>,
    buf: bytes::Bytes,
}

impl Reader {
    pub(crate) fn open(shared: &Scoped, digest: &str) -> Result<Self> {
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
            Ok((handle, size)) => Ok(Self {
                shared: shared.clone(),
                digest: digest.to_owned(),
                session: Some(session),
                handle,
                size,
                pos: 0,
                stream: None,
                buf: bytes::Bytes::new(),
            }),
            Err(e) => {
                shared.recycle(session);
                Err(e)
            }
        }
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads up to `len` bytes at `offset` through the component (no
    /// stream); fewer only at the end of the blob.
    pub fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let handle = self.handle;
        let session = self.session.as_mut().expect("live reader");
        session.call(|api, s| {
            api.kist_content_store()
                .reader()
                .call_read_at(s, handle, offset, len)
        })
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
        std::io::Seek::seek(self, SeekFrom::Start(0))?;
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

    /// The next bytes at the current position, up to 1 MiB, without a
    /// copy; empty at the end of the blob.
    pub fn next_chunk(&mut self) -> Result<bytes::Bytes> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.pos += chunk.len() as u64;
            return Ok(chunk);
        }
        if self.pos >= self.size {
            return Ok(bytes::Bytes::new());
        }
        let session = self.session.as_mut().expect("live reader");
        let stream = match self.stream.take() {
            Some(s) => s,
            None => {
                let (handle, pos) = (self.handle, self.pos);
                session.call(|api, s| {
                    api.kist_content_store()
                        .reader()
                        .call_read_via_stream(s, handle, pos)
                })?
            }
        };
        let read = session
            .store
            .data_mut()
            .table
            .get_mut(&stream)
            .map_err(|e| Error::Component(e.to_string()));
        let chunk =
            match read.map(|s| wasmtime_wasi::runtime::in_tokio(s.blocking_read(STREAM_CHUNK))) {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(StreamError::Closed)) => bytes::Bytes::new(),
                Ok(Err(e)) => return Err(Error::Io(format!("reading blob: {e}"))),
                Err(e) => return Err(e),
            };
        self.stream = Some(stream);
        self.pos += chunk.len() as u64;
        Ok(chunk)
    }

    fn drop_stream(&mut self) {
        if let (Some(stream), Some(session)) = (self.stream.take(), self.session.as_mut()) {
            let _ = session.store.data_mut().table.delete(stream);
        }
    }
}

impl std::io::Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            let chunk = self.next_chunk().map_err(std::io::Error::from)?;
            // Hand back what does not fit and un-count it.
            self.pos -= chunk.len() as u64;
            self.buf = chunk;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
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
        if target != self.pos || !self.buf.is_empty() {
            self.buf = bytes::Bytes::new();
            self.drop_stream();
            self.pos = target;
        }
        Ok(target)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.drop_stream();
        if let Some(mut session) = self.session.take() {
            let handle = self.handle;
            let _ = session.call(|_, s| handle.resource_drop(s).map(Ok));
            self.shared.recycle(session);
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
