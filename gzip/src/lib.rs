//! The gzip encoder behind kist's `deflate` capability (`wit/deflate.wit`),
//! used by kist's native host and compiled into its portable (wasm)
//! capabilities, so both make the same bytes for the same input: an
//! archive's digest does not depend on the host that built it.
//!
//! Two things could make the bytes differ, and neither does here: the
//! compressor (one implementation, zlib-rs, whose output does not depend
//! on the CPU's features), and how the input is split into calls (the input
//! is regrouped into fixed blocks, so the compressor sees the same calls
//! whatever sizes the caller writes).
//!
//! ```
//! let mut gz = kist_gzip::Encoder::new(6);
//! let mut out = gz.write(b"hello ");
//! out.extend(gz.write(b"world"));
//! out.extend(gz.finish());
//! let mut again = kist_gzip::Encoder::new(6);
//! let mut whole = again.write(b"hello world");
//! whole.extend(again.finish());
//! assert_eq!(out, whole);
//! ```
#![deny(missing_docs)]

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

/// Bytes handed to the compressor at a time.
pub const BLOCK: usize = 1 << 20;

/// One gzip member being written: no file name or comment, modification
/// time 0, operating system 255 ("unknown").
pub struct Encoder {
    gz: GzEncoder<Vec<u8>>,
    /// Input not yet a whole block.
    pending: Vec<u8>,
}

impl Encoder {
    /// A member compressed at `level` (0 stores, 9 is smallest; above 9
    /// means 9).
    pub fn new(level: u8) -> Self {
        let level = Compression::new(u32::from(level.min(9)));
        Self {
            gz: GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(Vec::new(), level),
            pending: Vec::new(),
        }
    }

    /// Takes `data`; returns the compressed bytes ready so far.
    pub fn write(&mut self, mut data: &[u8]) -> Vec<u8> {
        while !data.is_empty() {
            if self.pending.is_empty() && data.len() >= BLOCK {
                // A whole block straight from the caller: no copy.
                let (block, rest) = data.split_at(BLOCK);
                self.compress(block);
                data = rest;
                continue;
            }
            let n = (BLOCK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == BLOCK {
                let block = std::mem::take(&mut self.pending);
                self.compress(&block);
                self.pending = block;
                self.pending.clear();
            }
        }
        std::mem::take(self.gz.get_mut())
    }

    /// Ends the member: the rest of the compressed bytes and the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.compress(&rest);
        self.gz
            .finish()
            .expect("compressing into memory cannot fail")
    }

    fn compress(&mut self, block: &[u8]) {
        self.gz
            .write_all(block)
            .expect("compressing into memory cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Text-like bytes that compress (a pseudo-random walk over words).
    fn text(len: usize) -> Vec<u8> {
        let words = [&b"store "[..], b"blob ", b"digest ", b"layer\n", b"kist "];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(words[(x % 5) as usize]);
        }
        out.truncate(len);
        out
    }

    fn gzip(data: &[u8], split: usize) -> Vec<u8> {
        let mut e = Encoder::new(6);
        let mut out: Vec<u8> = data.chunks(split).flat_map(|c| e.write(c)).collect();
        out.extend(e.finish());
        out
    }

    #[test]
    fn the_bytes_do_not_depend_on_how_the_input_is_split() {
        let data = text(3 * BLOCK + 12_345);
        let whole = gzip(&data, data.len());
        for split in [1, 511, 4096, BLOCK - 1, BLOCK, BLOCK + 7] {
            assert_eq!(gzip(&data, split), whole, "split {split}");
        }
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&whole[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(whole.len() < data.len() / 3, "it compresses");
        assert_eq!(&whole[4..10], &[0, 0, 0, 0, 0, 255], "mtime 0, OS unknown");
    }
}
