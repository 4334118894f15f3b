//! Derived blobs: what the store computes from its layers (trees, packs)
//! and keeps as cache. Each is a blob held by [`HOLDER`] as a root for
//! [`KEEP`] after its last use; then retention treats it as it treats any
//! cached content (removed after the cache TTL, or sooner, oldest first,
//! when a quota needs the space), and the next use computes it again.
//!
//! `deltas/<kind>/<key>` names the blob computed for a key (a layer, a
//! pair of trees); a name whose blob is gone is computed again.

use crate::bindings::kist::content::locks;
use crate::content::new_blob::NewBlob;
use crate::content::publish::{Stored, stored};
use crate::content::store;
use crate::retention::{holds, quota};
use crate::shared::digest::Digest;
use crate::shared::error::{self, Result};
use crate::shared::fs::{self, Durability};

/// Who holds derived blobs, and whose quotas they count against.
pub const HOLDER: &str = "deltas";
/// How long a derived blob stays a root after its last use.
pub const KEEP: u64 = 7 * 24 * 3600;
/// Where the names are.
const DIR: &str = "deltas";
/// How long a caller waits for another that computes the same blob: as
/// long as a call may run (the host ends calls that run longer).
const COMPUTE_WAIT_MS: u32 = 600_000;

/// The blob derived as `kind` for `key` (a file-name-safe string), and
/// its size: the stored one, kept for [`KEEP`] more, or the one `compute`
/// writes now. Concurrent callers for one key compute it once.
pub fn get(
    kind: &str,
    key: &str,
    compute: impl FnOnce(&mut NewBlob) -> Result<()>,
) -> Result<(Digest, u64)> {
    let dir = format!("{DIR}/{kind}");
    let name = format!("{DIR}/{kind}/{key}");
    if let Some(found) = find(&name)? {
        return Ok(found);
    }
    let _computing = locks::lock(&name, COMPUTE_WAIT_MS).map_err(|e| error::lock(&name, e))?;
    if let Some(found) = find(&name)? {
        return Ok(found);
    }
    let mut blob = NewBlob::create()?;
    compute(&mut blob)?;
    quota::charge(HOLDER, blob.size())?;
    let (digest, size) = blob.publish(HOLDER)?;
    keep(&digest)?;
    crate::artifacts::records::mkdirs(&dir)?;
    fs::write_atomic(&dir, key, digest.to_string().as_bytes(), Durability::Synced)?;
    Ok((digest, size))
}

/// The blob `name` names if it is stored, kept for [`KEEP`] more.
fn find(name: &str) -> Result<Option<(Digest, u64)>> {
    let Some(bytes) = fs::read_file(name)? else {
        return Ok(None);
    };
    // A damaged name is computed again, as a missing one.
    let Some(digest) = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| Digest::parse(s).ok())
    else {
        return Ok(None);
    };
    if stored(&digest, None)? != Stored::Intact || !keep(&digest)? {
        return Ok(None);
    }
    let size = fs::stat(&digest.blob_path())?.map_or(0, |s| s.size);
    Ok(Some((digest, size)))
}

/// Makes [`HOLDER`] hold `d` as a root for [`KEEP`] from now; `false` if
/// it is no longer stored (collected since it was looked at).
fn keep(d: &Digest) -> Result<bool> {
    let lock = store::lock_blob(d)?;
    if stored(d, None)? != Stored::Intact {
        return Ok(false);
    }
    let until = holds::later(holds::now(), KEEP);
    holds::add_until(d, HOLDER, Some(until), &lock)?;
    Ok(true)
}
