//! The on-disk layout: an OCI image layout plus kist's own state beside
//! it.
//!
//! ```text
//! oci-layout, index.json        OCI image layout files
//! blobs/<alg>/<hex>             committed blobs
//! ingest/<sha256(ref)>/         one resumable ingest: ref, meta, data, hashstate
//! labels/<alg>/<hex>            a blob's labels (absent when it has none)
//! holds/<alg>/<hex>             who holds a blob (absent: `default` alone)
//! leases/<sha256(id)>           a lease and what it holds
//! retention.json                cache and ingest TTLs, quotas
//! retention-usage.json          what counts against each quota
//! registry/repositories/<name>  registry repositories (`/` as `+`)
//! registry/referrers/<alg>/<hex>/<alg>-<hex>  a subject's referrers
//! locks/                        the host's lock files
//! quarantine/<alg>/              blobs and labels `fsck --repair` found damaged
//! ```

use std::sync::OnceLock;

use crate::bindings::kist::content::hasher::Algorithm;
use crate::bindings::kist::content::locks;
use crate::shared::digest::{self, ALGORITHMS};
use crate::shared::error::{self, Result};
use crate::shared::fs;

/// Directory of resumable ingests.
pub const INGEST: &str = "ingest";
/// Directory of hold records.
pub const HOLDS: &str = "holds";
/// Directory of lease records.
pub const LEASES: &str = "leases";
/// Where `fsck --repair` moves damaged blobs and labels.
pub const QUARANTINE: &str = "quarantine";

/// `oci-layout` content (image-spec v1.0.0 and later).
const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";
/// An empty image index.
const EMPTY_INDEX: &str = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}";

/// Directory holding `alg`'s blobs.
pub fn blob_dir(alg: Algorithm) -> String {
    format!("blobs/{}", digest::name(alg))
}

/// Directory holding `alg`'s label files.
pub fn label_dir(alg: Algorithm) -> String {
    format!("labels/{}", digest::name(alg))
}

/// Directory holding `alg`'s hold records.
pub fn hold_dir(alg: Algorithm) -> String {
    format!("{HOLDS}/{}", digest::name(alg))
}

/// The open blob directory of `alg`, opened once per instance (after
/// [`ensure`]).
pub fn blobs(alg: Algorithm) -> Result<&'static fs::Dir> {
    static DIRS: [OnceLock<fs::Dir>; 2] = [OnceLock::new(), OnceLock::new()];
    held_open(&DIRS, alg, blob_dir)
}

/// The open label directory of `alg`, opened once per instance (after
/// [`ensure`]).
pub fn labels(alg: Algorithm) -> Result<&'static fs::Dir> {
    static DIRS: [OnceLock<fs::Dir>; 2] = [OnceLock::new(), OnceLock::new()];
    held_open(&DIRS, alg, label_dir)
}

/// The open hold-record directory of `alg`, opened once per instance
/// (after [`ensure`]).
pub fn holds(alg: Algorithm) -> Result<&'static fs::Dir> {
    static DIRS: [OnceLock<fs::Dir>; 2] = [OnceLock::new(), OnceLock::new()];
    held_open(&DIRS, alg, hold_dir)
}

/// `alg`'s slot of `dirs`, opening the directory `path(alg)` the first
/// time.
fn held_open(
    dirs: &'static [OnceLock<fs::Dir>; 2],
    alg: Algorithm,
    path: fn(Algorithm) -> String,
) -> Result<&'static fs::Dir> {
    let slot = &dirs[ALGORITHMS.iter().position(|a| *a == alg).expect("known")];
    if let Some(dir) = slot.get() {
        return Ok(dir);
    }
    let dir = fs::Dir::open(&path(alg))?;
    Ok(slot.get_or_init(|| dir))
}

/// The OCI layout files and the content a new store gets.
pub const LAYOUT_FILES: [(&str, &str); 2] =
    [("oci-layout", OCI_LAYOUT), ("index.json", EMPTY_INDEX)];

/// Writes the OCI layout files that are missing; returns their names.
pub fn write_layout_files() -> Result<Vec<&'static str>> {
    let mut written = Vec::new();
    for (name, content) in LAYOUT_FILES {
        if fs::stat(name)?.is_none() {
            // Two instances may initialise a new store at once; the lock
            // makes the fixed temporary name in write_atomic safe.
            let _guard = locks::lock("layout", 10_000).map_err(|e| error::lock("layout", e))?;
            if fs::stat(name)?.is_none() {
                fs::write_atomic(".", name, content.as_bytes(), fs::Durability::Synced)?;
                written.push(name);
            }
        }
    }
    Ok(written)
}

/// Makes sure the root is a kist store (creating the layout the first
/// time). Runs once per component instance; cheap when all is in place.
pub fn ensure() -> Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    for dir in ["blobs", "labels", INGEST, LEASES] {
        fs::mkdir(dir)?;
    }
    for alg in ALGORITHMS {
        fs::mkdir(&blob_dir(alg))?;
        fs::mkdir(&label_dir(alg))?;
    }
    write_layout_files()?;
    // Holds came with kist 0.2: a store without them gets them now.
    if fs::stat(HOLDS)?.is_none() {
        let guard = locks::lock("layout", 60_000).map_err(|e| error::lock("layout", e))?;
        if fs::stat(HOLDS)?.is_none() {
            let managed = crate::retention::migrate::holds()?;
            drop(guard);
            crate::retention::migrate::unmark(managed)?;
        }
    }
    let _ = DONE.set(());
    Ok(())
}
