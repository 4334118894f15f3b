//! [`NewBlob`]: a blob written as a stream (an archive being built, a file
//! being copied) into a temporary file, hashed as it goes, then published.

use std::collections::BTreeSet;
use std::io::Write;

use crate::artifacts::records;
use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::kist::content::locks::{self, Guard};
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};
use crate::content::labels;
use crate::content::publish::{Meta, publish};
use crate::content::store;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, fs as fs_error};
use crate::shared::fs::{self, Durability};
use crate::shared::layout;

/// Writes go to the host in chunks of this size.
const BUFFER: usize = 1 << 20;

/// A blob being written: `std::io::Write` for `tar` and `flate2`.
pub struct NewBlob {
    dir: fs::Dir,
    name: String,
    fd: Descriptor,
    hasher: Hasher,
    size: u64,
    buffer: Vec<u8>,
    /// The temporary file's lock (see [`records::temp_lock`]).
    _lock: Guard,
}

impl NewBlob {
    /// A new temporary file in `artifacts/.tmp`, with a name no other
    /// writer has (exclusive create).
    pub fn create() -> Result<Self> {
        layout::ensure()?;
        records::mkdirs(records::TMP)?;
        let dir = fs::Dir::open(records::TMP)?;
        sweep(&dir)?;
        let root = fs::root()?;
        let t = fs::now();
        for attempt in 0u32.. {
            let name = format!("{}-{}-{attempt}", t.seconds, t.nanoseconds);
            let path = format!("{}/{name}", records::TMP);
            // Held while the file lives, so `fsck` can tell a live build
            // from a crashed one; taken before the file exists.
            let Ok(lock) = locks::try_lock(&records::temp_lock(&name)) else {
                continue;
            };
            match root.open_at(
                PathFlags::empty(),
                &path,
                OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                DescriptorFlags::WRITE,
            ) {
                Ok(fd) => {
                    return Ok(Self {
                        dir,
                        name,
                        fd,
                        hasher: Hasher::new(Algorithm::Sha256),
                        size: 0,
                        buffer: Vec::with_capacity(BUFFER),
                        _lock: lock,
                    });
                }
                Err(ErrorCode::Exist) => continue,
                Err(e) => return Err(fs_error("create", &path, e)),
            }
        }
        unreachable!("u32 attempts run out only after 4 billion collisions")
    }

    fn path(&self) -> String {
        format!("{}/{}", records::TMP, self.name)
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size + self.buffer.len() as u64
    }

    fn drain(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        fs::write_all(&self.fd, &self.path(), &self.buffer, self.size)?;
        self.hasher.update(&self.buffer);
        self.size += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Publishes the bytes as a blob that `holder` holds from the moment
    /// it is visible (content stored already gets the holder too), and
    /// returns its digest and size.
    pub fn publish(mut self, holder: &str) -> Result<(Digest, u64)> {
        self.drain()?;
        self.fd
            .sync_data()
            .map_err(|e| fs_error("sync", &self.path(), e))?;
        let digest = Digest::of(Algorithm::Sha256, &self.hasher);
        let lock = store::lock_blob(&digest)?;
        let holders = BTreeSet::from([holder.to_owned()]);
        let meta = Meta {
            labels: &labels::Labels::new(),
            holders: &holders,
        };
        match publish(
            &self.dir,
            &self.name,
            &digest,
            self.size,
            &meta,
            &lock,
            Durability::Synced,
        ) {
            Ok(true) => layout::blobs(digest.algorithm)?.sync()?,
            // Stored already: the temporary file goes with `self`.
            Ok(false) | Err(Error::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
        Ok((digest, self.size))
    }
}

/// Removes the temporary files of builds that died (killed, or timed out
/// in a trapped instance) before they could remove their own: those whose
/// lock nobody holds.
fn sweep(dir: &fs::Dir) -> Result<()> {
    for (name, kind) in fs::list_dir(dir.path())?.unwrap_or_default() {
        if kind == fs::FileType::RegularFile
            && let Ok(_unused) = locks::try_lock(&records::temp_lock(&name))
        {
            dir.remove(&name)?;
        }
    }
    Ok(())
}

impl Drop for NewBlob {
    /// Removes the temporary file unless it was published (then it is
    /// gone already).
    fn drop(&mut self) {
        let _ = self.dir.remove(&self.name);
    }
}

impl Write for NewBlob {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + buf.len() > BUFFER {
            self.drain().map_err(to_io)?;
        }
        if buf.len() >= BUFFER {
            self.buffer.extend_from_slice(buf);
            self.drain().map_err(to_io)?;
        } else {
            self.buffer.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Carries a kist error through `std::io` (tar and flate2 speak it).
pub fn to_io(e: Error) -> std::io::Error {
    std::io::Error::other(IoCarrier(e))
}

/// Gets a kist error back from `std::io`, or describes a foreign one.
pub fn from_io(e: std::io::Error, what: &str) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<IoCarrier>())
    {
        Some(IoCarrier(kist)) => kist.clone(),
        None => Error::Io(format!("{what}: {e}")),
    }
}

/// A kist error inside a `std::io::Error`.
#[derive(Debug)]
struct IoCarrier(Error);

impl std::fmt::Display for IoCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for IoCarrier {}

/// `std::io::Read` over a descriptor (a blob, a source file), failing if it
/// ends before `size` bytes.
pub struct DescriptorReader<'a> {
    pub fd: &'a Descriptor,
    pub path: String,
    pub at: u64,
    pub size: u64,
}

impl std::io::Read for DescriptorReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (buf.len() as u64).min(self.size - self.at).min(fs::CHUNK);
        if want == 0 {
            return Ok(0);
        }
        let (bytes, _) = self
            .fd
            .read(want, self.at)
            .map_err(|e| to_io(fs_error("read", &self.path, e)))?;
        if bytes.is_empty() {
            return Err(to_io(Error::Io(format!(
                "read {}: file shrank to {} bytes while being read (expected {})",
                self.path, self.at, self.size
            ))));
        }
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.at += bytes.len() as u64;
        Ok(bytes.len())
    }
}
