//! Read-ahead for blobs that are not in the page cache.
//!
//! Blobs are written with direct I/O (ingest at the device's speed leaves
//! the page cache alone), so a blob pulled right after its push comes from
//! the device, and one synchronous read at a time reaches a fraction of
//! what the device gives (measured on this project's machines, `kist get
//! --no-verify` of 1 GiB just ingested: 2.2–3.7 s reading one 1 MiB chunk
//! at a time; 0.62–1.34 s with 8 reads ahead, 0.52–1.34 s with 16,
//! 0.47–1.12 s with 32; `dd iflag=direct bs=4M` 0.40–0.46 s). The
//! kernel's own read-ahead keeps too little in flight for such a device
//! (`POSIX_FADV_SEQUENTIAL`: 1.9–2.8 s), and `posix_fadvise(WILLNEED)` is
//! cut to one read-ahead window per call. So once a reader reads on sequentially and the bytes after its
//! read are not all in the page cache, they are read on threads of their
//! own (a few chunks ahead, never past the blob), and the reader's own
//! reads then find them there. Reads of cached blobs, and reads that jump
//! about, start nothing.

use std::thread::JoinHandle;

use crate::capabilities::Loan;

/// Bytes each read ahead covers.
const CHUNK: u64 = 1 << 20;
/// Reads ahead in flight at once, per reader (16 MiB ahead: most of what
/// 32 gained, half the threads).
const DEPTH: usize = 16;

/// One reader's read-ahead.
#[derive(Default)]
pub(crate) struct ReadAhead {
    /// Where the reader's last read ended (a read starting there is
    /// sequential).
    last_end: Option<u64>,
    /// Whether the reader reads on sequentially from the device.
    active: bool,
    /// Where the next read ahead starts.
    next: u64,
    /// The reads ahead in flight.
    flights: Vec<JoinHandle<()>>,
}

impl ReadAhead {
    /// Notes a read of `len` bytes at `offset` of `loan`, and reads ahead
    /// of it while the reader reads sequentially what the page cache does
    /// not hold.
    pub fn after_read(&mut self, loan: &Loan, offset: u64, len: usize) {
        let end = offset + len as u64;
        let sequential = self.last_end == Some(offset);
        self.last_end = Some(end);
        if !sequential {
            self.active = false;
            return;
        }
        if !self.active {
            // Asked once per chunk read past (a mapping per small read
            // would cost more than the read).
            if offset / CHUNK == end / CHUNK || loan.cached(end, CHUNK) {
                return;
            }
            self.active = true;
            self.next = end;
        }
        self.flights.retain(|f| !f.is_finished());
        self.next = self.next.max(end);
        let horizon = loan.size().min(end + CHUNK * DEPTH as u64);
        while self.flights.len() < DEPTH && self.next < horizon {
            let len = CHUNK.min(horizon - self.next);
            let Some(flight) = loan.warm(self.next, len as usize) else {
                break;
            };
            self.flights.push(flight);
            self.next += len;
        }
    }
}
