//! [`Gzipped`]: a `std::io::Write` that gzips through the host's `deflate`
//! capability (native, on another core) into another writer, usually a
//! [`NewBlob`](crate::content::new_blob::NewBlob).

use std::io::Write;

use crate::bindings::kist::content::deflate::GzipEncoder;

/// Bytes passed to the host's encoder per call: fewer, larger calls (the
/// compressed bytes do not depend on it).
const CALL: usize = 1 << 20;

/// One gzip member being written into `out`.
pub struct Gzipped<W: Write> {
    encoder: GzipEncoder,
    pending: Vec<u8>,
    out: W,
}

impl<W: Write> Gzipped<W> {
    /// A member compressed at `level` (gzip's: 1 fastest, 9 smallest).
    pub fn new(level: u8, out: W) -> Self {
        Self {
            encoder: GzipEncoder::new(level),
            pending: Vec::with_capacity(CALL),
            out,
        }
    }

    /// Ends the member (writes the rest and the trailer); returns `out`.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.drain()?;
        self.out.write_all(&GzipEncoder::finish(self.encoder))?;
        Ok(self.out)
    }

    fn drain(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.out.write_all(&self.encoder.write(&self.pending))?;
            self.pending.clear();
        }
        Ok(())
    }
}

impl<W: Write> Write for Gzipped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.pending.len() + buf.len() > CALL {
            self.drain()?;
        }
        if buf.len() >= CALL {
            self.out.write_all(&self.encoder.write(buf))?;
        } else {
            self.pending.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
