//! [`Snapshots`]: containerd's snapshotter contract (filesystem trees in
//! parent chains, handed out as overlay or bind mounts), and layers
//! applied into and diffed out of snapshots.

use crate::bindings::exports::kist::content::snapshots::{
    DiskUsage, Info, Layer, Mount, SnapshotOptions,
};
use std::path::Path;

use crate::LayerTree;
use crate::error::{Error, Result};
use crate::store::{Scoped, Store};

/// The snapshots of a store, from [`Store::snapshots`]. What they make is
/// held by the store's holder ([`Store::as_holder`], [`Store::with_lease`]).
///
/// ```no_run
/// # fn main() -> Result<(), kist::Error> {
/// let store = kist::Store::open("/tmp/kist-demo")?;
/// let layer = store.put(&std::fs::read("layer.tar.gz")?)?;
/// let snapshots = store.snapshots();
/// snapshots.prepare("extract-1", None, &[])?;
/// let diff_id = snapshots.apply("extract-1", &layer, "application/vnd.oci.image.layer.v1.tar+gzip")?;
/// snapshots.commit(&diff_id, "extract-1", &[])?;
/// // A container's writable tree over that layer, mounted (as root).
/// let mounts = snapshots.prepare("container-1", Some(diff_id.as_str()), &[])?;
/// kist::mount::mount(&mounts, std::path::Path::new("/mnt/container-1"))?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Snapshots {
    shared: Scoped,
    holder: Option<String>,
}

impl Store {
    /// The store's snapshots.
    pub fn snapshots(&self) -> Snapshots {
        Snapshots {
            shared: self.shared.clone(),
            holder: self.holder.clone(),
        }
    }
}

/// Most a layer may unpack to in [`Snapshots::apply`] unless
/// [`Snapshots::apply_with_limit`] says otherwise: 64 GiB.
pub const DEFAULT_MAX_UNPACKED: u64 = 64 << 30;

/// The tree a snapshot's mounts write to, or show: an active overlay's
/// `upperdir`, else the bind mount's source.
fn own_tree(mounts: &[Mount]) -> Option<String> {
    let m = mounts.first()?;
    if m.type_ == "bind" {
        return Some(m.source.clone());
    }
    m.options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir=").map(str::to_owned))
}

impl Snapshots {
    fn options(&self, labels: &[(&str, &str)]) -> SnapshotOptions {
        SnapshotOptions {
            labels: crate::labels(labels),
            holder: self.holder.clone(),
        }
    }

    /// Paths in the component's mounts are relative to the store; these
    /// are absolute.
    fn absolute(&self, mounts: Vec<Mount>) -> Result<Vec<Mount>> {
        // The store's root is canonical since it was opened.
        let root = &self.shared.root;
        let root = root
            .to_str()
            .filter(|r| !r.contains([':', ',']))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{}: a store for snapshots needs a UTF-8 path without `:` or `,` \
                     (they separate overlay's options)",
                    root.display()
                ))
            })?
            .to_owned();
        let abs = |p: &str| format!("{root}/{p}");
        Ok(mounts
            .into_iter()
            .map(|m| Mount {
                source: if m.type_ == "bind" {
                    abs(&m.source)
                } else {
                    m.source
                },
                options: m
                    .options
                    .into_iter()
                    .map(|o| match o.split_once('=') {
                        Some((key @ ("upperdir" | "workdir"), p)) => format!("{key}={}", abs(p)),
                        Some(("lowerdir", list)) => format!(
                            "lowerdir={}",
                            list.split(':').map(abs).collect::<Vec<_>>().join(":")
                        ),
                        _ => o,
                    })
                    .collect(),
                type_: m.type_,
            })
            .collect())
    }

    /// Runs `make` (the component's `prepare` or `view`) with `labels` and
    /// the handle's holder; returns the absolute mounts.
    fn made(
        &self,
        labels: &[(&str, &str)],
        make: impl FnOnce(
            &crate::bindings::exports::kist::content::snapshots::Guest,
            &mut wasmtime::Store<crate::ctx::KistCtx>,
            &SnapshotOptions,
        ) -> crate::session::GuestResult<Vec<Mount>>,
    ) -> Result<Vec<Mount>> {
        let options = self.options(labels);
        let mounts = self
            .shared
            .call(|api, s| make(api.kist_content_snapshots(), s, &options))?;
        self.absolute(mounts)
    }

    /// Makes the active snapshot `key` over the committed `parent` (or an
    /// empty one); returns the mounts that give its tree.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Mount>> {
        self.made(labels, |api, s, o| api.call_prepare(s, key, parent, o))
    }

    /// As [`prepare`](Self::prepare), read-only.
    pub fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Mount>> {
        self.made(labels, |api, s, o| api.call_view(s, key, parent, o))
    }

    /// Commits the active snapshot `key` as `name`.
    pub fn commit(&self, name: &str, key: &str, labels: &[(&str, &str)]) -> Result<()> {
        let options = self.options(labels);
        self.shared.call(|api, s| {
            api.kist_content_snapshots()
                .call_commit(s, name, key, &options)
        })
    }

    /// The mounts of the active snapshot or view `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let mounts = self
            .shared
            .call(|api, s| api.kist_content_snapshots().call_mounts(s, key))?;
        self.absolute(mounts)
    }

    /// Removes the snapshot `key`; [`Error::FailedPrecondition`] if it has
    /// children, or if its tree is mounted somewhere (unmount it first: a
    /// tree removed under a mount would only be half gone).
    pub fn remove(&self, key: &str) -> Result<()> {
        let tree = self
            .shared
            .call(|api, s| api.kist_content_snapshots().call_mounts(s, key))
            .ok()
            .and_then(|m| self.absolute(m).ok())
            .and_then(|m| own_tree(&m));
        if let Some(tree) = tree
            && let Some(at) = crate::mounted::mounted_at(&tree).first()
        {
            return Err(Error::FailedPrecondition(format!(
                "{key:?} is mounted at {}: unmount it first",
                at.display()
            )));
        }
        self.shared
            .call(|api, s| api.kist_content_snapshots().call_remove(s, key))
    }

    /// Performs the mounts of `key` on `target` (as root), which must not
    /// be inside the store: mounted there, a tree would hide the store's
    /// own files (its blobs, its records).
    pub fn mount(&self, key: &str, target: &Path) -> Result<()> {
        let mounts = self.mounts(key)?;
        let inside = target
            .canonicalize()
            .map_err(|e| Error::Io(format!("{}: {e}", target.display())))?
            .starts_with(&self.shared.root);
        if inside {
            return Err(Error::InvalidArgument(format!(
                "{}: inside the store; mount snapshots elsewhere",
                target.display()
            )));
        }
        crate::mount::mount(&mounts, target)
    }

    /// Unmounts `target` if what is mounted there is one of this store's
    /// snapshots; anything else is [`Error::InvalidArgument`], untouched.
    pub fn unmount(&self, target: &Path) -> Result<()> {
        let snapshots = format!("{}/snapshots", self.shared.root.display());
        if !crate::mounted::is_snapshot_mount(target, &snapshots) {
            return Err(Error::InvalidArgument(format!(
                "{}: no snapshot of this store is mounted there",
                target.display()
            )));
        }
        crate::mount::unmount(target)
    }

    /// What the store knows about `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        self.shared
            .call(|api, s| api.kist_content_snapshots().call_stat(s, key))
    }

    /// Changes the labels of `info.name` (see the WIT `update`).
    pub fn update(&self, info: &Info, fieldpaths: &[&str]) -> Result<Info> {
        let paths: Vec<String> = fieldpaths.iter().map(|p| p.to_string()).collect();
        self.shared
            .call(|api, s| api.kist_content_snapshots().call_update(s, info, &paths))
    }

    /// The space `key`'s own tree takes.
    pub fn usage(&self, key: &str) -> Result<DiskUsage> {
        self.shared
            .call(|api, s| api.kist_content_snapshots().call_usage(s, key))
    }

    /// Snapshots matching any of `filters` (fields `name`, `parent`,
    /// `kind`, `labels.<key>`).
    pub fn walk(&self, filters: &[&str]) -> Result<Vec<Info>> {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        self.shared
            .call(|api, s| api.kist_content_snapshots().call_walk(s, &filters))
    }

    /// Removes trees no snapshot owns; returns how many.
    pub fn cleanup(&self) -> Result<u32> {
        self.shared
            .call(|api, s| api.kist_content_snapshots().call_cleanup(s))
    }

    /// Unpacks the stored layer `blob` into the empty active snapshot
    /// `key` (at most [`DEFAULT_MAX_UNPACKED`]); returns the diff id.
    pub fn apply(&self, key: &str, blob: &str, media_type: &str) -> Result<String> {
        self.apply_with_limit(key, blob, media_type, DEFAULT_MAX_UNPACKED)
    }

    /// [`apply`](Self::apply) with a cap on the unpacked size (file data
    /// plus 512 bytes per entry).
    pub fn apply_with_limit(
        &self,
        key: &str,
        blob: &str,
        media_type: &str,
        max_size: u64,
    ) -> Result<String> {
        let blob = blob.to_owned();
        self.shared.call(|api, s| {
            api.kist_content_snapshots()
                .call_apply(s, key, &blob, media_type, max_size)
        })
    }

    /// The tree of the stored layer `blob` (delta pulls): which files it
    /// has, by content, and what regenerates its tar. Derived on the first
    /// call, then kept as cache.
    pub fn tree_of_layer(&self, blob: &str, media_type: &str) -> Result<LayerTree> {
        let blob = blob.to_owned();
        self.shared.call(|api, s| {
            api.kist_content_snapshots()
                .call_tree_of_layer(s, &blob, media_type)
        })
    }

    /// Unpacks into the empty active snapshot `key` the layer whose diff
    /// id is `diff_id` without its blob: its tar is regenerated from the
    /// stored tree blob `tree`, the files in the stored pack `pack` and
    /// those of the committed snapshots `bases` (each with the tree of
    /// its layer), every file and the whole tar checked. See
    /// `snapshots.apply-delta` in the WIT.
    pub fn apply_delta(
        &self,
        key: &str,
        diff_id: &str,
        tree: &str,
        pack: Option<&str>,
        bases: &[(&str, &str)],
    ) -> Result<String> {
        let (diff_id, tree) = (diff_id.to_owned(), tree.to_owned());
        let pack = pack.map(str::to_owned);
        let bases: Vec<(String, String)> = bases
            .iter()
            .map(|(k, t)| ((*k).to_owned(), (*t).to_owned()))
            .collect();
        self.shared.call(|api, s| {
            api.kist_content_snapshots().call_apply_delta(
                s,
                key,
                &diff_id,
                &tree,
                pack.as_ref(),
                &bases,
                DEFAULT_MAX_UNPACKED,
            )
        })
    }

    /// The changes of `key` against its parent, stored as a tar+gzip layer.
    pub fn diff(&self, key: &str) -> Result<Layer> {
        self.shared.call(|api, s| {
            api.kist_content_snapshots()
                .call_diff(s, key, self.holder.as_ref())
        })
    }
}
