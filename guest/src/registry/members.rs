//! What a repository holds: blobs and manifests held by
//! `registry/<repository>`. Membership is the hold itself, whether or not
//! its grace has run out; a collection ends it for what nothing reaches.

use crate::bindings::exports::kist::content::registry::RegistryError;
use crate::content::labels::Labels;
use crate::content::store;
use crate::registry::shared;
use crate::retention::{holds, quota};
use crate::shared::bucket;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result};
use crate::shared::fs::{self, FileType};

/// The size of `d` if the repository whose holder is `holder` holds it.
///
/// On a bucket the bucket's record decides, for every node alike: a blob
/// another node's push put there is fetched and held here with the labels
/// that node gave it, and one deleted through another node is not the
/// repository's any more, whatever this node still holds (its hold ends
/// with a collection). Takes `d`'s lock for a fetch: under it, use
/// [`held_here`].
pub fn size(d: &Digest, holder: &str) -> Result<Option<u64>> {
    let here = held_here(d, holder)?;
    let record = shared::member(holder, d)?;
    if !bucket::maybe() {
        return Ok(here);
    }
    match (here, record) {
        (Some(size), Some(_)) => Ok(Some(size)),
        (None, Some(labels)) => store::adopt(d, holder, &labels),
        (_, None) => Ok(None),
    }
}

/// Whether the repository whose holder is `holder` holds `d`, as
/// [`size`] decides, without fetching it.
pub fn holds(d: &Digest, holder: &str) -> Result<bool> {
    let record = shared::member(holder, d)?;
    if bucket::maybe() {
        return Ok(record.is_some());
    }
    Ok(held_here(d, holder)?.is_some())
}

/// The size of `d` if the repository whose holder is `holder` holds it in
/// this node's directory.
pub fn held_here(d: &Digest, holder: &str) -> Result<Option<u64>> {
    let Some(stat) = fs::stat(&d.blob_path())? else {
        return Ok(None);
    };
    let held = holds::stored(d)?.is_some_and(|r| r.holders.contains(holder));
    Ok((held && stat.type_ == FileType::RegularFile).then_some(stat.size))
}

/// Makes `holder` hold `d` if `from` does; false if `from` does not. The
/// hold counts against `holder`'s quotas as a push would.
pub fn mount(d: &Digest, holder: &str, from: &str) -> Result<bool> {
    if let Some(bytes) = size(d, from)? {
        quota::charge_hold(d, holder, bytes)?;
    }
    let lock = store::lock_blob(d)?;
    if held_here(d, from)?.is_none() {
        return Ok(false);
    }
    // The bucket first, as a push records it (see `content::publish`).
    shared::note_member(holder, d, &Labels::new())?;
    holds::add(d, holder, &lock)?;
    Ok(true)
}

/// Makes `holder` hold `d` again, as a root until `until`, if it was the
/// last to hold it before a collection released it and `d` is still
/// stored (cached): a mirror that fetches a manifest again finds the
/// blobs it fetched for it before. A cached blob still counts against its
/// last holders' quotas, so this charges nothing.
pub fn revive(d: &Digest, holder: &str, until: holds::Stamp) -> Result<()> {
    let lock = store::lock_blob(d)?;
    if fs::stat(&d.blob_path())?.is_none() {
        return Ok(());
    }
    let Some(record) = holds::stored(d)? else {
        return Ok(());
    };
    if record.holders.is_empty() && record.released_by.contains(holder) {
        holds::add_until(d, holder, Some(until), &lock)?;
    }
    Ok(())
}

/// Ends `holder`'s hold on `d`, on every node of a bucket. The caller
/// checked that it holds `d` ([`holds`]).
pub fn release(d: &Digest, holder: &str) -> Result<(), RegistryError> {
    // The bucket's record first: no node takes it up again.
    shared::forget_member(holder, d)?;
    let lock = store::lock_blob(d)?;
    match store::release(d, holder, &lock) {
        Ok(_) => Ok(()),
        // On a bucket the record said it holds `d`: this node never
        // fetched it.
        Err(Error::NotFound) if bucket::maybe() => Ok(()),
        Err(Error::NotFound) => Err(RegistryError::BlobUnknown),
        Err(e) => Err(e.into()),
    }
}

/// Checks that `holder` holds `d` (of `size` bytes), which the manifest
/// `source` about to be stored references, and keeps `d` for it: unless a
/// root holds `d` by itself for longer than a write can take, a
/// collection from now on sees that `source` references it (see
/// `holds::touch`). Under `d`'s lock, so a collection either removed `d`
/// before (and this fails) or keeps it.
pub fn require(d: &Digest, size: u64, holder: &str, source: &Digest) -> Result<(), RegistryError> {
    // Pushed through another node: fetched first, outside the lock.
    self::size(d, holder)?;
    let lock = store::lock_blob(d)?;
    let unknown = || RegistryError::ManifestBlobUnknown(d.to_string());
    let stored = held_here(d, holder)?.ok_or_else(unknown)?;
    if stored != size {
        return Err(RegistryError::ManifestInvalid(format!(
            "{d} is {stored} bytes, not {size} as the manifest says"
        )));
    }
    let record = holds::load(d)?;
    if !holds::kept_while_writing(d, &record)? {
        holds::mark_touched(d, record, source, &lock)?;
    }
    Ok(())
}
