//! One component instance in its own wasmtime store, and the discipline of
//! calling into it: a deadline per call, and no reuse after a trap (a
//! trapped instance cannot be entered again).

use std::sync::Arc;

use crate::bindings::StoreComponent;
use crate::bindings::exports::kist::content::types::Error as WitError;
use crate::ctx::KistCtx;
use crate::error::{Error, Result};
use crate::runtime::TICK;
use crate::store::Shared;

/// The slowest rate at which a call that moves data is assumed to move
/// it, in bytes per second, for its deadline: archiving in wasm runs at
/// ~24 MB/s here, so 4 MiB/s leaves room for a loaded machine.
pub(crate) const MIN_RATE: u64 = 4 << 20;

/// A live instance of the store component.
pub(crate) struct Session {
    pub(crate) store: wasmtime::Store<KistCtx>,
    pub(crate) api: StoreComponent,
    deadline_ticks: u64,
    poisoned: bool,
}

/// What a guest call returns: a trap, or the WIT result.
pub(crate) type GuestResult<R> = wasmtime::Result<std::result::Result<R, WitError>>;

impl Session {
    /// Instantiates the component for the store `shared` describes.
    pub(crate) fn new(shared: &Arc<Shared>) -> Result<Self> {
        let options = &shared.options;
        let ctx = KistCtx::new(
            &shared.root,
            options.memory_limit,
            options.clock.clone(),
            Arc::clone(&shared.caps),
        )?;
        let mut store = wasmtime::Store::new(&shared.runtime.engine, ctx);
        store.limiter(|ctx| &mut ctx.limits);
        let deadline_ticks = (options.call_timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(deadline_ticks);
        let api = shared.runtime.pre.instantiate(&mut store)?;
        Ok(Self {
            store,
            api,
            deadline_ticks,
            poisoned: false,
        })
    }

    /// Calls into the guest with a fresh deadline and maps the outcome.
    pub(crate) fn call<R>(
        &mut self,
        f: impl FnOnce(&StoreComponent, &mut wasmtime::Store<KistCtx>) -> GuestResult<R>,
    ) -> Result<R> {
        self.call_for(0, f)
    }

    /// [`call`](Self::call) for a call that moves `bytes` bytes of data
    /// (an archive, an extraction): its deadline grows by the time they
    /// take at [`MIN_RATE`], so a large tree is not cut short while a
    /// runaway call is still stopped.
    pub(crate) fn call_for<R>(
        &mut self,
        bytes: u64,
        f: impl FnOnce(&StoreComponent, &mut wasmtime::Store<KistCtx>) -> GuestResult<R>,
    ) -> Result<R> {
        if self.poisoned {
            return Err(Error::Component("this instance trapped earlier".into()));
        }
        let extra = (bytes / MIN_RATE).saturating_mul(1000) / TICK.as_millis() as u64;
        self.store
            .set_epoch_deadline(self.deadline_ticks.saturating_add(extra));
        match f(&self.api, &mut self.store) {
            Ok(result) => result.map_err(Error::from),
            Err(trap) => {
                self.poisoned = true;
                Err(Error::from(trap))
            }
        }
    }

    /// Whether the instance can still be used.
    pub(crate) fn healthy(&self) -> bool {
        !self.poisoned
    }
}
