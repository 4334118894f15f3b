//! `kist:content/copier`: bytes moved from one file the guest holds open to
//! another by the host, hashed on the way, never lifted into a `list<u8>`.
//!
//! The copy reads the source into a few buffers allocated once per call
//! and reused, writes each to the target and hands it to a hashing thread,
//! so reading and writing run on one core while sha256 runs on the other.
//! The target is written with `O_DIRECT` where its filesystem takes it: the
//! bytes go from the buffer to the device, not through the page cache,
//! which on this kind of machine is what makes writing reach `dd
//! oflag=direct` speed (buffered writes spend most of their time copying
//! into the cache and being throttled while it drains). Filesystems that
//! refuse direct I/O (tmpfs, some overlays) get buffered writes, and so
//! does every copy when the embedder turns direct I/O off
//! (`CapabilitiesCtx::direct_io`): then what was written stays cached for
//! a read right after.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::{FsPerms, OpenMode};

use super::CapabilitiesView;
use super::hasher::{Hash, HashState};
use super::slots::Counter;
use crate::bindings::kist::content::copier::{CopyError, Host};

/// Bytes read, written and hashed per step.
const CHUNK: usize = 4 << 20;
/// Buffers in flight: one being filled and written, one being hashed, one
/// waiting, so neither side stalls on the other.
const BUFFERS: usize = 3;
/// Alignment direct I/O needs of offsets, lengths and buffer addresses
/// (the page size; every block size Linux supports divides it).
const ALIGN: usize = 4096;
/// Copies shorter than this hash inline and write through the page cache:
/// a thread and a second descriptor cost more than they save.
const PIPELINE_FROM: u64 = 1 << 20;

impl Host for CapabilitiesView<'_> {
    fn copy_hashed(
        &mut self,
        source: Resource<Descriptor>,
        source_offset: u64,
        target: Resource<Descriptor>,
        target_offset: u64,
        length: u64,
        hasher: Resource<HashState>,
    ) -> wasmtime::Result<Result<u64, CopyError>> {
        let source = file(self.table.get(&source)?, OpenMode::READ, "source");
        let target = file(self.table.get(&target)?, OpenMode::WRITE, "target");
        let (source, target) = match (source, target) {
            (Ok(source), Ok(target)) => (source, target),
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        };
        if source_offset.checked_add(length).is_none()
            || target_offset.checked_add(length).is_none()
        {
            return Ok(Err(CopyError::Io(format!(
                "offsets {source_offset} and {target_offset} plus {length} bytes overflow"
            ))));
        }
        let mut from = FileSource {
            file: &source,
            from: source_offset,
        };
        self.transfer_hashed(&mut from, &target, target_offset, length, &hasher, |c| c)
    }

    fn write_hashed(
        &mut self,
        target: Resource<Descriptor>,
        target_offset: u64,
        data: Vec<u8>,
        hasher: Resource<HashState>,
    ) -> wasmtime::Result<Result<(), CopyError>> {
        match file(self.table.get(&target)?, OpenMode::WRITE, "target") {
            Ok(target) => self.write_then_hash(&target, target_offset, data, &hasher),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl CapabilitiesView<'_> {
    /// Copies `length` bytes of `source` to `target` at `to` (see
    /// [`Transfer::run`]); `checked` judges the outcome, and the guest's
    /// `hasher` takes the bytes only if it is a success.
    pub(super) fn transfer_hashed<E>(
        &mut self,
        source: &mut dyn Source,
        target: &File,
        to: u64,
        length: u64,
        hasher: &Resource<HashState>,
        checked: impl FnOnce(Result<u64, CopyError>) -> Result<u64, E>,
    ) -> wasmtime::Result<Result<u64, E>> {
        let threads = Arc::clone(&self.ctx.hash_threads);
        let state = self.table.get_mut(hasher)?;
        let before = state.take();
        let mut hash = before.clone();
        let transfer = Transfer {
            target,
            to,
            length,
            buffers: &self.ctx.buffers,
            direct: self.ctx.direct_io,
        };
        let copied = checked(transfer.run(source, &mut hash, &threads));
        // On failure the hash must still describe exactly what the caller
        // believes is written: nothing of this call.
        state.put(if copied.is_ok() { hash } else { before });
        Ok(copied)
    }

    /// `write-hashed`, with the target already checked.
    fn write_then_hash(
        &mut self,
        target: &File,
        at: u64,
        data: Vec<u8>,
        hasher: &Resource<HashState>,
    ) -> wasmtime::Result<Result<(), CopyError>> {
        if at.checked_add(data.len() as u64).is_none() {
            return Ok(Err(CopyError::Io(format!(
                "offset {at} plus {} bytes overflows",
                data.len()
            ))));
        }
        let mut out = Target::new(
            target,
            self.ctx.direct_io && data.len() as u64 >= PIPELINE_FROM,
        );
        // Up to the next aligned offset through the page cache; the rest
        // from an aligned buffer, so it can go direct.
        let head = match (at % ALIGN as u64) as usize {
            0 => 0,
            off => (ALIGN - off).min(data.len()),
        };
        let written = out.buffered_write(&data[..head], at).and_then(|()| {
            if out.direct.is_none() {
                return out.buffered_write(&data[head..], at + head as u64);
            }
            let mut buffer = self.ctx.buffers.take();
            let mut pos = at + head as u64;
            let result = data[head..].chunks(CHUNK).try_for_each(|piece| {
                let aligned = &mut buffer.get()[..piece.len()];
                aligned.copy_from_slice(piece);
                out.write(aligned, pos)?;
                pos += piece.len() as u64;
                Ok(())
            });
            self.ctx.buffers.give(buffer);
            result
        });
        if let Err(e) = written {
            return Ok(Err(e));
        }
        // The bytes move to the hashing thread (no copy) while the guest
        // prepares its next write.
        let threads = Arc::clone(&self.ctx.hash_threads);
        self.table.get_mut(hasher)?.update(data, &threads);
        Ok(Ok(()))
    }
}

/// The open file behind a guest's descriptor, if it is a regular file
/// opened (and permitted) for `mode`.
pub(super) fn file(
    descriptor: &Descriptor,
    mode: OpenMode,
    role: &str,
) -> Result<Arc<File>, CopyError> {
    let bad = |why: &str| Err(CopyError::BadDescriptor(format!("{role}: {why}")));
    let Descriptor::File(f) = descriptor else {
        return bad("a directory");
    };
    if !f.open_mode.contains(mode) || (mode == OpenMode::WRITE && f.perms == FsPerms::ReadOnly) {
        return bad(if mode == OpenMode::READ {
            "not open for reading"
        } else {
            "not open for writing"
        });
    }
    match f.file.metadata() {
        Ok(meta) if meta.is_file() => Ok(Arc::clone(&f.file)),
        Ok(_) => bad("not a regular file"),
        Err(e) => Err(CopyError::Io(format!("{role}: {e}"))),
    }
}

/// Where a transfer's bytes come from.
pub(super) trait Source {
    /// Fills `buffer` with the bytes `done` bytes into the transfer: all
    /// of it unless the source ends first; returns how many.
    fn fill(&mut self, buffer: &mut [u8], done: u64) -> Result<usize, CopyError>;
}

/// A file the guest opened, from the offset `from`.
struct FileSource<'a> {
    file: &'a File,
    from: u64,
}

impl Source for FileSource<'_> {
    fn fill(&mut self, buffer: &mut [u8], done: u64) -> Result<usize, CopyError> {
        read_full(self.file, buffer, self.from + done)
    }
}

/// One call's copy: `length` bytes from a source to `target` at `to`.
struct Transfer<'a> {
    target: &'a File,
    to: u64,
    length: u64,
    buffers: &'a Buffers,
    /// Whether the target may be written with direct I/O.
    direct: bool,
}

/// A buffer whose usable part starts at an `ALIGN`ed address (a plain
/// `Vec` over-allocated by `ALIGN`: no unsafe allocation code).
struct Buffer {
    bytes: Vec<u8>,
    start: usize,
}

/// Buffers kept between calls: a fresh 4 MiB allocation per call would
/// fault its pages in again every time (glibc returns large frees to the
/// kernel), which is the cost this capability exists to avoid.
#[derive(Default)]
pub(crate) struct Buffers(Mutex<Vec<Buffer>>);

impl Buffers {
    fn take(&self) -> Buffer {
        let spare = self.0.lock().expect("buffer pool").pop();
        spare.unwrap_or_else(Buffer::new)
    }

    /// Keeps `buffer` for a later call, up to what one copy uses.
    fn give(&self, buffer: Buffer) {
        let mut pool = self.0.lock().expect("buffer pool");
        if pool.len() < BUFFERS {
            pool.push(buffer);
        }
    }
}

impl Buffer {
    fn new() -> Self {
        let bytes = vec![0; CHUNK + ALIGN];
        let start = bytes.as_ptr().align_offset(ALIGN);
        Self { bytes, start }
    }

    fn get(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + CHUNK]
    }
}

impl Transfer<'_> {
    /// Copies from `source`, written here while `hash` is fed on another
    /// core (when a hashing thread is free and the copy is long enough);
    /// returns how many bytes: fewer than `length` only if the source
    /// ended.
    fn run(
        &self,
        source: &mut dyn Source,
        hash: &mut Hash,
        threads: &Arc<Counter>,
    ) -> Result<u64, CopyError> {
        let slot = (self.length >= PIPELINE_FROM)
            .then(|| threads.take())
            .flatten();
        let Some(_slot) = slot else {
            let mut buffer = self.buffers.take();
            let mut target = Target::buffered(self.target);
            let copied = self.steps(source, &mut target, |fill| {
                let len = fill(buffer.get())?;
                hash.update(&buffer.get()[..len]);
                Ok(len)
            });
            self.buffers.give(buffer);
            return copied;
        };
        let mut target = Target::new(self.target, self.direct);
        let (to_hash, hashing) = mpsc::sync_channel::<(Buffer, usize)>(BUFFERS);
        let (give_back, returned) = mpsc::channel::<Buffer>();
        std::thread::scope(|scope| {
            let hasher = scope.spawn(|| {
                for (mut buffer, len) in hashing {
                    hash.update(&buffer.get()[..len]);
                    // The copy may have ended (an error): then nobody
                    // takes the buffer back.
                    let _ = give_back.send(buffer);
                }
            });
            let mut spare: Vec<Buffer> = (0..BUFFERS).map(|_| self.buffers.take()).collect();
            let copied = self.steps(source, &mut target, |fill| {
                let mut buffer = match spare.pop() {
                    Some(b) => b,
                    None => returned
                        .recv()
                        .expect("the hashing thread gives buffers back"),
                };
                let len = fill(buffer.get())?;
                to_hash
                    .send((buffer, len))
                    .expect("the hashing thread runs");
                Ok(len)
            });
            drop(to_hash);
            hasher.join().expect("hashing does not panic");
            for buffer in spare.into_iter().chain(returned.try_iter()) {
                self.buffers.give(buffer);
            }
            copied
        })
    }

    /// Reads, writes and passes on one chunk after another: `each` gets a
    /// function that fills a buffer (read from the source, written to the
    /// target) and returns its length; it passes the bytes to the hash.
    fn steps(
        &self,
        source: &mut dyn Source,
        target: &mut Target,
        mut each: impl FnMut(
            &mut dyn FnMut(&mut [u8]) -> Result<usize, CopyError>,
        ) -> Result<usize, CopyError>,
    ) -> Result<u64, CopyError> {
        let mut done = 0u64;
        while done < self.length {
            let at = self.to + done;
            // An unaligned start (a resumed ingest) is first brought to an
            // aligned offset with a short step, so every later step can go
            // direct.
            let step = match (at % ALIGN as u64) as usize {
                0 => CHUNK,
                off => ALIGN - off,
            }
            .min(usize::try_from(self.length - done).unwrap_or(usize::MAX));
            let len = each(&mut |buffer: &mut [u8]| {
                let len = source.fill(&mut buffer[..step], done)?;
                target.write(&buffer[..len], at)?;
                Ok(len)
            })?;
            done += len as u64;
            if len < step {
                break;
            }
        }
        Ok(done)
    }
}

/// Reads until `buffer` is full or the file ends; returns the bytes read.
fn read_full(file: &File, buffer: &mut [u8], at: u64) -> Result<usize, CopyError> {
    let mut len = 0;
    while len < buffer.len() {
        match file.read_at(&mut buffer[len..], at + len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("reading the source", &e)),
        }
    }
    Ok(len)
}

/// Where the bytes go: the guest's descriptor, and a second descriptor of
/// the same file opened for direct I/O when the filesystem takes it.
struct Target<'a> {
    file: &'a File,
    direct: Option<File>,
}

impl<'a> Target<'a> {
    fn buffered(file: &'a File) -> Self {
        Self { file, direct: None }
    }

    /// Direct if `direct` asks for it and the filesystem takes it.
    fn new(file: &'a File, direct: bool) -> Self {
        match direct {
            true => Self::direct(file).unwrap_or_else(|| Self::buffered(file)),
            false => Self::buffered(file),
        }
    }

    /// The file reopened with `O_DIRECT` through `/proc/self/fd` (the same
    /// inode the guest opened: nothing else is reachable); `None` where
    /// `/proc` is missing or the filesystem refuses direct I/O.
    fn direct(file: &'a File) -> Option<Self> {
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let flags = OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC;
        let fd: OwnedFd = rustix::fs::open(path, flags, Mode::empty()).ok()?;
        Some(Self {
            file,
            direct: Some(File::from(fd)),
        })
    }

    /// Writes `bytes` at `at`: the aligned part direct, the rest (a short
    /// tail at the end of the source, or a step that aligns) buffered.
    fn write(&mut self, bytes: &[u8], at: u64) -> Result<(), CopyError> {
        let aligned = if at.is_multiple_of(ALIGN as u64) {
            bytes.len() / ALIGN * ALIGN
        } else {
            0
        };
        if let Some(direct) = &self.direct
            && aligned > 0
        {
            match direct.write_all_at(&bytes[..aligned], at) {
                Ok(()) => return self.buffered_write(&bytes[aligned..], at + aligned as u64),
                // Refused after all (a filesystem that opens with O_DIRECT
                // but cannot write so): buffered from here on.
                Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {
                    self.direct = None;
                }
                Err(e) => return Err(io_error("writing the target", &e)),
            }
        }
        self.buffered_write(bytes, at)
    }

    fn buffered_write(&self, bytes: &[u8], at: u64) -> Result<(), CopyError> {
        self.file
            .write_all_at(bytes, at)
            .map_err(|e| io_error("writing the target", &e))
    }
}

/// A full disk (or quota, or file size limit) is `no-space`; the rest is
/// `io` with the operation named.
fn io_error(doing: &str, e: &std::io::Error) -> CopyError {
    let full = [Errno::NOSPC, Errno::DQUOT, Errno::FBIG].map(|n| Some(n.raw_os_error()));
    if full.contains(&e.raw_os_error()) {
        CopyError::NoSpace
    } else {
        CopyError::Io(format!("{doing}: {e}"))
    }
}
