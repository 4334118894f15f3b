//! [`Storer`]: artifacts owned by objects (Flux's artifact storage), kept
//! by the component in the store. See `wit/storer.wit` for the contract.
//!
//! Directories reach the component only as a descriptor for that one
//! directory, lent for the duration of the call.

use std::path::Path;
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, Dir};
use wasmtime_wasi::{FsPerms, OpenMode};

use crate::bindings::exports::kist::content::storer::Source as WitSource;
use crate::error::{Error, Result};
use crate::held::Held;
use crate::store::{Scoped, labels};
use crate::{ArchiveOptions, Artifact, ExtractOptions, Object, Reader, RetentionPolicy, Store};

/// Default cap on the files archived or extracted in one call: 1 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            ignore: Vec::new(),
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            whiteouts: false,
        }
    }
}

impl Object {
    /// The object `kind`/`namespace`/`name` with id `uid`.
    pub fn new(kind: &str, namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }
}

impl Artifact {
    /// Where `kist serve --hostname hostname` serves it.
    pub fn url(&self, hostname: &str) -> String {
        format!("http://{hostname}/{}", self.path)
    }
}

/// What an artifact is built from.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// A directory, archived deterministically as a `.tar.gz`.
    Directory(&'a Path, ArchiveOptions),
    /// A regular file, stored as is.
    File(&'a Path),
    /// A blob already in the store.
    Blob(&'a str),
}

/// Artifacts in a store, from [`Store::storer`].
///
/// ```no_run
/// # fn main() -> Result<(), kist::Error> {
/// use kist::{ArchiveOptions, Object, RetentionPolicy, Source};
/// let storer = kist::Store::open("/tmp/kist-demo")?.storer();
/// let repo = Object::new("GitRepository", "flux-system", "podinfo", "6f1c...");
/// let artifact = storer.reconcile_artifact(
///     &repo,
///     "main@sha1:0123abc",
///     "0123abc.tar.gz",
///     Source::Directory("/tmp/checkout".as_ref(), ArchiveOptions::default()),
///     &[],
/// )?;
/// println!("{} {}", artifact.url("source-controller"), artifact.digest);
/// storer.reconcile_storage(&repo, RetentionPolicy { max_count: 2, ttl_seconds: Some(3600) })?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Storer {
    shared: Scoped,
}

/// A held artifact lock, from [`Storer::lock`]; dropping it releases it.
pub struct ArtifactLock {
    _held: Held,
}

impl Store {
    /// The artifacts kept in this store.
    pub fn storer(&self) -> Storer {
        Storer {
            shared: self.shared.clone(),
        }
    }
}

/// A [`Source`] with its directory taken out (it is lent separately).
enum Plan {
    Directory(ArchiveOptions),
    File(String),
    Blob(String),
}

/// A directory lent to the component for one call.
pub(crate) struct Lent {
    path: std::path::PathBuf,
    perms: FsPerms,
    mode: OpenMode,
}

impl Lent {
    pub(crate) fn read(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            perms: FsPerms::ReadOnly,
            mode: OpenMode::READ,
        }
    }

    fn write(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            perms: FsPerms::ReadWrite,
            mode: OpenMode::READ | OpenMode::WRITE,
        }
    }

    /// Opens the directory as a `wasi:filesystem` descriptor in `store`'s
    /// resource table.
    pub(crate) fn open(
        &self,
        store: &mut wasmtime::Store<crate::ctx::KistCtx>,
    ) -> Result<Resource<Descriptor>> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.path.display())))?;
        if !file.metadata()?.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{}: not a directory",
                self.path.display()
            )));
        }
        let dir = Dir::new(file, self.perms, self.mode, true);
        store
            .data_mut()
            .table
            .push(Descriptor::Dir(dir))
            .map_err(|e| Error::Component(e.to_string()))
    }
}

impl Storer {
    /// Runs `f` with `lent` (if any) open as a descriptor in the instance,
    /// and closes it afterwards whatever happened.
    fn with_dir<R>(
        &self,
        lent: Option<Lent>,
        f: impl FnOnce(
            &crate::bindings::StoreCore,
            &mut wasmtime::Store<crate::ctx::KistCtx>,
            Option<Resource<Descriptor>>,
        ) -> crate::session::GuestResult<R>,
    ) -> Result<R> {
        let mut session = self.shared.session()?;
        let dir = match lent.map(|l| l.open(&mut session.store)).transpose() {
            Ok(dir) => dir,
            Err(e) => {
                self.shared.recycle(session);
                return Err(e);
            }
        };
        let rep = dir.as_ref().map(Resource::rep);
        let result = session.call(|api, s| f(api, s, dir));
        if let Some(rep) = rep {
            let table = &mut session.store.data_mut().table;
            let _ = table.delete(Resource::<Descriptor>::new_own(rep));
        }
        self.shared.recycle(session);
        result
    }

    /// Records `filename` of `object` for `revision`, built from `source`,
    /// as the object's current artifact; a no-op when the current
    /// artifact already has this revision and verifies.
    pub fn reconcile_artifact(
        &self,
        object: &Object,
        revision: &str,
        filename: &str,
        source: Source<'_>,
        metadata: &[(&str, &str)],
    ) -> Result<Artifact> {
        let metadata = labels(metadata);
        let (lent, plan) = match source {
            Source::Directory(dir, options) => (Some(Lent::read(dir)), Plan::Directory(options)),
            Source::File(path) => {
                let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                    Error::InvalidArgument(format!("{}: not a file name", path.display()))
                })?;
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                let lent = Lent::read(parent.unwrap_or(Path::new(".")));
                (Some(lent), Plan::File(name.to_owned()))
            }
            Source::Blob(digest) => (None, Plan::Blob(digest.to_owned())),
        };
        self.with_dir(lent, |api, s, dir| {
            let source = match (plan, dir) {
                (Plan::Directory(options), Some(d)) => WitSource::Directory((d, options)),
                (Plan::File(name), Some(d)) => WitSource::File((d, name)),
                (Plan::Blob(digest), _) => WitSource::Blob(digest),
                _ => unreachable!("a directory is lent for directory and file sources"),
            };
            api.kist_content_storer()
                .call_reconcile_artifact(s, object, revision, filename, &source, &metadata)
        })
    }

    /// Removes `object`'s artifacts that `policy` does not keep and those
    /// that no longer verify; returns them.
    pub fn reconcile_storage(
        &self,
        object: &Object,
        policy: RetentionPolicy,
    ) -> Result<Vec<Artifact>> {
        self.shared.call(|api, s| {
            api.kist_content_storer()
                .call_reconcile_storage(s, object, policy)
        })
    }

    /// Removes every artifact of `object`; returns them.
    pub fn remove_object(&self, object: &Object) -> Result<Vec<Artifact>> {
        self.shared
            .call(|api, s| api.kist_content_storer().call_remove_object(s, object))
    }

    /// Archives `dir` into a blob; returns its digest and size.
    pub fn archive(&self, dir: &Path, options: &ArchiveOptions) -> Result<(String, u64)> {
        self.with_dir(Some(Lent::read(dir)), |api, s, d| {
            api.kist_content_storer()
                .call_archive(s, d.expect("lent"), options)
        })
    }

    /// The artifact at `path` (`<kind>/<namespace>/<name>/<file>`, or the
    /// `latest` alias); `None` if there is none.
    pub fn get(&self, path: &str) -> Result<Option<Artifact>> {
        self.shared
            .call(|api, s| api.kist_content_storer().call_get(s, path))
    }

    /// Whether an artifact is recorded at `path`.
    pub fn exists(&self, path: &str) -> Result<bool> {
        self.get(path).map(|a| a.is_some())
    }

    /// The artifact at `path` and a reader of its bytes.
    pub fn open(&self, path: &str) -> Result<(Artifact, Reader)> {
        let artifact = self.get(path)?.ok_or(Error::NotFound)?;
        let reader = Reader::open(&self.shared, &artifact.digest)?;
        Ok((artifact, reader))
    }

    /// Re-hashes the artifact at `path`: [`Error::FailedPrecondition`] if
    /// its bytes changed.
    pub fn verify(&self, path: &str) -> Result<Artifact> {
        self.shared
            .call(|api, s| api.kist_content_storer().call_verify(s, path))
    }

    /// Artifacts matching any of `filters` (fields `kind`, `namespace`,
    /// `name`, `uid`, `path`, `revision`, `digest`, `size`,
    /// `metadata.<key>`), sorted by path.
    pub fn list(&self, filters: &[&str]) -> Result<Vec<Artifact>> {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        self.shared
            .call(|api, s| api.kist_content_storer().call_list(s, &filters))
    }

    /// Extracts the archive at `path` (only `sub_path` of it, if not
    /// empty) into `dest`, created if missing; returns the bytes written.
    /// A missing artifact is [`Error::NotFound`], and creates nothing.
    pub fn extract(
        &self,
        path: &str,
        sub_path: &str,
        dest: &Path,
        options: &ExtractOptions,
    ) -> Result<u64> {
        self.get(path)?.ok_or(Error::NotFound)?;
        std::fs::create_dir_all(dest)
            .map_err(|e| Error::Io(format!("creating {}: {e}", dest.display())))?;
        self.with_dir(Some(Lent::write(dest)), |api, s, d| {
            api.kist_content_storer()
                .call_extract(s, path, sub_path, d.expect("lent"), *options)
        })
    }

    /// Takes `object`'s artifact lock, waiting up to `timeout` (zero: fail
    /// at once with [`Error::Unavailable`] if it is held).
    pub fn lock(&self, object: &Object, timeout: Duration) -> Result<ArtifactLock> {
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let held = Held::create(&self.shared, |api, s| {
            api.kist_content_storer().call_lock(s, object, ms)
        })?;
        Ok(ArtifactLock { _held: held })
    }
}
