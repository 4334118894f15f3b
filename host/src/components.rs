//! The WebAssembly components this crate is built with, for embedding kist
//! in a host or a composition of your own.
//!
//! | component | world | imports |
//! |---|---|---|
//! | [`STORE`] | `kist:content/store-component` | WASI filesystem and wall clock, kist's `hasher` and `locks` |
//! | [`CAPABILITIES`] | `kist:content/portable-capabilities` | WASI filesystem, monotonic clock, poll |
//! | [`PORTABLE`] | [`STORE`] with [`CAPABILITIES`] plugged in | standard WASI 0.2 only |
//!
//! [`Store`](crate::Store) runs [`STORE`] and supplies the capabilities
//! natively ([`capabilities`](crate::capabilities)): sha2 with CPU
//! extensions, `flock` locks released when a holder crashes. [`PORTABLE`]
//! runs in any WASI 0.2 host (`wasmtime run`, jco) at the cost of hashing
//! in wasm and lock files that a crashed holder leaves behind.
//!
//! ```no_run
//! std::fs::write("kist-portable.wasm", kist::components::PORTABLE)?;
//! # Ok::<(), std::io::Error>(())
//! ```

/// The store component, built from `guest/`.
pub const STORE: &[u8] = include_bytes!(env!("KIST_COMPONENT_PATH"));

/// The pure-wasm `hasher` and `locks` providers, built from `portable/`.
pub const CAPABILITIES: &[u8] = include_bytes!(env!("KIST_CAPABILITIES_PATH"));

/// [`STORE`] composed with [`CAPABILITIES`] (`wac plug`): a store whose only
/// imports are standard WASI 0.2.
pub const PORTABLE: &[u8] = include_bytes!(env!("KIST_PORTABLE_PATH"));

/// Composes components as `wac plug` does: `socket`'s imports are satisfied
/// by exports of the same name (or a semver-compatible version) from
/// `plugs`. The result exports what `socket` exports and imports what is
/// left over. For example, plug [`PORTABLE`] into a component of the
/// `kist:content/client` world to get one that runs in any WASI 0.2 host:
///
/// ```no_run
/// let client = std::fs::read("my-client.wasm")?;
/// let composed = kist::components::plug(&client, &[kist::components::PORTABLE])?;
/// std::fs::write("my-client+kist.wasm", composed)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Fails with [`Error::Component`](crate::Error::Component) when a
/// component cannot be read or nothing could be plugged. Needs the
/// `compose` feature.
#[cfg(feature = "compose")]
pub fn plug(socket: &[u8], plugs: &[&[u8]]) -> crate::Result<Vec<u8>> {
    crate::plug::plug(socket, plugs).map_err(|e| crate::Error::Component(format!("{e:#}")))
}
