//! Publishing a written file as a blob: the one step a commit and a `put`
//! share, and the only place a blob appears.

use crate::bindings::exports::kist::content::ingester::Durability;
use crate::bindings::kist::content::locks::Guard;
use crate::content::labels;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result};
use crate::shared::fs;
use crate::shared::layout;

/// Renames the file `name` in `dir` (synced already if `durability` asks
/// for it) to the blob `digest`, with `labels`.
///
/// The caller holds the blob's lock (`store::lock_blob`), so the check for
/// an existing blob and the rename cannot interleave with another publish
/// or a delete, and syncs the blob directory afterwards for a durable
/// publish (a batch syncs it once for all its blobs). Fails with
/// `already-exists`, leaving the file in place, if the blob is stored.
pub fn publish(
    dir: &fs::Dir,
    name: &str,
    digest: &Digest,
    labels: &labels::Labels,
    _locked: &Guard,
    durability: Durability,
) -> Result<()> {
    let blobs = layout::blobs(digest.algorithm)?;
    if blobs.stat(&digest.hex)?.is_some() {
        return Err(Error::AlreadyExists);
    }
    // Labels first: a crash before the rename leaves only an orphan label
    // file, never a blob that lost its labels.
    labels::save(digest, labels, durability)?;
    blobs.rename_from(dir, name, &digest.hex)
}
