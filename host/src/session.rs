//! One component instance in its own wasmtime store, and the discipline of
//! calling into it: a deadline that a call working keeps pushing back, and
//! no reuse after a trap (a trapped instance cannot be entered again).

use std::sync::Arc;

use crate::bindings::StoreCore;
use crate::bindings::exports::kist::content::types::Error as WitError;
use crate::bindings::lending::LendingHost;
use crate::ctx::KistCtx;
use crate::error::{Error, Result};
use crate::runtime::TICK;
use crate::store::Shared;

/// A live instance of the store component.
pub(crate) struct Session {
    pub(crate) store: wasmtime::Store<KistCtx>,
    pub(crate) api: StoreCore,
    /// `lending`, when the component lends to this host.
    pub(crate) lending: Option<LendingHost>,
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
        // At the deadline a call that asked the host for anything since the
        // last one (a file read or written, bytes hashed, a lock) is working,
        // however slowly the machine lets it: it gets another deadline. One
        // that asked for nothing is a runaway loop, and is stopped. No
        // wall-clock limit cuts work that is making progress.
        store.epoch_deadline_callback(move |mut ctx| {
            let ctx = ctx.data_mut();
            if ctx.host_calls == ctx.host_calls_seen {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            ctx.host_calls_seen = ctx.host_calls;
            Ok(wasmtime::UpdateDeadline::Continue(deadline_ticks))
        });
        let runtime = &shared.runtime;
        let instance = runtime.pre.instantiate(&mut store)?;
        let api = runtime.core.load(&mut store, &instance)?;
        let lending = runtime
            .lending
            .as_ref()
            .map(|lending| lending.load(&mut store, &instance))
            .transpose()?;
        Ok(Self {
            store,
            api,
            lending,
            deadline_ticks,
            poisoned: false,
        })
    }

    /// Calls into the guest with a fresh deadline and maps the outcome.
    pub(crate) fn call<R>(
        &mut self,
        f: impl FnOnce(&StoreCore, &mut wasmtime::Store<KistCtx>) -> GuestResult<R>,
    ) -> Result<R> {
        self.enter(|this| f(&this.api, &mut this.store))
    }

    /// [`call`](Self::call) for `lending`; `None` when the component does
    /// not lend to this host.
    pub(crate) fn call_lending<R>(
        &mut self,
        f: impl FnOnce(&LendingHost, &mut wasmtime::Store<KistCtx>) -> GuestResult<R>,
    ) -> Option<Result<R>> {
        self.lending
            .is_some()
            .then(|| self.enter(|this| f(this.lending.as_ref().expect("lends"), &mut this.store)))
    }

    fn enter<R>(&mut self, f: impl FnOnce(&mut Self) -> GuestResult<R>) -> Result<R> {
        if self.poisoned {
            return Err(Error::Component("this instance trapped earlier".into()));
        }
        let ctx = self.store.data_mut();
        ctx.host_calls_seen = ctx.host_calls;
        self.store.set_epoch_deadline(self.deadline_ticks);
        match f(self) {
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
