//! [`Registry`]: the storage side of an OCI registry (distribution-spec
//! v1.1) over a store. The HTTP protocol is `kist serve`'s; what may be
//! stored, and how it is kept, is decided in the component.

use crate::LayerTree;
use crate::bindings::exports::kist::content::registry::{
    Manifest, Page, Pushed, ReferrersPage, RegistryError,
};
use crate::error::{Error, Result};
use crate::session::Session;
use crate::store::{Scoped, Store};
use crate::writer::Writer;

/// A registry's repositories over a store, from [`Store::registry`]. See
/// the `registry` interface in `wit/` for the model: repositories hold
/// what is pushed to them, tags live in `index.json`, uploads are
/// ingests.
///
/// ```no_run
/// # fn main() -> Result<(), kist::Error> {
/// let store = kist::Store::open("/tmp/kist-demo")?;
/// let registry = store.registry();
/// let mut upload = registry.open_upload("library/hello", "upload-1", true)?;
/// upload.write_all(b"{}")?;
/// let config = upload.commit(None, None, &[])?;
/// let manifest = format!(
///     r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
///        "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},
///        "layers":[]}}"#
/// );
/// let pushed = registry.put_manifest(
///     "library/hello",
///     "latest",
///     "application/vnd.oci.image.manifest.v1+json",
///     manifest.as_bytes(),
/// )?;
/// assert_eq!(registry.get_manifest("library/hello", "latest")?.digest, pushed.digest);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Registry {
    shared: Scoped,
}

impl Store {
    /// The registry over this store.
    pub fn registry(&self) -> Registry {
        Registry {
            shared: self.shared.clone(),
        }
    }
}

/// What a registry call returns: a trap, or the WIT result.
type RegistryResult<R> = wasmtime::Result<std::result::Result<R, RegistryError>>;

/// Runs a registry call on `session`: a store failure comes back as the
/// [`Error`] it is, a registry refusal as [`Error::Registry`].
fn call_on<R>(
    session: &mut Session,
    f: impl FnOnce(
        &crate::bindings::StoreCore,
        &mut wasmtime::Store<crate::ctx::KistCtx>,
    ) -> RegistryResult<R>,
) -> Result<R> {
    match session.call(|api, s| f(api, s).map(Ok))? {
        Ok(r) => Ok(r),
        Err(RegistryError::Store(e)) => Err(e.into()),
        Err(e) => Err(Error::Registry(e)),
    }
}

impl Registry {
    fn call<R>(
        &self,
        f: impl FnOnce(
            &crate::bindings::StoreCore,
            &mut wasmtime::Store<crate::ctx::KistCtx>,
        ) -> RegistryResult<R>,
    ) -> Result<R> {
        let mut session = self.shared.session()?;
        let result = call_on(&mut session, f);
        self.shared.recycle(session);
        result
    }

    /// The size of the blob `digest` as `repository` holds it.
    pub fn stat_blob(&self, repository: &str, digest: &str) -> Result<u64> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_stat_blob(s, repository, &digest.to_owned())
        })
    }

    /// [`stat_blob`](Self::stat_blob) that also hands `tap` what the node
    /// downloads of the blob from its bucket meanwhile, as it arrives (a
    /// node without the blob fetches it in this call): a server streams
    /// it to its client instead of waiting for the whole. The tap is
    /// unused when the node has the blob, and gone when the call returns.
    /// What it saw is the blob only if the call succeeds.
    pub fn stat_blob_tapped(
        &self,
        repository: &str,
        digest: &str,
        tap: Box<dyn crate::BlobTap>,
    ) -> Result<u64> {
        self.call(|api, s| {
            s.data_mut().tap = Some(tap);
            let size =
                api.kist_content_registry()
                    .call_stat_blob(&mut *s, repository, &digest.to_owned());
            s.data_mut().tap = None;
            size
        })
    }

    /// Makes `repository` hold `digest` if `from` does; false if not.
    pub fn mount_blob(&self, repository: &str, from: &str, digest: &str) -> Result<bool> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_mount_blob(s, repository, from, &digest.to_owned())
        })
    }

    /// Releases `repository`'s hold on the blob `digest`.
    pub fn delete_blob(&self, repository: &str, digest: &str) -> Result<()> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_delete_blob(s, repository, &digest.to_owned())
        })
    }

    /// Opens the upload `id` into `repository` (a new one if `create`);
    /// its commit stores a blob `repository` holds.
    pub fn open_upload(&self, repository: &str, id: &str, create: bool) -> Result<Writer> {
        Writer::open_with(&self.shared, |session| {
            call_on(session, |api, s| {
                api.kist_content_registry()
                    .call_open_upload(s, repository, id, create)
            })
        })
    }

    /// The offset of the upload `id` of `repository`.
    pub fn upload_offset(&self, repository: &str, id: &str) -> Result<u64> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_upload_offset(s, repository, id)
        })
    }

    /// Cancels the upload `id` of `repository`.
    pub fn cancel_upload(&self, repository: &str, id: &str) -> Result<()> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_cancel_upload(s, repository, id)
        })
    }

    /// Stores a manifest pushed to `repository` as `reference` (a tag or
    /// its digest) with the request's `media_type`.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Pushed> {
        self.put_manifest_tagged(repository, reference, media_type, bytes, &[])
    }

    /// Stores a manifest as [`put_manifest`](Self::put_manifest) does and
    /// points `tags` of `repository` at it too, all or none (a push by
    /// digest with `?tag=`: how a manifest whose digest is not sha256 gets
    /// tags).
    pub fn put_manifest_tagged(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        tags: &[String],
    ) -> Result<Pushed> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_put_manifest(s, repository, reference, media_type, bytes, tags)
        })
    }

    /// Stores a manifest a pull-through mirror fetched from its upstream:
    /// as [`put_manifest_tagged`](Self::put_manifest_tagged), except that
    /// what it references need not be held yet (the mirror fetches blobs
    /// when they are asked for), what the repository held of it before a
    /// collection released it is held again, and its tags are cache
    /// entries: the manifest is kept by itself for `keep` (renewed by
    /// [`keep_manifest`](Self::keep_manifest)), then evicted with what
    /// only it reaches, as cached content is.
    pub fn cache_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        tags: &[String],
        keep: std::time::Duration,
    ) -> Result<Pushed> {
        self.call(|api, s| {
            api.kist_content_registry().call_cache_manifest(
                s,
                repository,
                reference,
                media_type,
                bytes,
                tags,
                keep.as_secs(),
            )
        })
    }

    /// Keeps the mirrored manifest `digest` of `repository` by itself for
    /// at least `keep` from now: a client used it.
    /// [`RegistryError::ManifestUnknown`] if the repository no longer
    /// holds it.
    pub fn keep_manifest(
        &self,
        repository: &str,
        digest: &str,
        keep: std::time::Duration,
    ) -> Result<()> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_keep_manifest(s, repository, digest, keep.as_secs())
        })
    }

    /// The tree of the layer `digest` that `repository` holds (delta
    /// pulls), derived on the first call and then kept.
    pub fn tree_of_layer(&self, repository: &str, digest: &str) -> Result<LayerTree> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_tree_of_layer(s, repository, &digest.to_owned())
        })
    }

    /// The pack of the files of the layer `digest` that none of the layers
    /// `bases` has (all held by `repository`): its digest and size.
    pub fn layer_pack(
        &self,
        repository: &str,
        digest: &str,
        bases: &[String],
    ) -> Result<(String, u64)> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_layer_pack(s, repository, &digest.to_owned(), bases)
        })
    }

    /// Up to `len` bytes at `offset` of the upload `id` of `repository`
    /// while it is written (fewer at the end of what is written so far);
    /// [`RegistryError::BlobUploadUnknown`] once it is committed.
    pub fn read_upload(
        &self,
        repository: &str,
        id: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_read_upload(s, repository, id, offset, len)
        })
    }

    /// The manifest `reference` (a tag or a digest) of `repository`.
    pub fn get_manifest(&self, repository: &str, reference: &str) -> Result<Manifest> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_get_manifest(s, repository, reference)
        })
    }

    /// Deletes the manifest `digest` and its tags from `repository`.
    pub fn delete_manifest(&self, repository: &str, digest: &str) -> Result<()> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_delete_manifest(s, repository, &digest.to_owned())
        })
    }

    /// Deletes the tag `tag` of `repository`.
    pub fn delete_tag(&self, repository: &str, tag: &str) -> Result<()> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_delete_tag(s, repository, tag)
        })
    }

    /// Writes tag changes still in the store's journal into `index.json`,
    /// for tools that read the OCI layout themselves (skopeo's `oci:`
    /// transport); returns whether there were any. kist's own calls see
    /// every change at once; `kist serve` syncs every second.
    pub fn sync_index(&self) -> Result<bool> {
        self.call(|api, s| api.kist_content_registry().call_sync_index(s))
    }

    /// The tags of `repository`, sorted, after `last`, at most `n`.
    pub fn tags(&self, repository: &str, last: Option<&str>, n: Option<u32>) -> Result<Page> {
        self.call(|api, s| {
            api.kist_content_registry()
                .call_tags(s, repository, last, n)
        })
    }

    /// The repositories, sorted, after `last`, at most `n`.
    pub fn repositories(&self, last: Option<&str>, n: Option<u32>) -> Result<Page> {
        self.call(|api, s| api.kist_content_registry().call_repositories(s, last, n))
    }

    /// The manifests of `repository` that refer to `subject`, of
    /// `artifact_type` if given, sorted by digest: a page of those after
    /// `after` that fits `max_bytes` of index (at least one).
    pub fn referrers(
        &self,
        repository: &str,
        subject: &str,
        artifact_type: Option<&str>,
        after: Option<&str>,
        max_bytes: u64,
    ) -> Result<ReferrersPage> {
        self.call(|api, s| {
            api.kist_content_registry().call_referrers(
                s,
                repository,
                &subject.to_owned(),
                artifact_type,
                after.map(str::to_owned).as_ref(),
                max_bytes,
            )
        })
    }
}
