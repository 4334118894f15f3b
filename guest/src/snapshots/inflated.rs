//! A layer's uncompressed tar as a stream: [`Inflated`] reads a stored
//! layer blob through the host's `inflate` capability; [`TarSource`] is
//! what `apply` unpacks from, so a tar regenerated from a layer's files
//! (`deltas::rebuild`) unpacks the same way.

use std::io::Read;
use std::rc::Rc;

use crate::bindings::kist::content::inflate::{self, InflateError, Inflater};
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags};
use crate::content::new_blob::{from_io, to_io};
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, invalid};
use crate::shared::fs;

/// Decompressed bytes are taken in chunks of this size.
pub const CHUNK: usize = 1 << 20;

/// An uncompressed tar stream that knows its digest once read to the end.
pub trait TarSource: Read {
    /// What the stream is, for messages (a blob's digest).
    fn name(&self) -> String;
    /// Reads to the end (tar stops at its end marker; the diff id covers
    /// the padding after it too) and returns the digest of every byte.
    fn finish(self) -> Result<Digest>;
    /// A way to have files' contents written by the source itself, beside
    /// the stream (see [`Placer`]); none by default.
    fn placer(&self) -> Option<Rc<dyn Placer>> {
        None
    }
}

/// A tar source's side door for file contents it can write without
/// passing them through the component: a regenerated tar whose files are
/// already stored has the host copy them (`copier`) instead of reading
/// them into the stream only for the unpacker to write them out again.
pub trait Placer {
    /// Called when the header of a regular file of `size` bytes was just
    /// read from the stream: writes the file's content to `target` (from
    /// offset 0) and returns true, the stream then giving zeros for it,
    /// which the caller skips; or returns false, having written nothing,
    /// and the caller reads the content from the stream as usual. Either
    /// way the source's digest covers the real content.
    fn place(&self, target: &Descriptor, size: u64) -> Result<bool>;
}

/// The layer's uncompressed tar, inflated and hashed (the diff id) by the
/// host's `inflate` capability on another core, as `tar xzf` has `gzip`.
pub struct Inflated {
    blob: Digest,
    inflater: Inflater,
    pending: Vec<u8>,
    at: usize,
}

impl Inflated {
    /// The stored layer `blob`, compressed as `media_type` says (empty:
    /// detected from its first bytes).
    pub fn open(blob: &Digest, media_type: &str) -> Result<Self> {
        let path = blob.blob_path();
        let head = || {
            let fd = fs::open_existing(&path, DescriptorFlags::READ)?.ok_or(Error::NotFound)?;
            fs::read_at(&fd, &path, 0, 4)
        };
        Ok(Self::with(blob, compression(media_type, head)?))
    }

    /// The stored blob `blob`, gzipped.
    pub fn gzipped(blob: &Digest) -> Self {
        Self::with(blob, inflate::Compression::Gzip)
    }

    fn with(blob: &Digest, compression: inflate::Compression) -> Self {
        Self {
            blob: blob.clone(),
            inflater: Inflater::new(&blob.blob_path(), compression),
            pending: Vec::new(),
            at: 0,
        }
    }

    fn error(&self, e: InflateError) -> Error {
        match e {
            InflateError::NotFound => Error::NotFound,
            InflateError::Malformed(m) | InflateError::InvalidPath(m) => {
                invalid(format!("{} is not a readable layer: {m}", self.blob))
            }
            InflateError::Io(m) => Error::Io(format!("reading {}: {m}", self.blob)),
        }
    }
}

impl TarSource for Inflated {
    fn name(&self) -> String {
        self.blob.to_string()
    }

    fn finish(mut self) -> Result<Digest> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| from_io(e, "layer"))?;
        let digest = self
            .inflater
            .digest()
            .ok_or_else(|| Error::Io(format!("{}: no digest after the end", self.blob)))?;
        Digest::parse(&digest)
    }
}

impl Read for Inflated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            self.pending = self
                .inflater
                .read(CHUNK as u32)
                .map_err(|e| to_io(self.error(e)))?;
            self.at = 0;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A tar error as kist's: what the stream `name` carried is not a layer.
pub fn layer_error(e: std::io::Error, name: &str) -> Error {
    match from_io(e, name) {
        Error::Io(m) => invalid(format!("{name} is not a readable layer: {m}")),
        other => other,
    }
}

/// Compression of a layer, from its media type or, when there is none,
/// its first bytes (`head` reads them).
fn compression(
    media_type: &str,
    head: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<inflate::Compression> {
    use inflate::Compression::{Gzip, None, Zstd};
    let ends = |s: &[&str]| s.iter().any(|e| media_type.ends_with(e));
    Ok(if media_type.is_empty() {
        match head()?.as_slice() {
            [0x1f, 0x8b, ..] => Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Zstd,
            _ => None,
        }
    } else if ends(&["+gzip", ".gzip"]) {
        Gzip
    } else if ends(&["+zstd", ".zstd"]) {
        Zstd
    } else if ends(&["tar"]) {
        None
    } else {
        return Err(invalid(format!(
            "media type {media_type:?} is not a tar layer"
        )));
    })
}
