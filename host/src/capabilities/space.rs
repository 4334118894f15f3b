//! `space`: the size of the filesystem the store is on (`statvfs`), which
//! WASI 0.2 cannot tell; quotas in percent of the filesystem need it. It
//! tells two numbers about the store's own filesystem and nothing else.

use super::CapabilitiesView;
use crate::bindings::kist::content::space::Host;

impl Host for CapabilitiesView<'_> {
    fn filesystem(&mut self) -> wasmtime::Result<Option<(u64, u64)>> {
        let stats = rustix::fs::statvfs(&self.ctx.root).ok();
        Ok(stats.map(|s| (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize)))
    }
}
