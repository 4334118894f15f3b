//! Blobs shared through the store's bucket, when the host gives it one
//! (`objects`): several nodes, each with its own directory, keep every
//! blob once in the bucket under `blobs/<alg>/<hex>`.
//!
//! A blob goes up before it becomes visible on the node that stored it
//! (the object exists before anything refers to it), straight from the
//! written file and conditionally (`if-absent`: no copy-then-delete, and
//! identical pushes on two nodes leave one object). A node that lacks a
//! blob fetches it into its own directory, checked against the digest:
//! the node's directory is its cache of the bucket. Without a bucket
//! every call here does nothing.

use crate::bindings::kist::content::hasher::Hasher;
use crate::bindings::kist::content::objects::{self, ObjectError, PutMode};
use crate::bindings::wasi::filesystem::types::{DescriptorFlags, OpenFlags};
use crate::shared::bucket;
use crate::shared::digest::{self, Digest};
use crate::shared::error::{Error, Result, fs as fs_error, precondition};
use crate::shared::fs;

/// The object key of the blob `d`.
pub fn key(d: &Digest) -> String {
    format!("blobs/{}/{}", digest::name(d.algorithm), d.hex)
}

/// The blob whose object `key` is; `None` for a key that is not one.
pub fn digest_of(key: &str) -> Option<Digest> {
    Digest::from_key_path(key.strip_prefix("blobs/")?)
}

/// Stores the written file `name` of `dir` (`size` bytes, the content
/// `d`) as `d`'s object, unless the bucket has it already: an object is
/// whole once it exists, so another node's copy is the same bytes.
///
/// Fails if the bucket cannot take it; then nothing refers to the object
/// and the caller does not publish the blob. Bytes that hash to another
/// digest on the way up (the file changed under the store) are removed
/// again and fail with `failed-precondition`.
pub fn share(dir: &fs::Dir, name: &str, d: &Digest, size: u64) -> Result<()> {
    if !bucket::maybe() {
        return Ok(());
    }
    let (key, path) = (key(d), format!("{}/{name}", dir.path()));
    let file = fs::open(&path, OpenFlags::empty(), DescriptorFlags::READ)?;
    let hasher = Hasher::new(d.algorithm);
    let sent = bucket::call(&key, || {
        match objects::upload(&key, &file, 0, size, &hasher, &PutMode::IfAbsent) {
            Err(ObjectError::ConditionFailed) => Ok(false),
            other => other.map(|_| true),
        }
    })?;
    if sent == Some(true) {
        let sent = Digest::of(d.algorithm, &hasher);
        if sent != *d {
            bucket::delete(&key)?;
            return Err(precondition(format!(
                "{path} changed while it went up: {sent}, not {d}"
            )));
        }
    }
    Ok(())
}

/// The size of `d`'s object; `None` if the bucket lacks it or there is no
/// bucket.
pub fn size(d: &Digest) -> Result<Option<u64>> {
    bucket::size(&key(d))
}

/// Removes `d`'s object (nothing without a bucket). Nodes that fetched
/// the blob keep their copies.
pub fn remove(d: &Digest) -> Result<()> {
    bucket::delete(&key(d))
}

/// Fetches `d`'s object (`size` bytes, as [`size`] said) into the new file
/// `name` of `dir`, checking size and digest on the way, and syncs it.
///
/// Bytes that are not `d`'s fail with `corrupt` (the bucket's copy is
/// damaged: a node must not take it), a vanished object with `not-found`;
/// either way the file is removed again.
pub fn fetch(d: &Digest, size: u64, dir: &fs::Dir, name: &str) -> Result<()> {
    let key = key(d);
    let file = dir.create(name)?;
    let hasher = Hasher::new(d.algorithm);
    let fetched = objects::download(&key, 0, size, &file, 0, &hasher)
        .map_err(|e| bucket::error(&key, e))
        .and_then(|got| {
            let digest = Digest::of(d.algorithm, &hasher);
            if got == size && digest == *d {
                let path = format!("{}/{name}", dir.path());
                return file.sync_data().map_err(|e| fs_error("sync", &path, e));
            }
            Err(Error::Corrupt(format!(
                "the bucket's {key}: {got} bytes of {digest}, not {size} of {d}"
            )))
        });
    if fetched.is_err() {
        dir.remove(name)?;
    }
    fetched
}
