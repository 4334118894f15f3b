//! [`Held`]: a guest resource (a walker, a check) that lives on one pooled
//! instance until it is finished, then returns the instance to the pool.

use wasmtime::component::ResourceAny;

use crate::bindings::StoreCore;
use crate::ctx::KistCtx;
use crate::error::{Error, Result};
use crate::session::{GuestResult, Session};
use crate::store::Scoped;

/// A guest resource and the instance it lives on.
pub(crate) struct Held {
    shared: Scoped,
    /// `None` once finished.
    live: Option<(Session, ResourceAny)>,
}

impl Held {
    /// Creates the resource with `create` on a pooled instance.
    pub(crate) fn create(
        shared: &Scoped,
        create: impl FnOnce(&StoreCore, &mut wasmtime::Store<KistCtx>) -> GuestResult<ResourceAny>,
    ) -> Result<Self> {
        let mut session = shared.session()?;
        match session.call(create) {
            Ok(handle) => Ok(Self {
                shared: shared.clone(),
                live: Some((session, handle)),
            }),
            Err(e) => {
                shared.recycle(session);
                Err(e)
            }
        }
    }

    /// Calls a method of the resource; `None` once finished. An error
    /// finishes it unless `goes_on` says the resource carries on after it.
    pub(crate) fn call<R>(
        &mut self,
        goes_on: fn(&Error) -> bool,
        f: impl FnOnce(&StoreCore, &mut wasmtime::Store<KistCtx>, ResourceAny) -> GuestResult<R>,
    ) -> Option<Result<R>> {
        let (session, handle) = self.live.as_mut()?;
        let handle = *handle;
        let result = session.call(|api, s| f(api, s, handle));
        if result.as_ref().is_err_and(|e| !goes_on(e)) {
            self.finish();
        }
        Some(result)
    }

    /// Drops the resource and returns its instance to the pool.
    pub(crate) fn finish(&mut self) {
        if let Some((mut session, handle)) = self.live.take() {
            let _ = session.call(|_, s| handle.resource_drop(s).map(Ok));
            self.shared.recycle(session);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.finish();
    }
}
