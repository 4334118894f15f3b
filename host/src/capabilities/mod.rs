//! The native capabilities the store component imports: `hasher` (SHA-NI
//! hashing, several times faster than in wasm) and `locks` (`flock`, which
//! WASI 0.2 lacks).
//!
//! Another wasmtime embedding supplies them the way wasmtime's WASI crates
//! do: keep a [`CapabilitiesCtx`] in the store data, implement
//! [`CapabilitiesHost`] to lend a [`CapabilitiesView`] of it, and call
//! [`add_to_linker`].

pub(crate) mod hasher;
pub(crate) mod locks;

use std::path::Path;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use self::hasher::HashState;
pub use self::locks::LockGuard;
use crate::bindings::kist::content;

/// State the capabilities need: where lock files live.
pub struct CapabilitiesCtx {
    locks: locks::LockDir,
}

impl CapabilitiesCtx {
    /// Capabilities for the store rooted at `root`; lock files go in
    /// `root/locks`, which is created if missing.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            locks: locks::LockDir::open(root)?,
        })
    }
}

/// A borrowed view of the capabilities' state and the store's resource
/// table, through which the host functions run.
pub struct CapabilitiesView<'a> {
    /// The capabilities' state.
    pub ctx: &'a CapabilitiesCtx,
    /// The wasmtime store's resource table (hashers and guards live there).
    pub table: &'a mut ResourceTable,
}

/// Store data that can lend a [`CapabilitiesView`].
pub trait CapabilitiesHost: Send {
    /// Borrows the capabilities' state and the resource table.
    fn capabilities(&mut self) -> CapabilitiesView<'_>;
}

struct HasCapabilities;

impl HasData for HasCapabilities {
    type Data<'a> = CapabilitiesView<'a>;
}

/// Adds `kist:content/hasher` and `kist:content/locks` to `linker`.
pub fn add_to_linker<T: CapabilitiesHost + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    content::hasher::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::locks::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    Ok(())
}
