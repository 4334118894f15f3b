//! [`Rebuilt`]: a layer's tar regenerated from its [`Tree`], each file's
//! content taken from the next frame of a pack, from a file of a base
//! snapshot that has it, or from its earlier copy in the tree being
//! built. Every file is checked against its digest as it streams, and
//! the whole tar is hashed: `apply` refuses it unless that is the diff id
//! the caller expects, so nothing the tree or the pack says is trusted.

use std::collections::HashMap;
use std::io::Read;

use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags};
use crate::content::new_blob::{from_io, to_io};
use crate::deltas::pack::PackReader;
use crate::deltas::tree::{File, Part, Tree};
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, invalid};
use crate::shared::fs;
use crate::snapshots::apply::clean;
use crate::snapshots::inflated::TarSource;

/// Where a file's content comes from.
enum Source {
    Pack,
    /// A file of the store (a base snapshot's, or this build's).
    Stored {
        fd: Descriptor,
        path: String,
        at: u64,
    },
}

/// The file being streamed.
struct Streaming {
    file: File,
    source: Source,
    left: u64,
    hasher: Hasher,
}

/// The tar being regenerated.
pub struct Rebuilt {
    name: String,
    parts: std::vec::IntoIter<Part>,
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
        Self {
            name,
            parts: tree.parts.into_iter(),
            raw: Vec::new(),
            raw_at: 0,
            file: None,
            pack,
            bases,
            staging: staging.to_owned(),
            written: HashMap::new(),
            diff: Hasher::new(Algorithm::Sha256),
        }
    }

    /// Opens where `file`'s content is, in that order: the pack's next
    /// frame, a base, this build.
    fn open(&mut self, file: File) -> Result<Streaming> {
        let source = if let Some(pack) = &mut self.pack
            && pack.next_is(&file)?
        {
            Source::Pack
        } else if let Some(path) = self
            .bases
            .get(&file.sha256)
            .or_else(|| self.written.get(&file.sha256))
        {
            let fd = fs::open_existing(path, DescriptorFlags::READ)?
                .ok_or_else(|| invalid(format!("{path} is gone: it had {}", file.digest())))?;
            Source::Stored {
                fd,
                path: path.clone(),
                at: 0,
            }
        } else {
            return Err(invalid(format!(
                "{}: the pack lacks {} ({}), which no base has",
                self.name,
                file.digest(),
                String::from_utf8_lossy(&file.path)
            )));
        };
        Ok(Streaming {
            left: file.size,
            file,
            source,
            hasher: Hasher::new(Algorithm::Sha256),
        })
    }

    /// Reads the current file's next bytes into `buf`; at its end, checks
    /// its digest.
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
            Source::Stored { fd, path, at } => {
                let bytes = fs::read_at(fd, path, *at, want as u64)?;
                buf[..bytes.len()].copy_from_slice(&bytes);
                *at += bytes.len() as u64;
                bytes.len()
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
            let rel = clean(&done.file.path)?;
            self.written
                .entry(done.file.sha256)
                .or_insert_with(|| format!("{}/{rel}", self.staging));
        }
        Ok(n)
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            if self.raw_at < self.raw.len() {
                let n = buf.len().min(self.raw.len() - self.raw_at);
                buf[..n].copy_from_slice(&self.raw[self.raw_at..self.raw_at + n]);
                self.raw_at += n;
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

impl Read for Rebuilt {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill(buf).map_err(to_io)?;
        self.diff.update(&buf[..n]);
        Ok(n)
    }
}

impl TarSource for Rebuilt {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn finish(mut self) -> Result<Digest> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| from_io(e, &self.name))?;
        if self.file.is_some() {
            return Err(Error::Io(format!("{}: a file was left open", self.name)));
        }
        Ok(Digest::of(Algorithm::Sha256, &self.diff))
    }
}
