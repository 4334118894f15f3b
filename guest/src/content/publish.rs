//! Publishing a written file as a blob: the one step a commit and a `put`
//! share, and the only place a blob appears.

use crate::bindings::exports::kist::content::ingester::Durability;
use crate::bindings::kist::content::locks::Guard;
use std::collections::BTreeSet;

use crate::content::{bucket, labels, quarantine, store};
use crate::registry::shared;
use crate::retention::{holds, quota};
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

/// What a publish stores besides the bytes.
pub struct Meta<'a> {
    /// The blob's labels, for each of its holders.
    pub labels: &'a labels::Labels,
    /// Who holds it from the moment it is visible.
    pub holders: &'a BTreeSet<String>,
}

/// Renames the file `name` in `dir` (synced already if `durability` asks
/// for it, `size` bytes long) to the blob `digest`, with `meta`'s labels
/// and holders.
///
/// The caller holds the blob's lock (`store::lock_blob`), so the check for
/// an existing blob and the rename cannot interleave with another publish
/// or a removal, and syncs the blob directory afterwards for a durable
/// publish (a batch syncs it once for all its blobs). If the blob is
/// stored intact and held, its holders are added and this fails with
/// `already-exists`, leaving the file in place. If it is stored but cached
/// (released by all, so not shown), it is taken back instead of the file,
/// stored anew as far as anyone can tell: these holders and labels only,
/// and this returns `false`: the file is left for the caller to remove. A damaged copy is moved to
/// `quarantine/` and replaced, keeping its labels and holders under the
/// new ones. Returns `true` when the file became the blob.
///
/// Labels are per holder: each of `meta.holders` gets `meta.labels` on a
/// blob it did not hold before; one that held it keeps its own.
///
/// With a bucket, the file goes up as the blob's object first
/// ([`bucket::share`]): a blob is visible on a node only once every node
/// can fetch it.
pub fn publish(
    dir: &fs::Dir,
    name: &str,
    digest: &Digest,
    size: u64,
    meta: &Meta<'_>,
    lock: &Guard,
    durability: Durability,
) -> Result<bool> {
    place(
        dir,
        name,
        (digest, size),
        meta,
        lock,
        durability,
        Origin::Written,
    )
}

/// [`publish`] for a file fetched from the bucket ([`bucket::fetch`]),
/// which has the object already.
pub fn publish_fetched(
    dir: &fs::Dir,
    name: &str,
    (digest, size): (&Digest, u64),
    meta: &Meta<'_>,
    lock: &Guard,
) -> Result<bool> {
    let origin = Origin::Fetched;
    place(
        dir,
        name,
        (digest, size),
        meta,
        lock,
        Durability::Synced,
        origin,
    )
}

/// Where a file being published came from.
#[derive(PartialEq)]
enum Origin {
    /// Written on this node: the bucket may lack it.
    Written,
    /// Fetched from the bucket.
    Fetched,
}

/// [`publish`], the file coming from `origin`.
fn place(
    dir: &fs::Dir,
    name: &str,
    (digest, size): (&Digest, u64),
    meta: &Meta<'_>,
    lock: &Guard,
    durability: Durability,
    origin: Origin,
) -> Result<bool> {
    let found = stored(digest, Some(size))?;
    if origin == Origin::Written {
        // The bucket first: what a node holds, every node can fetch, and
        // a record there without a blob here is one a fetch completes.
        if found != Stored::Intact {
            bucket::share(dir, name, digest, size)?;
        }
        note_members(digest, meta)?;
    }
    let file = match found {
        Stored::Intact => {
            let cached = hold(digest, meta, lock)?;
            return if cached {
                Ok(false)
            } else {
                Err(Error::AlreadyExists)
            };
        }
        Stored::Damaged => {
            quarantine::quarantine(&digest.blob_path(), "")?;
            let mut file = labels::load(digest).unwrap_or_default();
            for h in meta.holders {
                let (mut kept, _) = file.of(h);
                kept.extend(meta.labels.clone());
                file.set(h, kept);
                holds::add(digest, h, lock)?;
            }
            file
        }
        Stored::Absent => {
            holds::publish(digest, meta.holders, durability, lock)?;
            fresh(meta)
        }
    };
    // Holds and labels first: a crash before the rename leaves only a
    // record and a label file without a blob, never a blob that lost them.
    labels::save(digest, &file, durability)?;
    layout::blobs(digest.algorithm)?.rename_from(dir, name, &digest.hex)?;
    // Held here now: the bucket must not delete it (see `condemned`).
    crate::retention::condemned::rescue(digest)?;
    Ok(true)
}

/// Tells the other nodes of a bucket which repositories now hold the blob
/// `digest`, and with what labels (the registry's holders are
/// repositories: see `registry::shared`).
fn note_members(digest: &Digest, meta: &Meta<'_>) -> Result<()> {
    for h in meta.holders {
        shared::note_member(h, digest, meta.labels)?;
    }
    Ok(())
}

/// Adds `meta.holders` to the blob `digest` if it is stored intact (of
/// `size` if known), looked at again under its lock: a collection may
/// unlink a cached blob between a caller's first look and the lock, and a
/// hold added then would be a record without a blob. Returns whether it
/// was stored.
pub fn hold_stored(digest: &Digest, size: Option<u64>, meta: &Meta<'_>) -> Result<bool> {
    // A new hold counts against the holder's quotas as storing it would.
    if let Some(s) = stat_size(digest)? {
        for h in meta.holders {
            quota::charge_hold(digest, h, s)?;
        }
    }
    let lock = store::lock_blob(digest)?;
    if stored(digest, size)? != Stored::Intact {
        return Ok(false);
    }
    note_members(digest, meta)?;
    hold(digest, meta, &lock)?;
    Ok(true)
}

/// The size of what is stored as `digest`, if anything is.
fn stat_size(digest: &Digest) -> Result<Option<u64>> {
    Ok(layout::blobs(digest.algorithm)?
        .stat(&digest.hex)?
        .map(|s| s.size))
}

/// The labels of a blob stored anew: `meta.labels` for each holder.
fn fresh(meta: &Meta<'_>) -> labels::LabelFile {
    let mut file = labels::LabelFile::default();
    for h in meta.holders {
        file.set(h, meta.labels.clone());
    }
    file
}

/// Adds `meta.holders` to the stored blob `digest`; returns whether it was
/// cached (nobody held it): then, stored again as far as anyone can tell,
/// its labels become `meta.labels` for each of them. A holder new to a
/// held blob gets `meta.labels`; one that held it keeps its own. The
/// caller holds the blob's lock.
fn hold(digest: &Digest, meta: &Meta<'_>, lock: &Guard) -> Result<bool> {
    // A damaged label file is left for fsck, unless the blob is stored
    // anew: then it is replaced.
    let loaded = labels::load(digest);
    let mut file = loaded.clone().unwrap_or_default();
    let live = holds::load(digest)?.live(digest, &file)?;
    for h in meta.holders {
        holds::add(digest, h, lock)?;
    }
    if live.is_empty() {
        labels::save(digest, &fresh(meta), Durability::Synced)?;
        return Ok(true);
    }
    let newcomers: Vec<&String> = meta.holders.iter().filter(|h| !live.contains(h)).collect();
    if loaded.is_ok() && !meta.labels.is_empty() && !newcomers.is_empty() {
        for h in newcomers {
            file.set(h, meta.labels.clone());
        }
        labels::save(digest, &file, Durability::Synced)?;
    }
    Ok(false)
}
