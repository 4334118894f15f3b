//! kist: a content-addressed store that runs as a sandboxed WebAssembly
//! component.
//!
//! Blobs are stored by digest in an OCI image layout on a directory, with
//! containerd's content-store contract: resumable ingests that are checked
//! (size and digest) and published atomically, one writer per ref across
//! processes, labels, and filters. All of that logic runs in the kist
//! component, which sees nothing but the store directory; this crate loads
//! it with wasmtime and supplies native hashing and locking.
//!
//! ```no_run
//! # fn main() -> Result<(), kist::Error> {
//! let store = kist::Store::open("/tmp/kist-demo")?;
//!
//! // Small blobs in one call.
//! let digest = store.put(b"hello world")?;
//! assert_eq!(store.get(&digest)?, b"hello world");
//!
//! // Large or resumable ones through a writer named by a ref.
//! let mut writer = store.writer("upload-1", None, None)?;
//! std::io::copy(&mut std::fs::File::open("/etc/hostname")?, &mut writer)?;
//! let digest = writer.commit(None, None, &[("source", "hostname")])?;
//!
//! for info in store.walk(&["labels.source==hostname"])? {
//!     println!("{} {}", info?.digest, digest);
//! }
//! # Ok(()) }
//! ```
//!
//! Compiled component code is cached in `$KIST_CACHE_DIR` (default
//! `~/.cache/kist`), so opening a store takes milliseconds.
//!
//! This crate is the embedding library only. The `kist` command is the
//! `kist-cli` crate and `kist serve` the `kist-http` crate, both thin
//! clients of this one. The `compose` feature adds
//! `components::plug`, to compose components at run time.

#![deny(missing_docs)]

mod batch;
mod bindings;
pub mod capabilities;
mod chunks;
pub mod components;
mod ctx;
mod error;
mod fsck;
mod held;
mod layers;
mod leases;
pub mod mount;
mod mounted;
#[cfg(feature = "compose")]
mod plug;
mod read_ahead;
mod reader;
mod registry;
mod retention;
mod runtime;
mod session;
mod snapshots;
mod store;
mod storer;
mod walk;
mod writer;

pub use bindings::exports::kist::content::fsck::{Problem, ProblemKind};
pub use bindings::exports::kist::content::ingester::{Durability, PutRequest, WriterOptions};
pub use bindings::exports::kist::content::layers::{
    LayerAction, LayerDesc, LayerError, LayerInfo, LayerResult, LayerState,
    Options as LayerOptions, Progress as LayerProgress,
};
pub use bindings::exports::kist::content::leases::{Lease, LeaseResource};
pub use bindings::exports::kist::content::registry::{
    Descriptor, Manifest, Page, Pushed, ReferrersPage, RegistryError,
};
pub use bindings::exports::kist::content::retention::{
    HolderUsage, Limit, Quota, QuotaUsage, Removed, RemovedKind, Settings, SpaceUsage,
};
pub use bindings::exports::kist::content::snapshots::{
    DiskUsage, Info as SnapshotInfo, Kind as SnapshotKind, Layer,
};
pub use bindings::exports::kist::content::storer::{
    ArchiveOptions, Artifact, ExtractOptions, Object, RetentionPolicy,
};
pub use bindings::exports::kist::content::types::{
    BlobInfo, Error as StoreError, IngestStatus, Label, LayerTree,
};
pub use bindings::kist::content::caller::{Actions, Grant};
pub use capabilities::{BlobTap, FetchPolicy, ObjectBucket};
pub use error::{Error, Result};
pub use fsck::Check;
pub use layers::Layers;
pub use leases::Leases;
pub use reader::{Reader, Verifier};
pub use registry::Registry;
pub use retention::{Collection, Retention};
pub use snapshots::{DEFAULT_MAX_UNPACKED, Snapshots};
pub use store::{Clock, Store, StoreBuilder, labels};
pub use storer::{ArtifactLock, DEFAULT_MAX_SIZE, Source, Storer};
pub use walk::Walk;
pub use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;
pub use writer::Writer;

/// Converts a WIT `datetime` to a [`std::time::SystemTime`].
pub fn system_time(t: Datetime) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::new(t.seconds, t.nanoseconds)
}

/// Compiles and runs the README's Rust examples as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
