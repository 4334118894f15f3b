//! Publishing a written file as a blob: the one step a commit and a `put`
//! share, and the only place a blob appears.

use crate::bindings::exports::kist::content::ingester::Durability;
use crate::bindings::kist::content::locks::Guard;
use crate::content::{labels, quarantine};
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result};
use crate::shared::fs::{self, FileType};
use crate::shared::layout;

/// What is stored under a blob's name, judged without reading its bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Nothing.
    Absent,
    /// A regular file, of the expected size if one is known.
    Intact,
    /// Something else (a directory, a symlink), or a file of another size
    /// than the content has: bit rot, a partial copy.
    Damaged,
}

/// What is stored as `digest`, given the content's `size` if known.
pub fn stored(digest: &Digest, size: Option<u64>) -> Result<Stored> {
    Ok(match layout::blobs(digest.algorithm)?.stat(&digest.hex)? {
        None => Stored::Absent,
        Some(s) if s.type_ == FileType::RegularFile && size.is_none_or(|n| n == s.size) => {
            Stored::Intact
        }
        Some(_) => Stored::Damaged,
    })
}

/// Renames the file `name` in `dir` (synced already if `durability` asks
/// for it, `size` bytes long) to the blob `digest`, with `labels`.
///
/// The caller holds the blob's lock (`store::lock_blob`), so the check for
/// an existing blob and the rename cannot interleave with another publish
/// or a delete, and syncs the blob directory afterwards for a durable
/// publish (a batch syncs it once for all its blobs). Fails with
/// `already-exists`, leaving the file in place, if the blob is stored
/// intact. A damaged copy is moved to `quarantine/` and replaced; the
/// labels it had are kept under the new ones.
pub fn publish(
    dir: &fs::Dir,
    name: &str,
    digest: &Digest,
    size: u64,
    labels: &labels::Labels,
    _locked: &Guard,
    durability: Durability,
) -> Result<()> {
    let mut labels = labels.clone();
    match stored(digest, Some(size))? {
        Stored::Intact => return Err(Error::AlreadyExists),
        Stored::Damaged => {
            quarantine::quarantine(&digest.blob_path(), "")?;
            let (kept, _) = labels::load(digest).unwrap_or_default();
            for (k, v) in kept {
                labels.entry(k).or_insert(v);
            }
        }
        Stored::Absent => {}
    }
    // Labels first: a crash before the rename leaves only an orphan label
    // file, never a blob that lost its labels.
    labels::save(digest, &labels, durability)?;
    layout::blobs(digest.algorithm)?.rename_from(dir, name, &digest.hex)
}
