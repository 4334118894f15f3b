//! [`Rebuilt`]: a layer's tar regenerated from its [`Tree`], each file's
//! content taken from the next frame of a pack (whole, or a delta applied
//! to a base file by the host's `patch`), from a file of a base snapshot
//! that has it, or from its earlier copy in the tree being built. A file
//! from the pack is checked against its digest as it streams; a stored
//! one the host copies into place itself ([`Placer`]: the bytes never
//! enter the component) while hashing it into the tar's digest. The whole
//! tar is hashed, and `apply` refuses it unless that is the diff id the
//! caller expects: nothing the tree, the pack or a base file says is
//! trusted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::iter::Peekable;
use std::rc::Rc;

use crate::bindings::kist::content::copier;
use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::kist::content::patch;
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags};
use crate::content::new_blob::{from_io, to_io};
use crate::deltas::pack::{Frame, MAX_PATCHED, PackReader};
use crate::deltas::tree::{File, Part, Tree};
use crate::shared::digest::{Digest, to_hex};
use crate::shared::error::{Error, Result, invalid};
use crate::shared::fs;
use crate::snapshots::apply::clean;
use crate::snapshots::inflated::{Placer, TarSource};

/// Where a file's content comes from.
enum Source {
    Pack,
    /// A delta applied.
    Memory(Vec<u8>, usize),
    /// A file of the store (a base snapshot's, or this build's).
    Stored {
        fd: Descriptor,
        path: String,
        at: u64,
    },
    /// Copied into place by the host (see [`Placer`]): the stream gives
    /// zeros, kept out of the tar's digest, which had the real bytes.
    Placed,
}

/// The file being streamed.
struct Streaming {
    file: File,
    source: Source,
    left: u64,
    hasher: Hasher,
}

/// The tar being regenerated: the stream, and (shared) the [`Placer`]
/// the unpacker calls between its reads.
pub struct Rebuilt(Rc<RefCell<Build>>);

/// The state of a regeneration.
struct Build {
    name: String,
    parts: Peekable<std::vec::IntoIter<Part>>,
    raw: Vec<u8>,
    raw_at: usize,
    file: Option<Streaming>,
    pack: Option<PackReader>,
    /// Files of base snapshots by content: a path from the store root.
    bases: HashMap<[u8; 32], String>,
    /// The tree being built (from the store root), where files streamed
    /// before are: a content the tar has twice comes once in a pack.
    staging: String,
    written: HashMap<[u8; 32], String>,
    diff: Hasher,
}

impl Rebuilt {
    /// The tar of `tree`, its files from `pack`, `bases` (content → a
    /// path from the store root) and `staging` (the tree `apply` builds).
    pub fn new(
        name: String,
        tree: Tree,
        pack: Option<PackReader>,
        bases: HashMap<[u8; 32], String>,
        staging: &str,
    ) -> Self {
        Self(Rc::new(RefCell::new(Build {
            name,
            parts: tree.parts.into_iter().peekable(),
            raw: Vec::new(),
            raw_at: 0,
            file: None,
            pack,
            bases,
            staging: staging.to_owned(),
            written: HashMap::new(),
            diff: Hasher::new(Algorithm::Sha256),
        })))
    }
}

impl Build {
    /// Opens where `file`'s content is, in that order: the pack's next
    /// frame, a base, this build.
    fn open(&mut self, file: File) -> Result<Streaming> {
        let frame = match &mut self.pack {
            Some(pack) => pack.next_for(&file)?,
            None => None,
        };
        let source = match frame {
            Some(Frame::Whole) => Source::Pack,
            Some(Frame::Patch { base, delta }) => {
                let base = self.stored(&base).ok_or_else(|| {
                    invalid(format!(
                        "{}: a delta for {} against {}, which no base has",
                        self.name,
                        file.digest(),
                        to_hex(&base)
                    ))
                })?;
                let base = read_whole(&base)?;
                let bytes = patch::apply(&base, &delta, file.size).map_err(|e| {
                    invalid(format!(
                        "{}: the delta for {}: {e:?}",
                        self.name,
                        file.digest()
                    ))
                })?;
                Source::Memory(bytes, 0)
            }
            None => {
                let path = self.stored(&file.sha256).ok_or_else(|| {
                    invalid(format!(
                        "{}: the pack lacks {} ({}), which no base has",
                        self.name,
                        file.digest(),
                        String::from_utf8_lossy(&file.path)
                    ))
                })?;
                let fd = fs::open_existing(&path, DescriptorFlags::READ)?
                    .ok_or_else(|| invalid(format!("{path} is gone: it had {}", file.digest())))?;
                Source::Stored { fd, path, at: 0 }
            }
        };
        Ok(Streaming {
            left: file.size,
            file,
            source,
            hasher: Hasher::new(Algorithm::Sha256),
        })
    }

    /// Where a file with content `sha256` is: a base's, or this build's.
    fn stored(&self, sha256: &[u8; 32]) -> Option<String> {
        self.bases
            .get(sha256)
            .or_else(|| self.written.get(sha256))
            .cloned()
    }

    /// Reads the current file's next bytes into `buf`; at its end, checks
    /// its digest (but for a placed file's, whose bytes are zeros).
    fn read_file(&mut self, buf: &mut [u8]) -> Result<usize> {
        let streaming = self.file.as_mut().expect("a file is open");
        let want = buf
            .len()
            .min(usize::try_from(streaming.left).unwrap_or(usize::MAX));
        let n = match &mut streaming.source {
            Source::Pack => {
                let pack = self.pack.as_mut().expect("the pack is open");
                pack.read(&mut buf[..want])
                    .map_err(|e| from_io(e, "pack"))?
            }
            Source::Memory(bytes, at) => {
                let n = want.min(bytes.len() - *at);
                buf[..n].copy_from_slice(&bytes[*at..*at + n]);
                *at += n;
                n
            }
            Source::Stored { fd, path, at } => {
                let bytes = fs::read_at(fd, path, *at, want as u64)?;
                buf[..bytes.len()].copy_from_slice(&bytes);
                *at += bytes.len() as u64;
                bytes.len()
            }
            Source::Placed => {
                buf[..want].fill(0);
                streaming.left -= want as u64;
                if streaming.left == 0 {
                    let done = self.file.take().expect("a file is open");
                    self.wrote(&done.file)?;
                }
                return Ok(want);
            }
        };
        if n == 0 {
            return Err(invalid(format!(
                "{}: {} ends early",
                self.name,
                String::from_utf8_lossy(&streaming.file.path)
            )));
        }
        streaming.hasher.update(&buf[..n]);
        streaming.left -= n as u64;
        if streaming.left == 0 {
            let done = self.file.take().expect("a file is open");
            if done.hasher.sum() != done.file.sha256 {
                return Err(invalid(format!(
                    "{}: the content given for {} is not {}",
                    self.name,
                    String::from_utf8_lossy(&done.file.path),
                    done.file.digest()
                )));
            }
            self.wrote(&done.file)?;
        }
        self.diff.update(&buf[..n]);
        Ok(n)
    }

    /// Notes where `file`, now in the tree being built, is.
    fn wrote(&mut self, file: &File) -> Result<()> {
        let rel = clean(&file.path)?;
        self.written
            .entry(file.sha256)
            .or_insert_with(|| format!("{}/{rel}", self.staging));
        Ok(())
    }

    /// The stream's next bytes; hashed into the tar's digest here, as they
    /// are produced (a placed file's zeros are not).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            if self.raw_at < self.raw.len() {
                let n = buf.len().min(self.raw.len() - self.raw_at);
                buf[..n].copy_from_slice(&self.raw[self.raw_at..self.raw_at + n]);
                self.raw_at += n;
                self.diff.update(&buf[..n]);
                return Ok(n);
            }
            if self.file.is_some() {
                return self.read_file(buf);
            }
            match self.parts.next() {
                None => return Ok(0),
                Some(Part::Raw(bytes)) => {
                    self.raw = bytes;
                    self.raw_at = 0;
                }
                Some(Part::File(file)) => self.file = Some(self.open(file)?),
            }
        }
    }
}

/// The whole file at `path` (a base's), at most [`MAX_PATCHED`] bytes:
/// what a delta is applied to.
fn read_whole(path: &str) -> Result<Vec<u8>> {
    let fd = fs::open_existing(path, DescriptorFlags::READ)?
        .ok_or_else(|| invalid(format!("{path} is gone")))?;
    let size = fs::fstat(&fd, path)?.size;
    if size > MAX_PATCHED {
        return Err(invalid(format!(
            "{path}: a delta's base is at most {MAX_PATCHED} bytes"
        )));
    }
    fs::read_at(&fd, path, 0, size)
}

impl Placer for RefCell<Build> {
    /// Places the next file when it is a stored one (a base's, or an
    /// earlier copy in this build): copied by the host, hashed into the
    /// tar's digest on the way. Its own digest is not checked: these bytes
    /// are the store's, not the server's, and the diff id covers them.
    fn place(&self, target: &Descriptor, size: u64) -> Result<bool> {
        let mut build = self.borrow_mut();
        let next_is_it =
            matches!(build.parts.peek(), Some(Part::File(f)) if f.size == size && size > 0);
        if build.raw_at < build.raw.len() || build.file.is_some() || !next_is_it {
            return Ok(false);
        }
        let Some(Part::File(file)) = build.parts.next() else {
            unreachable!("peeked")
        };
        let mut streaming = build.open(file)?;
        if let Source::Stored { fd, path, .. } = &streaming.source {
            let copied = copier::copy_hashed(fd, 0, target, 0, size, &build.diff)
                .map_err(|e| Error::Io(format!("copying {path}: {e:?}")))?;
            if copied != size {
                return Err(invalid(format!(
                    "{}: {path} has {copied} bytes, not the {size} of {}",
                    build.name,
                    streaming.file.digest()
                )));
            }
            streaming.source = Source::Placed;
        }
        let placed = matches!(streaming.source, Source::Placed);
        build.file = Some(streaming);
        Ok(placed)
    }
}

impl Read for Rebuilt {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().fill(buf).map_err(to_io)
    }
}

impl TarSource for Rebuilt {
    fn name(&self) -> String {
        self.0.borrow().name.clone()
    }

    fn finish(mut self) -> Result<Digest> {
        let name = self.name();
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| from_io(e, &name))?;
        let build = self.0.borrow();
        if build.file.is_some() {
            return Err(Error::Io(format!("{name}: a file was left open")));
        }
        Ok(Digest::of(Algorithm::Sha256, &build.diff))
    }

    fn placer(&self) -> Option<Rc<dyn Placer>> {
        Some(self.0.clone())
    }
}
