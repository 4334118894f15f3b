//! [`Tree`]: a layer's uncompressed tar, split into what is not file
//! content — headers (PAX and GNU long names included), padding, the data
//! of entries that are not regular files, the end marker and what follows
//! it — kept as bytes, and the content of its regular files, named by
//! sha256. Concatenating the parts, each file's content in its place,
//! gives back the exact tar, so its diff id, whatever the files came from.
//!
//! Stored gzipped (the host's deterministic `deflate`); the encoding, all
//! integers little-endian:
//!
//! ```text
//! "kist-layer-tree/1\n" <diff id> "\n"
//! 0x00 u32 len, bytes                        raw tar bytes
//! 0x01 u64 size, [32] sha256, u32 len, path  a regular file's content
//! ```
//!
//! A tree comes from the network as well as from the store, so decoding
//! bounds every length; its content is trusted by no one: what it
//! regenerates is checked against the diff id.

use crate::shared::digest::{Digest, to_hex};
use crate::shared::error::{Result, invalid};

const MAGIC: &[u8] = b"kist-layer-tree/1\n";
const RAW: u8 = 0;
const FILE: u8 = 1;
/// Longest path a file part may name.
const MAX_PATH: u32 = 64 << 10;
/// Most bytes a decoded tree may have: the headers of a million entries.
pub const MAX_DECODED: u64 = 1 << 30;

/// One part of the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes as they are in the tar.
    Raw(Vec<u8>),
    /// A regular file's content.
    File(File),
}

/// A regular file's content: where it is in the layer and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The entry's path as the tar names it (after PAX and GNU names).
    pub path: Vec<u8>,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl File {
    /// The content's digest.
    pub fn digest(&self) -> String {
        format!("sha256:{}", to_hex(&self.sha256))
    }
}

/// A layer's tar, part by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// sha256 of the whole tar.
    pub diff_id: Digest,
    pub parts: Vec<Part>,
}

impl Tree {
    /// The regular files, in tar order.
    pub fn files(&self) -> impl Iterator<Item = &File> {
        self.parts.iter().filter_map(|p| match p {
            Part::File(f) => Some(f),
            Part::Raw(_) => None,
        })
    }

    /// The encoding (before gzip).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 80);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.diff_id.to_string().as_bytes());
        out.push(b'\n');
        for part in &self.parts {
            match part {
                Part::Raw(bytes) => {
                    out.push(RAW);
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
                Part::File(f) => {
                    out.push(FILE);
                    out.extend_from_slice(&f.size.to_le_bytes());
                    out.extend_from_slice(&f.sha256);
                    out.extend_from_slice(&(f.path.len() as u32).to_le_bytes());
                    out.extend_from_slice(&f.path);
                }
            }
        }
        out
    }

    /// Parses an encoding; anything malformed is `invalid-argument`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Cursor { bytes, at: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(invalid("not a kist layer tree (bad magic)"));
        }
        let line = r.line()?;
        let diff_id = std::str::from_utf8(line)
            .map_err(|_| invalid("layer tree: diff id is not UTF-8"))
            .and_then(Digest::parse)?;
        let mut parts = Vec::new();
        while r.at < bytes.len() {
            let kind = r.take(1)?[0];
            parts.push(match kind {
                RAW => {
                    let len = r.u32()?;
                    Part::Raw(r.take(len as usize)?.to_vec())
                }
                FILE => {
                    let size = r.u64()?;
                    let sha256 = r.take(32)?.try_into().expect("32 bytes taken");
                    let len = r.u32()?;
                    if len > MAX_PATH {
                        return Err(invalid("layer tree: a path is too long"));
                    }
                    let path = r.take(len as usize)?.to_vec();
                    Part::File(File { path, size, sha256 })
                }
                k => return Err(invalid(format!("layer tree: unknown part kind {k}"))),
            });
        }
        Ok(Self { diff_id, parts })
    }
}

/// Reading an encoding, every length checked against what is left.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| invalid("layer tree: truncated"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .take(200)
            .position(|b| *b == b'\n')
            .ok_or_else(|| invalid("layer tree: no diff id line"))?;
        let line = self.take(end)?;
        self.at += 1;
        Ok(line)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
}
