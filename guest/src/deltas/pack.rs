//! Packs: the content of the files a node lacks to rebuild a layer, in
//! the order the layer's tar has them, each once, so that the node reads
//! the pack front to back while it regenerates the tar. Gzipped; inside:
//!
//! ```text
//! "kist-layer-pack/1\n"
//! [32] sha256, u64 size (little-endian), the content    one per file
//! ```

use std::collections::HashSet;
use std::io::{Read, Write};

use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::content::gzipped::Gzipped;
use crate::content::new_blob::{from_io, to_io};
use crate::deltas::split::is_content;
use crate::deltas::tree::{File, Tree};
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, invalid};
use crate::snapshots::apply::read_full;
use crate::snapshots::inflated::{CHUNK, Inflated, TarSource, layer_error};

pub const MAGIC: &[u8] = b"kist-layer-pack/1\n";
/// gzip level of packs: what they save on the wire is worth the CPU,
/// spent once per pair and cached.
const LEVEL: u8 = 9;

/// What a pack holds.
#[derive(Default, Debug, Clone, Copy)]
pub struct Packed {
    pub files: u64,
    pub bytes: u64,
}

/// Writes into `out` the pack of the files of the stored layer `blob`
/// (whose tree is `tree`) with content not in `have`.
pub fn write(
    blob: &Digest,
    media_type: &str,
    tree: &Tree,
    have: &HashSet<[u8; 32]>,
    out: impl Write,
) -> Result<Packed> {
    let mut gz = Gzipped::new(LEVEL, out);
    gz.write_all(MAGIC).map_err(|e| from_io(e, "pack"))?;
    let mut packed = Packed::default();
    let mut sent: HashSet<[u8; 32]> = HashSet::new();
    let mut wanted = tree
        .files()
        .map(|f| (!have.contains(&f.sha256) && sent.insert(f.sha256), f));
    let mut inflated = Inflated::open(blob, media_type)?;
    let name = inflated.name();
    {
        let mut archive = tar::Archive::new(&mut inflated);
        for entry in archive.entries().map_err(|e| layer_error(e, &name))? {
            let mut entry = entry.map_err(|e| layer_error(e, &name))?;
            if !is_content(entry.header().entry_type()) || entry.size() == 0 {
                continue;
            }
            let (send, file) = wanted
                .next()
                .ok_or_else(|| stale(&name, "more files than its tree"))?;
            if file.path != *entry.path_bytes() || file.size != entry.size() {
                return Err(stale(&name, "another file than its tree"));
            }
            if send {
                copy(&mut entry, file, &mut gz).map_err(|e| match e {
                    Error::InvalidArgument(_) => stale(&name, "a file its tree does not name"),
                    e => e,
                })?;
                packed.files += 1;
                packed.bytes += file.size;
            }
        }
    }
    if wanted.next().is_some() {
        return Err(stale(&name, "fewer files than its tree"));
    }
    gz.finish().map_err(|e| from_io(e, "pack"))?;
    Ok(packed)
}

/// A layer that does not match the tree made from it: the tree is from
/// another version of kist, or the blob changed under it.
fn stale(name: &str, what: &str) -> Error {
    Error::Corrupt(format!("{name} has {what}"))
}

/// Writes one frame: `file`'s header and the `file.size` bytes of
/// `content`, checked against its digest.
fn copy(content: &mut impl Read, file: &File, out: &mut impl Write) -> Result<()> {
    let io = |e| from_io(e, "pack");
    out.write_all(&file.sha256).map_err(io)?;
    out.write_all(&file.size.to_le_bytes()).map_err(io)?;
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

/// A pack being read front to back.
pub struct PackReader {
    inflated: Inflated,
    /// The frame being read: its file and the bytes of it left.
    current: Option<([u8; 32], u64)>,
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
            current: None,
        })
    }

    /// Starts the next frame if its file is `file`: `false` if the pack
    /// has no more frames or the next is another file (the node then
    /// looks elsewhere). Only once the previous frame was read whole.
    pub fn next_is(&mut self, file: &File) -> Result<bool> {
        if self.frame_done() {
            let mut header = [0u8; 40];
            match read_full(&mut self.inflated, &mut header).map_err(|e| from_io(e, "pack"))? {
                0 => return Ok(false),
                40 => {}
                _ => return Err(invalid("the pack ends inside a frame header")),
            }
            let sha256: [u8; 32] = header[..32].try_into().expect("32");
            let size = u64::from_le_bytes(header[32..].try_into().expect("8"));
            self.current = Some((sha256, size));
        }
        Ok(self.current == Some((file.sha256, file.size)))
    }

    /// Whether the frame started by [`next_is`](Self::next_is) was read
    /// whole.
    pub fn frame_done(&self) -> bool {
        self.current.is_none_or(|(_, left)| left == 0)
    }
}

impl Read for PackReader {
    /// Reads the current frame's content; 0 at its end.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some((sha256, left)) = self.current else {
            return Ok(0);
        };
        if left == 0 {
            self.current = None;
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inflated.read(&mut buf[..want])?;
        if n == 0 {
            return Err(to_io(invalid("the pack ends inside a file")));
        }
        self.current = Some((sha256, left - n as u64));
        Ok(n)
    }
}
