//! The data of one wasmtime store running the component: its WASI context
//! (one preopened directory, nothing else), resource table, limits and
//! capabilities.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::kist::content::caller::Identity;
use crate::capabilities::{BlobTap, CapabilitiesCtx, CapabilitiesHost, CapabilitiesView};
use crate::store::Clock;

/// Store data for one component instance.
pub(crate) struct KistCtx {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    caps: Arc<CapabilitiesCtx>,
    /// Who the calls in progress are for (what `caller` answers); set
    /// each time the instance is handed out.
    pub(crate) identity: Identity,
    /// Calls the guest made to the host (WASI and kist's capabilities),
    /// and how many there were at the last deadline: a call that made
    /// some since is working, and its deadline is pushed back.
    pub(crate) host_calls: u64,
    pub(crate) host_calls_seen: u64,
    /// Where the call in progress also sends what it downloads from the
    /// start of an object, if the embedder asked (a blob streamed to a
    /// client while the node fetches it).
    pub(crate) tap: Option<Box<dyn BlobTap>>,
}

impl KistCtx {
    /// A context whose only capability on the host filesystem is `root`,
    /// preopened read-write. No environment, arguments, stdio or network.
    pub(crate) fn new(
        root: &Path,
        memory_limit: usize,
        clock: Option<Clock>,
        caps: Arc<CapabilitiesCtx>,
    ) -> std::io::Result<Self> {
        let mut wasi = WasiCtxBuilder::new();
        if let Some(clock) = clock {
            wasi.wall_clock(FixedClock(clock));
        }
        // kist calls the component synchronously: file operations run on
        // the calling thread instead of a round trip through tokio's
        // blocking pool for each one (which costs tens of microseconds).
        wasi.allow_blocking_current_thread(true);
        wasi.preopened_dir(root, "/store", FsPerms::ReadWrite)
            .map_err(std::io::Error::other)?;
        Ok(Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .trap_on_grow_failure(true)
                .build(),
            caps,
            identity: Identity {
                holder: "default".to_owned(),
                confined: false,
                repositories: None,
                within: Vec::new(),
            },
            host_calls: 0,
            host_calls_seen: 0,
            tap: None,
        })
    }
}

impl WasiView for KistCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.host_calls += 1;
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl CapabilitiesHost for KistCtx {
    fn capabilities(&mut self) -> CapabilitiesView<'_> {
        self.host_calls += 1;
        CapabilitiesView {
            ctx: &self.caps,
            table: &mut self.table,
            identity: &self.identity,
            tap: &mut self.tap,
        }
    }
}

/// A [`Clock`] as WASI's wall clock.
struct FixedClock(Clock);

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        (self.0)()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }
}
