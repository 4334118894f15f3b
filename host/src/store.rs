//! [`Store`]: a kist content store on a directory, run by the sandboxed
//! component.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bindings::kist::content::caller::{Grant, Identity};
use crate::capabilities::{CapabilitiesCtx, FetchPolicy, ObjectBucket};
use crate::error::{Error, Result};
use crate::reader::{Reader, Verifier};
use crate::runtime::Runtime;
use crate::session::{GuestResult, Session};
use crate::walk::Walk;
use crate::writer::Writer;
use crate::{BlobInfo, IngestStatus, Label, PutRequest, WriterOptions};

/// Largest `put` done in one call into the component (its WIT limit).
pub(crate) const MAX_PUT: u64 = 16 << 20;

/// Blobs up to this size are read in one call rather than streamed.
const SMALL_BLOB: u64 = 1 << 20;

/// Idle instances kept for reuse; more are created on demand.
const MAX_IDLE: usize = 8;

/// The holder of what a handle stores when none is named.
const DEFAULT_HOLDER: &str = "default";
/// The holder of a [`Store::granted`] handle: one that holds nothing, so
/// the handle sees only what its grants show it.
const REGISTRY_CLIENT: &str = "registry-client";

/// Labels as the WIT list: `kist::labels(&[("app", "demo")])`.
pub fn labels(labels: &[(&str, &str)]) -> Vec<Label> {
    labels
        .iter()
        .map(|(k, v)| Label {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// The time the component sees, for [`StoreBuilder::clock`].
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Limits for the component; see [`StoreBuilder`].
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) memory_limit: usize,
    pub(crate) call_timeout: Duration,
    pub(crate) clock: Option<Clock>,
    pub(crate) fetch: FetchPolicy,
    pub(crate) direct_io: bool,
}

/// Configures and opens a [`Store`].
///
/// ```no_run
/// # fn main() -> Result<(), kist::Error> {
/// use std::time::Duration;
/// let store = kist::Store::builder("/var/lib/kist")
///     .memory_limit(64 << 20)
///     .call_timeout(Duration::from_secs(10))
///     .open()?;
/// # Ok(()) }
/// ```
pub struct StoreBuilder {
    root: PathBuf,
    options: Options,
    component: Option<Vec<u8>>,
    objects: Option<ObjectBucket>,
    create: bool,
}

impl StoreBuilder {
    /// Caps the component's linear memory (default 512 MiB). A guest that
    /// needs more traps, and the call fails with [`Error::Component`].
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.options.memory_limit = bytes;
        self
    }

    /// Interrupts a call into the component that runs this long (default
    /// 120 s) without asking the host for anything: a runaway loop; it
    /// fails with [`Error::Timeout`]. A call that keeps working (reading or
    /// writing files, hashing, taking locks) gets another period each
    /// time, so slow work on a busy machine is never cut. Also the longest
    /// one lock wait may last.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.options.call_timeout = timeout;
        self
    }

    /// Runs `wasm`, another build of a component of the `store-component`
    /// world (for example a newer kist, or one of your own), in the same
    /// sandbox instead of the component built into this crate. It is
    /// compiled once per process (and cached on disk like the built-in
    /// one); one that does not fit the world fails with
    /// [`Error::Component`] here.
    pub fn component(mut self, wasm: impl Into<Vec<u8>>) -> Self {
        self.component = Some(wasm.into());
        self
    }

    /// Makes the component see `clock`'s time instead of the system's:
    /// what TTLs, lease expiries and record times are measured by. For
    /// tests and simulations (advance the clock to expire things); every
    /// handle and process on one store should agree on the time.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.options.clock = Some(clock);
        self
    }

    /// Lets the component download from the origins `policy` allows
    /// (desired-state layers, [`Store::layers`]); by default it reaches
    /// no network at all.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = kist::FetchPolicy::default().allow("https://layers.example.com")?;
    /// let store = kist::Store::builder("/var/lib/kist").fetch_policy(policy).open()?;
    /// # Ok(()) }
    /// ```
    pub fn fetch_policy(mut self, policy: FetchPolicy) -> Self {
        self.options.fetch = policy;
        self
    }

    /// Gives the component `bucket`, an S3 bucket and prefix, through the
    /// `objects` capability; by default it has none. The credentials stay
    /// in this process: the component names objects by keys under the
    /// prefix and nothing else.
    ///
    /// Every blob the store stores then goes up as the object
    /// `blobs/<alg>/<hex>` before it is visible (once: a blob another
    /// store on the prefix put there is not sent again), and
    /// [`Store::hold`] fetches what this store lacks from there: stores
    /// in several directories (nodes) on one prefix share their blobs.
    /// Everything else (holds, labels, tags, leases) is still each
    /// directory's own.
    ///
    /// With the `s3` feature:
    ///
    /// ```no_run
    /// # #[cfg(feature = "s3")]
    /// # fn main() -> Result<(), kist::Error> {
    /// let bucket = kist::ObjectBucket::from_env("s3://registry/kist")?;
    /// let store = kist::Store::builder("/var/lib/kist").object_bucket(bucket).open()?;
    /// # Ok(()) }
    /// # #[cfg(not(feature = "s3"))]
    /// # fn main() {}
    /// ```
    pub fn object_bucket(mut self, bucket: ObjectBucket) -> Self {
        self.objects = Some(bucket);
        self
    }

    /// With `false`, large writes (a [`Writer`]'s, and
    /// [`Writer::write_from_file`]) go through the page cache instead of
    /// straight to the disk with direct I/O. Direct I/O is the default: it
    /// ingests near the disk's speed and leaves the page cache to what is
    /// already there, but a blob read right after its ingest then comes
    /// from the disk (about 0.8× the speed of a read from the cache here).
    /// Turn it off when most blobs are read as soon as they are stored
    /// (layers unpacked right after a pull) and ingest speed matters less.
    /// Filesystems that refuse direct I/O (tmpfs, some overlays) always
    /// get buffered writes.
    pub fn direct_io(mut self, direct: bool) -> Self {
        self.options.direct_io = direct;
        self
    }

    /// With `false`, [`open`](Self::open) fails with [`Error::NotFound`]
    /// instead of creating a store where there is none: the directory
    /// must exist and be a store (have `oci-layout`) or be empty. For
    /// tools that only read, so a mistyped path creates nothing. Default
    /// `true`.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Opens the store, creating its directory if needed (the component
    /// writes the OCI layout files on first use).
    pub fn open(self) -> Result<Store> {
        let at = |e: std::io::Error| match Error::from(e) {
            Error::Io(m) => Error::Io(format!("{}: {m}", self.root.display())),
            other => other,
        };
        if self.root.exists() && !self.root.is_dir() {
            return Err(Error::Io(format!(
                "{}: not a directory",
                self.root.display()
            )));
        }
        if self.create {
            std::fs::create_dir_all(&self.root).map_err(at)?;
        } else if !self.root.join("oci-layout").is_file() && !is_empty_dir(&self.root) {
            return Err(Error::NotFound);
        }
        let root = self.root.canonicalize().map_err(at)?;
        let shared = Arc::new(Shared {
            caps: Arc::new(
                CapabilitiesCtx::new(&root)?
                    .objects(self.objects)
                    .max_lock_wait(self.options.call_timeout)
                    .fetch_policy(self.options.fetch.clone())
                    .direct_io(self.options.direct_io),
            ),
            root,
            runtime: match &self.component {
                Some(wasm) => Runtime::for_component(wasm)?,
                None => Runtime::embedded()?,
            },
            options: self.options,
            idle: Mutex::new(Vec::new()),
        });
        // The component lays out a new store on its first call.
        Ok(Store {
            shared: Scoped {
                shared,
                identity: Identity {
                    holder: DEFAULT_HOLDER.to_owned(),
                    confined: false,
                    repositories: None,
                    within: Vec::new(),
                },
            },
            holder: None,
        })
    }
}

/// What every handle on one store shares.
pub(crate) struct Shared {
    pub(crate) root: PathBuf,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) caps: Arc<CapabilitiesCtx>,
    pub(crate) options: Options,
    idle: Mutex<Vec<Session>>,
}

impl Shared {
    /// An instance to call into: an idle one, or a new one.
    fn session(self: &Arc<Self>) -> Result<Session> {
        let idle = self.idle.lock().expect("pool lock").pop();
        idle.map_or_else(|| Session::new(self), Ok)
    }

    /// Returns an instance for reuse, unless it trapped.
    fn recycle(&self, session: Session) {
        let mut idle = self.idle.lock().expect("pool lock");
        if session.healthy() && idle.len() < MAX_IDLE {
            idle.push(session);
        }
    }
}

/// The store as one handle calls it: the state every handle shares, and
/// the identity its calls carry (the `caller` capability answers it to
/// the component, which checks every operation against it).
#[derive(Clone)]
pub(crate) struct Scoped {
    shared: Arc<Shared>,
    identity: Identity,
}

impl std::ops::Deref for Scoped {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Scoped {
    /// An instance whose calls carry this handle's identity; resources made
    /// on it (readers, writers, walks) keep it for their life.
    pub(crate) fn session(&self) -> Result<Session> {
        let mut session = self.shared.session()?;
        session.store.data_mut().identity = self.identity.clone();
        Ok(session)
    }

    /// Who this handle's calls are for.
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Returns an instance for reuse, unless it trapped.
    pub(crate) fn recycle(&self, session: Session) {
        self.shared.recycle(session);
    }

    /// Runs one call on a pooled instance.
    pub(crate) fn call<R>(
        &self,
        f: impl FnOnce(
            &crate::bindings::StoreCore,
            &mut wasmtime::Store<crate::ctx::KistCtx>,
        ) -> GuestResult<R>,
    ) -> Result<R> {
        let mut session = self.session()?;
        let result = session.call(f);
        self.recycle(session);
        result
    }
}

/// A content-addressed store on a directory, laid out as an OCI image
/// layout (`blobs/<alg>/<hex>`), with containerd's content-store semantics:
/// resumable, verified ingests; labels; filters.
///
/// All storage logic runs in a WebAssembly component that sees only the
/// store directory. A `Store` is cheap to clone and can be used from many
/// threads; writers are exclusive per ref across threads and processes.
///
/// What a `Store` writes is held by its holder (`default`, unless
/// [`as_holder`](Store::as_holder) names another) and kept until that
/// holder releases it ([`delete`](Store::delete)) and a collection finds
/// nothing else needs it (see [`Retention`](crate::Retention)).
///
/// ```no_run
/// # fn main() -> Result<(), kist::Error> {
/// let store = kist::Store::open("/tmp/my-store")?;
/// let digest = store.put(b"hello")?;
/// assert_eq!(store.get(&digest)?, b"hello");
/// assert_eq!(store.info(&digest)?.size, 5);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    /// The store, and the identity this handle's calls carry.
    pub(crate) shared: Scoped,
    /// The holder this handle names in calls that take one; `None`: the
    /// identity's.
    pub(crate) holder: Option<String>,
}

impl Store {
    /// Opens (or creates) the store at `root` with default limits.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::builder(root).open()
    }

    /// Opens the store at `root` if there is one: [`Error::NotFound`]
    /// otherwise, and nothing is created.
    pub fn open_existing(root: impl AsRef<Path>) -> Result<Self> {
        Self::builder(root).create(false).open()
    }

    /// A builder for a store at `root` with custom limits.
    pub fn builder(root: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder {
            root: root.as_ref().to_path_buf(),
            options: Options {
                memory_limit: 512 << 20,
                call_timeout: Duration::from_secs(120),
                clock: None,
                fetch: FetchPolicy::default(),
                direct_io: true,
            },
            component: None,
            objects: None,
            create: true,
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// A handle on the same store that writes and releases for `holder`
    /// (`containerd`, `registry/library/alpine`, `lease/<id>`, ...): what
    /// it stores is held by `holder`, and [`delete`](Store::delete)
    /// releases `holder`'s hold. Names are checked when first used.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), kist::Error> {
    /// let store = kist::Store::open("/tmp/my-store")?;
    /// let layers = store.as_holder("layers");
    /// let d = layers.put(b"a layer")?;
    /// assert!(store.info(&d)?.holders.contains(&"layers".to_owned()));
    /// layers.delete(&d)?; // released: cached until a collection
    /// # Ok(()) }
    /// ```
    ///
    /// The handle may still see and change the whole store, as this one
    /// can; [`confined_to`](Store::confined_to) makes one that cannot. On
    /// a confined handle this names `holder` in its calls but stays
    /// confined: the component refuses a holder other than its own.
    pub fn as_holder(&self, holder: &str) -> Store {
        let mut shared = self.shared.clone();
        if !shared.identity.confined {
            shared.identity.holder = holder.to_owned();
        }
        Store {
            shared,
            holder: Some(holder.to_owned()),
        }
    }

    /// A handle confined to `holder`, for a front end that serves one
    /// client (kist's containerd plugin is confined to `containerd`). The
    /// component checks every call it makes: it sees only the blobs
    /// `holder` holds or reaches through their references, and the
    /// snapshots and ingests `holder` holds; it changes only those, its
    /// labels are its own, it names no other holder, and what administers
    /// the whole store (settings, quotas, collections, purges, checks,
    /// leases, artifacts, the registry) fails with [`Error::Denied`].
    /// Anything else is [`Error::NotFound`], as if it were not stored. The
    /// handles made from it ([`as_holder`](Store::as_holder),
    /// [`snapshots`](Store::snapshots), readers, writers) stay confined.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), kist::Error> {
    /// let store = kist::Store::open("/tmp/my-store")?;
    /// let mine = store.put(b"the administrator's")?;
    /// let containerd = store.confined_to("containerd");
    /// let theirs = containerd.put(b"containerd's")?;
    /// assert!(matches!(containerd.info(&mine), Err(kist::Error::NotFound)));
    /// assert!(matches!(containerd.purge(&theirs), Err(kist::Error::Denied(_))));
    /// # Ok(()) }
    /// ```
    pub fn confined_to(&self, holder: &str) -> Store {
        let mut shared = self.shared.clone();
        if !shared.identity.confined {
            shared.identity = Identity {
                holder: holder.to_owned(),
                confined: true,
                repositories: None,
                within: Vec::new(),
            };
        }
        Store {
            shared,
            holder: Some(holder.to_owned()),
        }
    }

    /// A handle for a registry client the front end authenticated, that
    /// may do in the registry's repositories only what `grants` allow (see
    /// [`Grant`]; the longest matching pattern decides) and nothing else:
    /// it is confined to the holder `registry-client`, which holds
    /// nothing, and sees the blobs of the repositories it may pull from.
    /// The component checks every call, so a front end that forgets a
    /// check is still refused ([`Error::Denied`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), kist::Error> {
    /// use kist::{Actions, Grant};
    /// let store = kist::Store::open("/tmp/my-store")?;
    /// let reader = store.granted(vec![Grant {
    ///     pattern: "library/**".to_owned(),
    ///     actions: Actions::PULL,
    /// }]);
    /// let pulled = reader.registry().tags("library/alpine", None, None);
    /// assert!(matches!(
    ///     reader.registry().delete_tag("library/alpine", "3.20"),
    ///     Err(kist::Error::Denied(_))
    /// ));
    /// # Ok(()) }
    /// ```
    ///
    /// Granting a handle that has grants narrows it: both must allow an
    /// operation (how a bearer token's claims are held to an access
    /// policy). Any other confined handle stays as it is: grants never
    /// widen what a handle may see.
    pub fn granted(&self, grants: Vec<Grant>) -> Store {
        let mut shared = self.shared.clone();
        let identity = &mut shared.identity;
        if identity.repositories.is_some() {
            identity.within.push(grants);
        } else if !identity.confined {
            *identity = Identity {
                holder: REGISTRY_CLIENT.to_owned(),
                confined: true,
                repositories: Some(grants),
                within: Vec::new(),
            };
            return Store {
                shared,
                holder: Some(REGISTRY_CLIENT.to_owned()),
            };
        }
        Store {
            shared,
            holder: self.holder.clone(),
        }
    }

    /// Whether this handle is confined ([`confined_to`](Store::confined_to)).
    pub fn is_confined(&self) -> bool {
        self.shared.identity.confined
    }

    /// A handle that holds what it writes by the lease `id` (see
    /// [`Store::leases`]).
    pub fn with_lease(&self, id: &str) -> Store {
        self.as_holder(&format!("lease/{id}"))
    }

    /// This handle's holder: `default` unless [`as_holder`](Store::as_holder)
    /// named another.
    pub fn holder(&self) -> &str {
        self.holder.as_deref().unwrap_or(DEFAULT_HOLDER)
    }

    /// Describes the blob `digest`.
    pub fn info(&self, digest: &str) -> Result<BlobInfo> {
        self.shared
            .call(|api, s| api.kist_content_store().call_info(s, &digest.to_owned()))
    }

    /// Changes labels of `info.digest`: with no `fieldpaths` its labels
    /// become `info.labels`; `labels.<key>` sets or (if absent from
    /// `info.labels`) removes one key. Returns the updated info.
    pub fn update(&self, info: &BlobInfo, fieldpaths: &[&str]) -> Result<BlobInfo> {
        let paths: Vec<String> = fieldpaths.iter().map(|p| p.to_string()).collect();
        self.shared
            .call(|api, s| api.kist_content_store().call_update(s, info, &paths))
    }

    /// Sets (`Some`) or removes (`None`) labels of `digest`, leaving others.
    /// When `changes` names a key twice, the last change wins.
    pub fn label(&self, digest: &str, changes: &[(&str, Option<&str>)]) -> Result<BlobInfo> {
        let last: std::collections::BTreeMap<&str, Option<&str>> =
            changes.iter().copied().collect();
        // `update` reads only the digest and labels of the info; not asking
        // for the blob's info first lets a damaged label file be rewritten.
        let zero = crate::Datetime {
            seconds: 0,
            nanoseconds: 0,
        };
        let info = BlobInfo {
            digest: digest.to_owned(),
            size: 0,
            created_at: zero,
            updated_at: zero,
            holders: Vec::new(),
            graces: Vec::new(),
            labels: last
                .iter()
                .filter_map(|(k, v)| {
                    v.map(|v| Label {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                })
                .collect(),
        };
        let paths: Vec<String> = last.keys().map(|k| format!("labels.{k}")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.update(&info, &paths)
    }

    /// Releases this handle's holder's hold on `digest`; returns who still
    /// holds it. When nobody does, the blob is no longer shown, loses its
    /// labels and stays cached until a collection removes it (after the
    /// cache TTL). [`Error::NotFound`] if the holder did not hold it.
    pub fn delete(&self, digest: &str) -> Result<Vec<String>> {
        let holder = self.holder.clone();
        self.shared.call(|api, s| {
            api.kist_content_store()
                .call_delete(s, &digest.to_owned(), holder.as_ref())
        })
    }

    /// Makes this handle's holder hold the stored blob `digest`; a cached
    /// one is shown again, without sending its bytes. A store with an
    /// [`object_bucket`](StoreBuilder::object_bucket) that lacks the blob
    /// fetches it from the bucket, where every store on it puts what it
    /// stores, checked against the digest ([`Error::Corrupt`] if the
    /// bucket's copy is not).
    pub fn hold(&self, digest: &str) -> Result<BlobInfo> {
        let holder = self.holder().to_owned();
        self.shared.call(|api, s| {
            api.kist_content_store()
                .call_hold(s, &digest.to_owned(), &holder)
        })
    }

    /// Removes the blob `digest` now, whoever holds it (for takedowns);
    /// returns the bytes freed. Never what [`delete`](Store::delete) does.
    /// On a bucket its object goes first, so no store fetches it again;
    /// other stores that fetched it keep their copies until purged there.
    pub fn purge(&self, digest: &str) -> Result<u64> {
        self.shared
            .call(|api, s| api.kist_content_store().call_purge(s, &digest.to_owned()))
    }

    /// Iterates over the held blobs matching any of `filters` (containerd's
    /// syntax, e.g. `labels.app==web,size!=0`, `holders.containerd`); no
    /// filters lists all.
    pub fn walk(&self, filters: &[&str]) -> Result<Walk> {
        Walk::new(&self.shared, filters, false)
    }

    /// Iterates over the cached blobs (released by every holder, still
    /// stored) matching any of `filters`.
    pub fn walk_cached(&self, filters: &[&str]) -> Result<Walk> {
        Walk::new(&self.shared, filters, true)
    }

    /// Checks the whole store: re-hashes every blob against its name and
    /// checks label files, ingests and the OCI layout files (see
    /// [`Check`](crate::Check)). With `repair`, fixes what can be fixed
    /// safely as it goes: damaged blobs and labels are moved to
    /// `quarantine/`, never deleted; leftovers of interrupted writes are
    /// removed. Safe to run while the store is in use.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), kist::Error> {
    /// let store = kist::Store::open("/tmp/kist-demo")?;
    /// for problem in store.check(false)? {
    ///     let problem = problem?;
    ///     println!("{:?} {}: {}", problem.kind, problem.path, problem.detail);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn check(&self, repair: bool) -> Result<crate::Check> {
        crate::Check::new(&self.shared, repair)
    }

    /// Opens the blob `digest` for reading ([`std::io::Read`] + [`std::io::Seek`]).
    pub fn reader(&self, digest: &str) -> Result<Reader> {
        Reader::open(&self.shared, digest)
    }

    /// Reads the whole blob `digest` into memory, checked against its
    /// digest: [`Error::Corrupt`] if the stored bytes are damaged.
    pub fn get(&self, digest: &str) -> Result<Vec<u8>> {
        // A small blob in one call; a stream only pays off for large ones.
        let whole = self.shared.call(|api, s| {
            api.kist_content_store()
                .call_read_blob(s, &digest.to_owned(), SMALL_BLOB)
        });
        match whole {
            Ok(bytes) => {
                Verifier::check_whole(digest, &bytes)?;
                return Ok(bytes);
            }
            Err(Error::TooLarge(_)) => {}
            Err(e) => return Err(e),
        }
        let mut reader = self.reader(digest)?;
        let mut out = Vec::with_capacity(reader.size() as usize);
        reader.copy_verified_to(&mut out)?;
        Ok(out)
    }

    /// Stores `bytes` and returns their sha256 digest; storing content that
    /// is already there succeeds. An interrupted `put` leaves nothing
    /// behind.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        self.put_with(bytes, None, &[])
    }

    /// Stores `bytes` with `labels`, checked against `expected` if given
    /// (whose algorithm is then used). Stored content succeeds and keeps
    /// its labels. Up to 16 MiB this is one call into the component with no
    /// ingest; larger data goes through a writer under a one-off ref.
    pub fn put_with(
        &self,
        bytes: &[u8],
        expected: Option<&str>,
        labels: &[(&str, &str)],
    ) -> Result<String> {
        if bytes.len() as u64 <= MAX_PUT {
            let request = PutRequest {
                data: bytes.to_vec(),
                expected: expected.map(str::to_owned),
                labels: crate::labels(labels),
                holder: self.holder.clone(),
            };
            return self
                .shared
                .call(|api, s| api.kist_content_ingester().call_put(s, &request));
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let reference = format!(
            "put-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut writer = match self.writer(&reference, Some(bytes.len() as u64), expected) {
            Err(Error::AlreadyExists) => {
                return Ok(expected.expect("only an expected digest exists").to_owned());
            }
            other => other?,
        };
        let result = writer.write_all(bytes).and_then(|()| {
            let digest = writer.digest()?;
            match writer.commit(None, None, labels) {
                Ok(_) | Err(Error::AlreadyExists) => Ok(digest),
                Err(e) => Err(e),
            }
        });
        if result.is_err() {
            let _ = self.abort(&reference);
        }
        result
    }

    /// Opens (or resumes) the ingest `reference` for writing. `expected_size`
    /// and `expected` are recorded and checked at commit.
    pub fn writer(
        &self,
        reference: &str,
        expected_size: Option<u64>,
        expected: Option<&str>,
    ) -> Result<Writer> {
        let options = WriterOptions {
            expected_size,
            expected: expected.map(str::to_owned),
            ..Default::default()
        };
        self.writer_with(reference, &options)
    }

    /// Opens (or resumes) the ingest `reference` with everything an ingest
    /// records: the size and digest checked at commit and the labels its
    /// blob gets (checked now, so a bad one fails before any data is sent).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), kist::Error> {
    /// let store = kist::Store::open("/tmp/my-store")?;
    /// let options = kist::WriterOptions {
    ///     expected_size: Some(5),
    ///     labels: kist::labels(&[("app", "demo")]),
    ///     ..Default::default()
    /// };
    /// let mut w = store.writer_with("upload-2", &options)?;
    /// w.write_all(b"hello")?;
    /// w.commit(None, None, &[])?;
    /// # Ok(()) }
    /// ```
    pub fn writer_with(&self, reference: &str, options: &WriterOptions) -> Result<Writer> {
        if options.holder.is_none() && self.holder.is_some() {
            let options = WriterOptions {
                holder: self.holder.clone(),
                ..options.clone()
            };
            return Writer::open(&self.shared, reference, &options);
        }
        Writer::open(&self.shared, reference, options)
    }

    /// The state of the ingest `reference`.
    pub fn status(&self, reference: &str) -> Result<IngestStatus> {
        self.shared
            .call(|api, s| api.kist_content_ingester().call_status(s, reference))
    }

    /// The ingests matching any of `filters` (fields `ref`, `offset`,
    /// `total`, `expected`).
    pub fn list_statuses(&self, filters: &[&str]) -> Result<Vec<IngestStatus>> {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        self.shared
            .call(|api, s| api.kist_content_ingester().call_list_statuses(s, &filters))
    }

    /// Removes the ingest `reference` and its data.
    pub fn abort(&self, reference: &str) -> Result<()> {
        self.shared
            .call(|api, s| api.kist_content_ingester().call_abort(s, reference))
    }
}

impl Default for WriterOptions {
    /// No declared size, digest or labels; the handle's holder.
    fn default() -> Self {
        Self {
            expected_size: None,
            expected: None,
            labels: Vec::new(),
            holder: None,
        }
    }
}

/// Whether `dir` is an existing directory with nothing in it but what
/// opening a store makes (`locks/`).
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .is_ok_and(|mut entries| entries.all(|e| e.is_ok_and(|e| e.file_name() == "locks")))
}
