//! The native capabilities the store component imports: `hasher` (SHA-NI
//! hashing, several times faster than in wasm), `locks` (`flock`, which
//! WASI 0.2 lacks), `space` (the store filesystem's size, which WASI 0.2
//! cannot tell), `trees` (owners, modes, xattrs, whiteouts and inode
//! numbers for snapshots, confined to the store's directory), `inflate`
//! (a layer decompressed on another core while the guest unpacks it),
//! `fetch` (HTTP(S) downloads, only from the origins the embedder allows)
//! `copier` (bytes moved between two files the guest holds open, hashed
//! on the way, without passing through the guest), `deflate` (gzip on
//! another core, the same bytes as the portable capabilities make),
//! `patch` (per-file binary deltas with zstd, for delta pulls),
//! `objects` (one bucket and prefix of an S3-compatible object store,
//! for a store kept in object storage) and
//! `caller` (who the call in progress is for, which the component checks
//! every operation against) and `lender` (a blob file the component
//! opened and checked, lent to the host to read or send natively).
//!
//! Another wasmtime embedding supplies them the way wasmtime's WASI crates
//! do: keep a [`CapabilitiesCtx`] in the store data, implement
//! [`CapabilitiesHost`] to lend a [`CapabilitiesView`] of it, and call
//! [`add_to_linker`].

mod caller;
mod copier;
pub(crate) mod deflate;
pub(crate) mod fetch;
pub(crate) mod hasher;
pub(crate) mod inflate;
pub(crate) mod lender;
pub(crate) mod locks;
mod objects;
mod patch;
mod slots;
mod space;
pub(crate) mod trees;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use self::fetch::FetchPolicy;
pub use self::hasher::HashState;
pub use self::lender::Loan;
pub use self::locks::LockGuard;
pub use self::objects::{BlobTap, ObjectBucket};
use crate::bindings::kist::content;
pub use crate::bindings::kist::content::caller::Identity;

/// Most hashers the guests of one store hold at once.
const MAX_HASHERS: usize = 4096;
/// Most lock guards the guests of one store hold at once (each is an open
/// file descriptor).
const MAX_GUARDS: usize = 1024;
/// Most hashing threads for one store; beyond it large updates are hashed
/// inline.
const MAX_HASH_THREADS: usize = 16;
/// Most inflating threads for one store; beyond it `read` says so.
const MAX_INFLATERS: usize = 16;
/// Most compressing threads for one store; beyond it gzip runs inline.
const MAX_COMPRESSORS: usize = 16;

/// State the capabilities need: where lock files live, and the caps on
/// live hashers, guards and hashing threads.
pub struct CapabilitiesCtx {
    root: std::path::PathBuf,
    locks: locks::LockDir,
    trees: trees::TreeRoot,
    hashers: Arc<slots::Counter>,
    guards: Arc<slots::Counter>,
    hash_threads: Arc<slots::Counter>,
    inflaters: Arc<slots::Counter>,
    compressors: Arc<slots::Counter>,
    buffers: copier::Buffers,
    max_lock_wait: Duration,
    fetch: fetch::FetchPolicy,
    objects: Option<ObjectBucket>,
    direct_io: bool,
    revocations: Arc<lender::Revocations>,
}

impl CapabilitiesCtx {
    /// Capabilities for the store rooted at `root`; lock files go in
    /// `root/locks`, which is created if missing.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: root.to_path_buf(),
            locks: locks::LockDir::open(root)?,
            trees: trees::TreeRoot::new(root)?,
            hashers: slots::Counter::new(MAX_HASHERS),
            guards: slots::Counter::new(MAX_GUARDS),
            hash_threads: slots::Counter::new(MAX_HASH_THREADS),
            inflaters: slots::Counter::new(MAX_INFLATERS),
            compressors: slots::Counter::new(MAX_COMPRESSORS),
            buffers: copier::Buffers::default(),
            max_lock_wait: Duration::from_secs(60),
            fetch: fetch::FetchPolicy::default(),
            objects: None,
            direct_io: true,
            revocations: Arc::default(),
        })
    }

    /// Caps how long a guest's `lock` call may wait (default 60 s),
    /// whatever timeout it asks for: host code is not interrupted by
    /// wasmtime's deadlines, so set this to at most your call deadline.
    pub fn max_lock_wait(mut self, wait: Duration) -> Self {
        self.max_lock_wait = wait;
        self
    }

    /// Whether `copier` writes large copies with direct I/O where the
    /// filesystem allows it (default `true`), or through the page cache.
    pub fn direct_io(mut self, direct: bool) -> Self {
        self.direct_io = direct;
        self
    }

    /// Where `fetch` may download from (default: nowhere).
    pub fn fetch_policy(mut self, policy: FetchPolicy) -> Self {
        self.fetch = policy;
        self
    }

    /// The bucket and prefix `objects` reaches (default: none, and every
    /// call answers `unsupported`).
    pub fn objects(mut self, bucket: Option<ObjectBucket>) -> Self {
        self.objects = bucket;
        self
    }
}

/// A borrowed view of the capabilities' state and the store's resource
/// table, through which the host functions run.
pub struct CapabilitiesView<'a> {
    /// The capabilities' state.
    pub ctx: &'a CapabilitiesCtx,
    /// The wasmtime store's resource table (hashers and guards live there).
    pub table: &'a mut ResourceTable,
    /// Who the instance's calls are for: what `caller` answers. Set it
    /// before each call; the component confines a call by it.
    pub identity: &'a Identity,
    /// Where the next download from the start of an object also goes
    /// (`None` for most calls); the download takes it.
    pub tap: &'a mut Option<Box<dyn BlobTap>>,
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

/// Adds `kist:content/hasher`, `kist:content/locks`, `kist:content/space`,
/// `kist:content/trees`, `kist:content/inflate`, `kist:content/fetch`,
/// `kist:content/copier`, `kist:content/deflate`, `kist:content/patch`,
/// `kist:content/objects`, `kist:content/caller` and `kist:content/lender`
/// to `linker`.
pub fn add_to_linker<T: CapabilitiesHost + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    content::hasher::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::locks::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::space::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::trees::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::inflate::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::fetch::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::copier::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::deflate::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::patch::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::objects::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::caller::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    content::lender::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    Ok(())
}
