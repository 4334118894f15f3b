//! A snapshot's directory, `snapshots/<id>/`: `fs` (its tree: the upper
//! layer of an overlay), `work` (overlay's work directory, for active
//! snapshots over a parent), and, while `apply` runs, `apply` (the tree
//! being unpacked, moved onto `fs` at the end). The `trees` capability
//! does what WASI cannot.

use crate::bindings::kist::content::locks::{self, Guard};
use crate::bindings::kist::content::trees::{self, TreeError};
use crate::shared::error::{Error, Result};
use crate::shared::fs;
use crate::snapshots::records::DIR;

/// The directory of snapshot `id`.
pub fn dir(id: u64) -> String {
    format!("{DIR}/{id}")
}

/// `name` inside the tree-relative directory `parent` (`""`: the root).
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Snapshot `id`'s tree.
pub fn fs_path(id: u64) -> String {
    format!("{DIR}/{id}/fs")
}

/// Snapshot `id`'s overlay work directory.
pub fn work_path(id: u64) -> String {
    format!("{DIR}/{id}/work")
}

/// Where `apply` builds snapshot `id`'s tree.
pub fn apply_path(id: u64) -> String {
    format!("{DIR}/{id}/apply")
}

/// The lock an `apply` into snapshot `id` holds: `remove` and `cleanup`
/// leave a tree being built alone.
pub fn apply_lock(id: u64) -> Result<Guard> {
    locks::try_lock(&format!("snapshot-apply/{id}")).map_err(|_| Error::Unavailable)
}

/// Makes snapshot `id`'s directory with its tree and, if `work`, a work
/// directory.
pub fn create(id: u64, work: bool) -> Result<()> {
    fs::mkdir(&dir(id))?;
    fs::mkdir(&fs_path(id))?;
    if work {
        fs::mkdir(&work_path(id))?;
    }
    Ok(())
}

/// Removes snapshot `id`'s directory and all in it.
pub fn remove(id: u64) -> Result<()> {
    remove_path(&dir(id)).map(|_| ())
}

/// Removes the tree at `path`; whether there was one.
pub fn remove_path(path: &str) -> Result<bool> {
    trees::remove_tree(path).map_err(|e| error(path, e))
}

/// Allocated bytes and inodes of the tree at `path`.
pub fn usage(path: &str) -> Result<(u64, u64)> {
    trees::usage(path).map_err(|e| error(path, e))
}

/// Maps a `trees` failure on `path` to the caller's error.
pub fn error(path: &str, e: TreeError) -> Error {
    match e {
        TreeError::NotFound => Error::Io(format!("{path}: not found")),
        TreeError::Exists => Error::Io(format!("{path}: exists")),
        TreeError::InvalidPath(m) => Error::InvalidArgument(m),
        TreeError::Unsupported(m) | TreeError::Io(m) => Error::Io(m),
    }
}

/// Removes directories in `snapshots/` that no record in `ids` owns, and
/// leftover `apply` trees nobody is building; returns how many.
pub fn cleanup(owned: &std::collections::HashSet<u64>) -> Result<u32> {
    let mut removed = 0;
    for (name, kind) in fs::list_dir(DIR)?.unwrap_or_default() {
        let Ok(id) = name.parse::<u64>() else {
            continue;
        };
        if kind != fs::FileType::Directory || id.to_string() != name {
            continue;
        }
        if !owned.contains(&id) {
            if apply_lock(id).is_ok() {
                remove(id)?;
                removed += 1;
            }
        } else if let Ok(_building) = apply_lock(id)
            && remove_path(&apply_path(id))?
        {
            removed += 1;
        }
    }
    Ok(removed)
}
