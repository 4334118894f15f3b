//! Blobs a collection means to delete from the store's bucket, and how a
//! node that takes a hold on one keeps it.
//!
//! S3 has no conditional delete that RGW honours, so a blob leaves the
//! bucket in two steps with a record between, `condemned/<alg>/<hex>`:
//! - Empty, it condemns the blob: written (if absent) by a collection
//!   that found the object referenced by nothing; the bucket's write time
//!   is when. A later collection deletes the object after the grace if it
//!   is still referenced by nothing, every node has listed its roots
//!   since, and it saw this very record at most [`DELETE_WITHIN`] before
//!   its delete ([`delete`]). It then replaces the record by [`GONE`], so
//!   a node that looks later learns the object went.
//! - A collection that finds a condemned blob referenced again replaces
//!   the record by [`ACQUITTED`]. It never deletes it: a collection
//!   deleting the object at that moment would then leave a moment with no
//!   record at all, when a node that looks would learn nothing.
//! - A node that takes a hold looks afterwards ([`rescue`]). A record
//!   that is not [`GONE`] it removes, then waits [`RESCUE_WAIT`], longer
//!   than a collection takes between its look and its delete, and checks
//!   the object; one that is missing it uploads again from its own copy.
//! - Collections remove [`GONE`] and [`ACQUITTED`] records once they are
//!   older than the grace and [`RECORD_LIFE`].
//!
//! A record's size tells them apart, so a listing needs no reads.

use std::time::{Duration, Instant};

use crate::content::bucket as blobs;
use crate::retention::node_roots;
use crate::shared::bucket;
use crate::shared::digest::{self, Digest};
use crate::shared::error::Result;
use crate::shared::layout;

/// Where the records are.
pub const PREFIX: &str = "condemned";
/// Longest a collection lets pass between seeing a `condemned` record and
/// deleting the object.
pub const DELETE_WITHIN: Duration = Duration::from_secs(1);
/// How long a node that removed a `condemned` record waits before it
/// checks the object: a collection that saw the record before is done by
/// then.
pub const RESCUE_WAIT: Duration = Duration::from_secs(5);

/// What a record holds once its blob's object was deleted.
pub const GONE: &[u8] = b"gone";
/// What a record holds once a collection found its blob referenced again.
pub const ACQUITTED: &[u8] = b"acquitted";
/// The least time a `gone` or `acquitted` record is kept, whatever the
/// grace: a node taking a hold meanwhile still learns what happened.
pub const RECORD_LIFE: u64 = 60;

/// The record about `d`.
pub fn key(d: &Digest) -> String {
    format!("{PREFIX}/{}/{}", digest::name(d.algorithm), d.hex)
}

/// The blob the record `key` is about.
pub fn parse(key: &str) -> Option<Digest> {
    let blob = key.strip_prefix(PREFIX)?.strip_prefix('/')?;
    Digest::from_key_path(blob)
}

/// Keeps `d`, which this node now holds, in the bucket: takes back a
/// condemnation, and uploads the blob again from this node's copy if a
/// collection deleted it. One look when nothing condemned it.
pub fn rescue(d: &Digest) -> Result<()> {
    if !bucket::maybe() {
        return Ok(());
    }
    let found = bucket::head(&key(d))?;
    if !bucket::maybe() {
        return Ok(());
    }
    node_roots::register()?;
    let Some(record) = found else {
        return Ok(());
    };
    if record.size != GONE.len() as u64 {
        bucket::delete(&key(d))?;
        std::thread::sleep(RESCUE_WAIT);
    }
    if blobs::size(d)?.is_some() {
        return Ok(());
    }
    // Not here yet either (a damaged copy being replaced): the caller's
    // rescue after it places the blob uploads it.
    let here = layout::blobs(d.algorithm)?;
    if let Some(stat) = here.stat(&d.hex)? {
        blobs::share(here, &d.hex, d, stat.size)?;
        // Whatever a collection wrote meanwhile is stale now.
        bucket::delete(&key(d))?;
    }
    Ok(())
}

/// Condemns `d`'s object (nothing if it is condemned already).
pub fn condemn(d: &Digest) -> Result<()> {
    bucket::put_new(&key(d), b"")
}

/// Takes back the condemnation of `d` (it is referenced again, or its
/// object is gone or new).
pub fn acquit(d: &Digest) -> Result<()> {
    bucket::put(&key(d), ACQUITTED)
}

/// Deletes `d`'s object if its condemnation, with ETag `etag`, is still
/// there now; whether it did.
pub fn delete(d: &Digest, etag: &str) -> Result<bool> {
    let looked = Instant::now();
    let still = bucket::head(&key(d))?.is_some_and(|m| m.etag == etag && m.size == 0);
    if !still || looked.elapsed() > DELETE_WITHIN {
        return Ok(false);
    }
    blobs::remove(d)?;
    bucket::put(&key(d), GONE)?;
    Ok(true)
}
