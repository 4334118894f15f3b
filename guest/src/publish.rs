//! Publishing a synced file as a blob: the one step a commit and a `put`
//! share, and the only place a blob appears.

use crate::bindings::kist::content::locks::Guard;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::{fs, labels, layout};

/// Renames the synced file at `path` to the blob `digest`, with `labels`.
///
/// The caller holds the blob's lock (`store::lock_blob`), so the check for
/// an existing blob and the rename cannot interleave with another publish
/// or a delete. Fails with `already-exists`, leaving `path` in place, if
/// the blob is stored.
pub fn publish(
    path: &str,
    digest: &Digest,
    labels: &labels::Labels,
    _locked: &Guard,
) -> Result<()> {
    if fs::stat(&digest.blob_path())?.is_some() {
        return Err(Error::AlreadyExists);
    }
    // Labels first: a crash before the rename leaves only an orphan label
    // file, never a blob that lost its labels.
    labels::save(digest, labels)?;
    fs::rename(path, &digest.blob_path())?;
    fs::sync_dir(&layout::blob_dir(digest.algorithm))
}
