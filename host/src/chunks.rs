//! Buffers for the 1 MiB chunks a [`Reader`](crate::Reader) hands out,
//! reused once the chunk is dropped (sent). A fresh 1 MiB allocation is a
//! new mapping that the kernel zeroes and faults in page by page (256
//! faults): serving a blob that way cost more CPU than copying its bytes.

use std::sync::Mutex;

use bytes::Bytes;

/// Bytes of every pooled buffer.
pub(crate) const CHUNK: usize = 1 << 20;
/// Buffers kept for reuse at most (64 MiB): what a burst of concurrent
/// readers leaves behind beyond this is freed.
const KEPT: usize = 64;
/// Chunks shorter than this get a buffer of their own size.
const SMALL: usize = 64 << 10;

/// Buffers free for the next chunk.
static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A chunk's buffer: `len` bytes of it are the chunk; it goes back to the
/// pool when the last `Bytes` of it is dropped.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.len() != CHUNK {
            return;
        }
        let mut free = FREE.lock().expect("chunk pool lock");
        if free.len() < KEPT {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

/// A chunk of at most [`CHUNK`] bytes written by `fill`, which gets a
/// buffer of `len` bytes (holding earlier chunks' bytes: only what it
/// reports written is handed out) and returns how many it wrote.
pub(crate) fn chunk<E>(
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<Bytes, E> {
    debug_assert!(len <= CHUNK);
    // A small chunk (a small blob, a blob's end) gets a buffer of its own
    // size: a pooled 1 MiB one would be held for a few bytes.
    let mut buf = if len < SMALL {
        vec![0; len]
    } else {
        let reused = FREE.lock().expect("chunk pool lock").pop();
        reused.unwrap_or_else(|| vec![0; CHUNK])
    };
    let len = fill(&mut buf[..len])?;
    Ok(Bytes::from_owner(Pooled { buf, len }))
}
