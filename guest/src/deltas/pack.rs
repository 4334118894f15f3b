//! Packs: the content of the files a node lacks to rebuild a layer, in
//! the order the layer's tar has them, each once, so that the node reads
//! the pack front to back while it regenerates the tar. A file whose path
//! a base layer has too comes as a binary delta against that base file
//! (zstd with the base as a prefix, `--patch-from`: the host's `patch`) when that is
//! smaller: most changed files of a version bump differ in a few bytes.
//! Gzipped; inside, integers little-endian:
//!
//! ```text
//! "kist-layer-pack/2\n"
//! then per file: [32] sha256, u64 size, u8 kind, and
//!   kind 0: the content (size bytes)
//!   kind 1: [32] sha256 of the base file, u64 len, a delta of len bytes
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::kist::content::patch;
use crate::content::gzipped::Gzipped;
use crate::content::new_blob::{from_io, to_io};
use crate::deltas::split::is_content;
use crate::deltas::tree::{File, Tree};
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, invalid};
use crate::snapshots::apply::read_full;
use crate::snapshots::inflated::{CHUNK, Inflated, TarSource, layer_error};

pub const MAGIC: &[u8] = b"kist-layer-pack/2\n";
/// gzip level of packs: what they save on the wire is worth the CPU,
/// spent once per pair and cached.
const LEVEL: u8 = 9;
/// zstd level of deltas of files up to [`LARGE`]: on the Debian python
/// bump, 15 makes the pack 34 % larger than 19 (most of it `.pyc` files,
/// cheap to compress at any level).
const PATCH_LEVEL: u8 = 19;
/// Files above this size get [`LARGE_PATCH_LEVEL`]: level 19 spends on
/// one rebuilt 6.8 MB executable of that bump (`python3.11`, 945 KB as
/// a delta) 4.3 s of CPU to save 160 KB over level 12 (0.6 s); 15 is
/// larger than 12 there.
const LARGE: u64 = 1 << 20;
const LARGE_PATCH_LEVEL: u8 = 12;
/// Largest file sent as a delta (the base and the file are in memory).
pub const MAX_PATCHED: u64 = 16 << 20;
/// Most bytes of base files held in memory for one pack.
const BASE_BUDGET: u64 = 256 << 20;
const FULL: u8 = 0;
const PATCH: u8 = 1;

/// Base files by path, with their content: what deltas are made against.
pub type BaseFiles = HashMap<Vec<u8>, ([u8; 32], Vec<u8>)>;

/// What a pack holds.
#[derive(Default, Debug, Clone, Copy)]
pub struct Packed {
    pub files: u64,
    pub bytes: u64,
}

/// Writes into `out` the pack of the files of the stored layer `blob`
/// (whose tree is `tree`) with content not in `have`, as deltas against
/// `bases` where that is smaller.
pub fn write(
    blob: &Digest,
    media_type: &str,
    tree: &Tree,
    have: &HashSet<[u8; 32]>,
    bases: &BaseFiles,
    out: impl Write,
) -> Result<Packed> {
    let mut gz = Gzipped::new(LEVEL, out);
    gz.write_all(MAGIC).map_err(|e| from_io(e, "pack"))?;
    let mut packed = Packed::default();
    let mut sent: HashSet<[u8; 32]> = HashSet::new();
    each_file(blob, media_type, tree, |entry, file| {
        if have.contains(&file.sha256) || !sent.insert(file.sha256) {
            return Ok(());
        }
        match bases.get(&file.path).filter(|_| file.size <= MAX_PATCHED) {
            Some((base_sha, base)) => frame_patched(entry, file, base_sha, base, &mut gz)?,
            None => frame(entry, file, &mut gz)?,
        }
        packed.files += 1;
        packed.bytes += file.size;
        Ok(())
    })?;
    gz.finish().map_err(|e| from_io(e, "pack"))?;
    Ok(packed)
}

/// The content of the files at `paths` in the stored layer `blob` (whose
/// tree is `tree`), within what is left of the memory budget `used`.
pub fn base_files(
    blob: &Digest,
    tree: &Tree,
    paths: &HashSet<&[u8]>,
    used: &mut u64,
    into: &mut BaseFiles,
) -> Result<()> {
    each_file(blob, "", tree, |entry, file| {
        if paths.contains(file.path.as_slice())
            && file.size <= MAX_PATCHED
            && *used + file.size <= BASE_BUDGET
        {
            into.insert(file.path.clone(), (file.sha256, checked(entry, file)?));
            *used += file.size;
        }
        Ok(())
    })
}

/// Calls `each` with every regular file with content of the stored layer
/// `blob`, and its part of `tree`, checked to be the same file.
fn each_file(
    blob: &Digest,
    media_type: &str,
    tree: &Tree,
    mut each: impl FnMut(&mut dyn Read, &File) -> Result<()>,
) -> Result<()> {
    let mut files = tree.files();
    let mut inflated = Inflated::open(blob, media_type)?;
    let name = inflated.name();
    let mut archive = tar::Archive::new(&mut inflated);
    for entry in archive.entries().map_err(|e| layer_error(e, &name))? {
        let mut entry = entry.map_err(|e| layer_error(e, &name))?;
        if !is_content(entry.header().entry_type()) || entry.size() == 0 {
            continue;
        }
        let file = files
            .next()
            .ok_or_else(|| stale(&name, "more files than its tree"))?;
        if file.path != *entry.path_bytes() || file.size != entry.size() {
            return Err(stale(&name, "another file than its tree"));
        }
        each(&mut entry, file).map_err(|e| match e {
            Error::InvalidArgument(_) => stale(&name, "a file its tree does not name"),
            e => e,
        })?;
    }
    if files.next().is_some() {
        return Err(stale(&name, "fewer files than its tree"));
    }
    Ok(())
}

/// A layer that does not match the tree made from it: the tree is from
/// another version of kist, or the blob changed under it.
fn stale(name: &str, what: &str) -> Error {
    Error::Corrupt(format!("{name} has {what}"))
}

/// Writes one whole frame: `file`'s header and the `file.size` bytes of
/// `content`, checked against its digest.
fn frame(content: &mut dyn Read, file: &File, out: &mut impl Write) -> Result<()> {
    let io = |e| from_io(e, "pack");
    header(file, FULL, out)?;
    let hasher = Hasher::new(Algorithm::Sha256);
    let mut left = file.size;
    let mut buffer = vec![0; CHUNK.min(file.size as usize)];
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = content.read(&mut buffer[..want]).map_err(io)?;
        if n == 0 {
            return Err(invalid("a file's content ends early"));
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n]).map_err(io)?;
        left -= n as u64;
    }
    if hasher.sum() != file.sha256 {
        return Err(invalid(format!("{} has other content", file.digest())));
    }
    Ok(())
}

/// Writes `file` as a delta against `base` (whose digest is `base_sha`)
/// if the host makes one smaller than the file, else whole.
fn frame_patched(
    content: &mut dyn Read,
    file: &File,
    base_sha: &[u8; 32],
    base: &[u8],
    out: &mut impl Write,
) -> Result<()> {
    let io = |e| from_io(e, "pack");
    let target = checked(content, file)?;
    let level = if file.size > LARGE {
        LARGE_PATCH_LEVEL
    } else {
        PATCH_LEVEL
    };
    match patch::make(base, &target, level) {
        Ok(delta) if (delta.len() as u64) + 40 < file.size => {
            header(file, PATCH, out)?;
            out.write_all(base_sha).map_err(io)?;
            out.write_all(&(delta.len() as u64).to_le_bytes())
                .map_err(io)?;
            out.write_all(&delta).map_err(io)
        }
        // Not smaller, or this host makes no deltas: whole (`checked`
        // hashed it already).
        _ => {
            header(file, FULL, out)?;
            out.write_all(&target).map_err(io)
        }
    }
}

fn header(file: &File, kind: u8, out: &mut impl Write) -> Result<()> {
    out.write_all(&file.sha256)
        .and_then(|()| out.write_all(&file.size.to_le_bytes()))
        .and_then(|()| out.write_all(&[kind]))
        .map_err(|e| from_io(e, "pack"))
}

/// The `file.size` bytes of `content`, checked against `file`'s digest.
fn checked(content: &mut dyn Read, file: &File) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(file.size as usize);
    content
        .take(file.size)
        .read_to_end(&mut bytes)
        .map_err(|e| from_io(e, "pack"))?;
    let hasher = Hasher::new(Algorithm::Sha256);
    hasher.update(&bytes);
    if bytes.len() as u64 != file.size || hasher.sum() != file.sha256 {
        return Err(invalid(format!("{} has other content", file.digest())));
    }
    Ok(bytes)
}

/// How the next frame gives its file.
pub enum Frame {
    /// Whole: read it from the [`PackReader`].
    Whole,
    /// As a delta against the base file with this content.
    Patch { base: [u8; 32], delta: Vec<u8> },
}

/// A pack being read front to back.
pub struct PackReader {
    inflated: Inflated,
    /// The next frame's header, read but not taken: (file, size, kind).
    pending: Option<([u8; 32], u64, u8)>,
    /// Bytes left of the whole file being read.
    left: u64,
}

impl PackReader {
    /// The stored pack `blob`; checks its magic.
    pub fn open(blob: &Digest) -> Result<Self> {
        let mut inflated = Inflated::gzipped(blob);
        let mut magic = vec![0; MAGIC.len()];
        inflated
            .read_exact(&mut magic)
            .map_err(|_| invalid(format!("{blob} is not a kist layer pack")))?;
        if magic != MAGIC {
            return Err(invalid(format!("{blob} is not a kist layer pack")));
        }
        Ok(Self {
            inflated,
            pending: None,
            left: 0,
        })
    }

    /// Takes the next frame if it is `file`'s; `None` if the pack has no
    /// more frames or the next is another file's (the node then looks
    /// elsewhere). A whole file must be read to its end first.
    pub fn next_for(&mut self, file: &File) -> Result<Option<Frame>> {
        if self.left > 0 {
            return Err(Error::Io("a pack frame was left unread".into()));
        }
        if self.pending.is_none() {
            let mut header = [0u8; 41];
            match self.fill(&mut header)? {
                0 => return Ok(None),
                41 => {}
                _ => return Err(invalid("the pack ends inside a frame header")),
            }
            let sha256: [u8; 32] = header[..32].try_into().expect("32");
            let size = u64::from_le_bytes(header[32..40].try_into().expect("8"));
            self.pending = Some((sha256, size, header[40]));
        }
        let Some((_, size, kind)) = self
            .pending
            .filter(|(sha, size, _)| (*sha, *size) == (file.sha256, file.size))
        else {
            return Ok(None);
        };
        self.pending = None;
        match kind {
            FULL => {
                self.left = size;
                Ok(Some(Frame::Whole))
            }
            PATCH => {
                let mut header = [0u8; 40];
                if self.fill(&mut header)? != 40 {
                    return Err(invalid("the pack ends inside a delta header"));
                }
                let len = u64::from_le_bytes(header[32..].try_into().expect("8"));
                if len > 2 * MAX_PATCHED {
                    return Err(invalid(format!(
                        "a delta of {len} bytes for {}",
                        file.digest()
                    )));
                }
                let mut delta = vec![0; len as usize];
                if self.fill(&mut delta)? != delta.len() {
                    return Err(invalid("the pack ends inside a delta"));
                }
                let base = header[..32].try_into().expect("32");
                Ok(Some(Frame::Patch { base, delta }))
            }
            k => Err(invalid(format!("a pack frame of unknown kind {k}"))),
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        read_full(&mut self.inflated, buf).map_err(|e| from_io(e, "pack"))
    }
}

impl Read for PackReader {
    /// Reads the current whole file; 0 at its end.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inflated.read(&mut buf[..want])?;
        if n == 0 {
            return Err(to_io(invalid("the pack ends inside a file")));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
