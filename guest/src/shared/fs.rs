//! Raw `wasi:filesystem` calls on paths relative to the store root.
//!
//! kist uses descriptor calls rather than `std::fs`: `descriptor.write`
//! passes a whole buffer in one call (std goes through a 64 KiB output
//! stream), and hosts such as jco's preview2 shim reject the open flags
//! wasi-libc uses for writes.

use std::sync::OnceLock;

use crate::bindings::wasi::clocks::wall_clock::{self, Datetime};
use crate::bindings::wasi::filesystem::preopens;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry,
    DirectoryEntryStream, ErrorCode, OpenFlags, PathFlags,
};
use crate::shared::error::{Error, Result, fs};

pub use crate::bindings::wasi::filesystem::types::DescriptorType as FileType;

/// Largest single read or write the component issues.
pub const CHUNK: u64 = 1 << 20;

/// The store root: the first directory the host preopened.
pub fn root() -> Result<&'static Descriptor> {
    static ROOT: OnceLock<Option<Descriptor>> = OnceLock::new();
    ROOT.get_or_init(|| {
        preopens::get_directories()
            .into_iter()
            .next()
            .map(|(d, _)| d)
    })
    .as_ref()
    .ok_or_else(|| Error::Io("the host preopened no store directory".into()))
}

/// The current wall-clock time.
pub fn now() -> Datetime {
    wall_clock::now()
}

/// Opens `path` (never following a final symlink) with `open` and `flags`.
pub fn open(path: &str, open: OpenFlags, flags: DescriptorFlags) -> Result<Descriptor> {
    root()?
        .open_at(PathFlags::empty(), path, open, flags)
        .map_err(|e| fs("open", path, e))
}

/// Opens `path` read-only; `None` if it does not exist.
pub fn open_existing(path: &str, flags: DescriptorFlags) -> Result<Option<Descriptor>> {
    match root()?.open_at(PathFlags::empty(), path, OpenFlags::empty(), flags) {
        Ok(d) => Ok(Some(d)),
        Err(ErrorCode::NoEntry) => Ok(None),
        Err(e) => Err(fs("open", path, e)),
    }
}

/// Metadata of `path` itself (a symlink is reported as a symlink);
/// `None` if it does not exist.
pub fn stat(path: &str) -> Result<Option<DescriptorStat>> {
    stat_in(root()?, path, ".")
}

/// Metadata of `name` in the open directory `dir` (`dir_path` names it in
/// errors); `None` if it does not exist. Symlinks are not followed.
pub fn stat_in(dir: &Descriptor, name: &str, dir_path: &str) -> Result<Option<DescriptorStat>> {
    match dir.stat_at(PathFlags::empty(), name) {
        Ok(s) => Ok(Some(s)),
        Err(ErrorCode::NoEntry) => Ok(None),
        Err(e) => Err(fs("stat", &format!("{dir_path}/{name}"), e)),
    }
}

/// Metadata of an open file.
pub fn fstat(fd: &Descriptor, path: &str) -> Result<DescriptorStat> {
    fd.stat().map_err(|e| fs("stat", path, e))
}

/// Reads up to `len` bytes at `offset`, fewer only at end of file.
pub fn read_at(fd: &Descriptor, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while (out.len() as u64) < len {
        let want = (len - out.len() as u64).min(CHUNK);
        let (bytes, eof) = fd
            .read(want, offset + out.len() as u64)
            .map_err(|e| fs("read", path, e))?;
        let got = bytes.len();
        if out.is_empty() {
            out = bytes;
        } else {
            out.extend_from_slice(&bytes);
        }
        if eof || got == 0 {
            break;
        }
    }
    Ok(out)
}

/// Calls `each` on consecutive chunks of `fd` from `from` to `to`.
pub fn for_each_chunk(
    fd: &Descriptor,
    path: &str,
    from: u64,
    to: u64,
    mut each: impl FnMut(&[u8]),
) -> Result<()> {
    let mut at = from;
    while at < to {
        let (bytes, _) = fd
            .read(CHUNK.min(to - at), at)
            .map_err(|e| fs("read", path, e))?;
        if bytes.is_empty() {
            return Err(Error::Io(format!(
                "read {path}: file ended at {at}, expected {to} bytes"
            )));
        }
        at += bytes.len() as u64;
        each(&bytes);
    }
    Ok(())
}

/// Reads a whole small file; `None` if it does not exist.
pub fn read_file(path: &str) -> Result<Option<Vec<u8>>> {
    let Some(fd) = open_existing(path, DescriptorFlags::READ)? else {
        return Ok(None);
    };
    let size = fstat(&fd, path)?.size;
    read_at(&fd, path, 0, size).map(Some)
}

/// Writes all of `buf` at `offset`.
pub fn write_all(fd: &Descriptor, path: &str, buf: &[u8], offset: u64) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = fd
            .write(&buf[done..], offset + done as u64)
            .map_err(|e| fs("write", path, e))?;
        if n == 0 {
            return Err(Error::Io(format!("write {path}: no progress")));
        }
        done += n as usize;
    }
    Ok(())
}

/// Creates a directory; an existing one is fine.
pub fn mkdir(path: &str) -> Result<()> {
    match root()?.create_directory_at(path) {
        Ok(()) | Err(ErrorCode::Exist) => Ok(()),
        Err(e) => Err(fs("mkdir", path, e)),
    }
}

/// Renames `from` to `to`, replacing `to` atomically.
pub fn rename(from: &str, to: &str) -> Result<()> {
    let root = root()?;
    root.rename_at(from, root, to)
        .map_err(|e| fs("rename", from, e))
}

/// Removes a file; returns whether it existed.
pub fn remove_file(path: &str) -> Result<bool> {
    match root()?.unlink_file_at(path) {
        Ok(()) => Ok(true),
        Err(ErrorCode::NoEntry) => Ok(false),
        Err(e) => Err(fs("remove", path, e)),
    }
}

/// Removes a directory and everything in it; returns whether it existed.
/// Symlinks inside are removed, never followed.
pub fn remove_tree(path: &str) -> Result<bool> {
    let Some(names) = list_dir(path)? else {
        return Ok(false);
    };
    for (name, kind) in names {
        let child = format!("{path}/{name}");
        if kind == DescriptorType::Directory {
            remove_tree(&child)?;
        } else {
            remove_file(&child)?;
        }
    }
    match root()?.remove_directory_at(path) {
        Ok(()) | Err(ErrorCode::NoEntry) => Ok(true),
        Err(e) => Err(fs("rmdir", path, e)),
    }
}

/// The entries of a directory; `None` if it does not exist.
pub fn list_dir(path: &str) -> Result<Option<Vec<(String, DescriptorType)>>> {
    let Some(dir) = open_dir(path)? else {
        return Ok(None);
    };
    let entries = dir.read_directory().map_err(|e| fs("list", path, e))?;
    let mut out = Vec::new();
    while let Some(entry) = next_entry(&entries, path)? {
        out.push((entry.name, entry.type_));
    }
    Ok(Some(out))
}

/// The next entry of a directory listing. Entries removed or renamed while
/// the listing is read (hosts stat each one) are skipped, not errors.
pub fn next_entry(entries: &DirectoryEntryStream, path: &str) -> Result<Option<DirectoryEntry>> {
    loop {
        match entries.read_directory_entry() {
            Err(ErrorCode::NoEntry) => continue,
            other => return other.map_err(|e| fs("list", path, e)),
        }
    }
}

/// Opens a directory for listing or syncing; `None` if it does not exist.
pub fn open_dir(path: &str) -> Result<Option<Descriptor>> {
    match root()?.open_at(
        PathFlags::empty(),
        path,
        OpenFlags::DIRECTORY,
        DescriptorFlags::READ,
    ) {
        Ok(d) => Ok(Some(d)),
        Err(ErrorCode::NoEntry) => Ok(None),
        Err(e) => Err(fs("open", path, e)),
    }
}

/// Flushes a directory's entries (a rename into it) to disk.
pub fn sync_dir(path: &str) -> Result<()> {
    match open_dir(path)? {
        Some(dir) => sync(&dir, path),
        None => Ok(()),
    }
}

/// Syncs the open directory `dir` (`path` names it in errors).
fn sync(dir: &Descriptor, path: &str) -> Result<()> {
    match dir.sync() {
        // Some filesystems cannot sync directories; the rename itself is
        // still atomic there.
        Ok(()) | Err(ErrorCode::Unsupported | ErrorCode::Invalid | ErrorCode::BadDescriptor) => {
            Ok(())
        }
        Err(e) => Err(fs("sync", path, e)),
    }
}

/// A store directory held open: names in it resolve in one step instead
/// of walking the path from the root on every call (the host checks each
/// component of a path), which is most of the cost of a small `put`.
pub struct Dir {
    fd: Descriptor,
    path: String,
}

impl Dir {
    /// Opens the directory `path`, which must exist.
    pub fn open(path: &str) -> Result<Self> {
        let fd = open_dir(path)?
            .ok_or_else(|| Error::Io(format!("open {path}: the directory is missing")))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// The directory's path from the store root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    fn child(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }

    /// Metadata of `name` (symlinks not followed); `None` if it does not
    /// exist.
    pub fn stat(&self, name: &str) -> Result<Option<DescriptorStat>> {
        stat_in(&self.fd, name, &self.path)
    }

    /// Creates (or truncates) the file `name` for writing.
    pub fn create(&self, name: &str) -> Result<Descriptor> {
        self.fd
            .open_at(
                PathFlags::empty(),
                name,
                OpenFlags::CREATE | OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .map_err(|e| fs("open", &self.child(name), e))
    }

    /// Renames `from` in `source` to `to` in this directory, replacing `to`
    /// atomically.
    pub fn rename_from(&self, source: &Dir, from: &str, to: &str) -> Result<()> {
        source
            .fd
            .rename_at(from, &self.fd, to)
            .map_err(|e| fs("rename", &source.child(from), e))
    }

    /// Removes the file `name`; returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool> {
        match self.fd.unlink_file_at(name) {
            Ok(()) => Ok(true),
            Err(ErrorCode::NoEntry) => Ok(false),
            Err(e) => Err(fs("remove", &self.child(name), e)),
        }
    }

    /// Flushes the directory's entries (renames into it) to disk.
    pub fn sync(&self) -> Result<()> {
        sync(&self.fd, &self.path)
    }
}

/// Whether a write reaches the disk before the call returns: `synced`
/// for committed state (blobs, labels, layout files), `cached` for what is
/// checked when read back (an uncommitted ingest's bookkeeping) or what
/// the caller chose to leave to the page cache.
pub use crate::bindings::exports::kist::content::ingester::Durability;

/// Replaces `dir/name` with `bytes` atomically: write a temporary sibling,
/// rename it over `name`, and with [`Durability::Synced`] sync the file
/// before and the directory after the rename.
///
/// The temporary name is fixed, so the caller must hold a lock that
/// covers `dir/name`.
pub fn write_atomic(dir: &str, name: &str, bytes: &[u8], durability: Durability) -> Result<()> {
    let tmp = format!("{dir}/.{name}.tmp");
    let fd = open(
        &tmp,
        OpenFlags::CREATE | OpenFlags::TRUNCATE,
        DescriptorFlags::WRITE,
    )?;
    write_all(&fd, &tmp, bytes, 0)?;
    if durability == Durability::Synced {
        fd.sync_data().map_err(|e| fs("sync", &tmp, e))?;
    }
    drop(fd);
    rename(&tmp, &format!("{dir}/{name}"))?;
    if durability == Durability::Synced {
        sync_dir(dir)?;
    }
    Ok(())
}
