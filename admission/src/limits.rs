//! The budgets and rates one server enforces.

use std::time::Duration;

/// What one server admits. `Limits::default()` is what `kist serve` uses.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once, in all (default 4096).
    pub connections: usize,
    /// Connections one client may have open (default 256).
    pub connections_per_client: usize,
    /// Transfers in flight (request or response bodies, streams), in all
    /// (default 1024).
    pub transfers: usize,
    /// Transfers one client may have in flight (default 64).
    pub transfers_per_client: usize,
    /// Bytes the server may hold in memory for transfers, in all (default
    /// 768 MiB): a download's read-ahead, a manifest or index being sent or
    /// received, a stream's queued messages. The process's resident size
    /// under load is this and what the allocator keeps of freed memory.
    pub memory: u64,
    /// Bytes held for one client's transfers (default 256 MiB: its 64
    /// transfers' worth of downloads).
    pub memory_per_client: u64,
    /// Bytes per second every transfer must average once its grace is
    /// over, counted from the grace's end (default 4 KiB/s: 32 kbit/s,
    /// slower than any link a registry client uses, far faster than a
    /// trickle meant to hold a slot).
    pub min_rate: u64,
    /// How long a transfer may go before the minimum rate applies
    /// (default 10 s: a connection's start, a slow first byte).
    pub grace: Duration,
    /// Longest a transfer may move nothing at all (default 30 s).
    pub stall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 4096,
            connections_per_client: 256,
            transfers: 1024,
            transfers_per_client: 64,
            memory: 768 << 20,
            memory_per_client: 256 << 20,
            min_rate: 4 << 10,
            grace: Duration::from_secs(10),
            stall: Duration::from_secs(30),
        }
    }
}
