//! `caller`: who the call in progress is for. The host sets the identity
//! before each call (a confined handle's holder, or the whole store as a
//! handle's holder); the component checks every operation against it, so
//! a front end that forgets a check is still refused.

use super::CapabilitiesView;
use crate::bindings::kist::content::caller::{Host, Identity};

impl Host for CapabilitiesView<'_> {
    fn current(&mut self) -> wasmtime::Result<Identity> {
        Ok(self.identity.clone())
    }
}
