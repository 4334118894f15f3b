//! Blobs a collection means to delete from the store's bucket, and how a
//! node that takes a hold on one keeps it.
//!
//! S3 has no conditional delete that RGW honours, so a blob leaves the
//! bucket in two steps with a record between, under
//! `condemned/<alg>/<hex>/`:
//! - `condemned`: written (if absent) by a collection that found the
//!   object referenced by nothing; the bucket's write time is when. A
//!   later collection deletes the object after the grace if it is still
//!   referenced by nothing, every node has listed its roots since, and it
//!   saw this record still there at most [`DELETE_WITHIN`] before its
//!   delete ([`delete`]). It then writes `gone`, and only then removes
//!   `condemned`, so one of the two is there for a node that looks.
//! - A node that takes a hold looks afterwards ([`rescue`]). A
//!   `condemned` record it removes, then waits [`RESCUE_WAIT`], longer
//!   than a collection takes between its look and its delete, and checks
//!   the object; one that is missing (also after `gone`) it uploads again
//!   from its own copy.

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

fn dir(d: &Digest) -> String {
    format!("{PREFIX}/{}/{}", digest::name(d.algorithm), d.hex)
}

/// The record that condemns `d`.
pub fn condemned_key(d: &Digest) -> String {
    format!("{}/condemned", dir(d))
}

/// The record that `d`'s object was deleted.
pub fn gone_key(d: &Digest) -> String {
    format!("{}/gone", dir(d))
}

/// The blob a record key under [`PREFIX`] is about, and whether it is a
/// `gone` record; `None` for a key that is neither.
pub fn parse(key: &str) -> Option<(Digest, bool)> {
    let rest = key.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let (blob, kind) = rest.rsplit_once('/')?;
    let d = Digest::parse(&blob.replacen('/', ":", 1)).ok()?;
    match kind {
        "condemned" => Some((d, false)),
        "gone" => Some((d, true)),
        _ => None,
    }
}

/// Keeps `d`, which this node now holds, in the bucket: takes back a
/// condemnation, and uploads the blob again from this node's copy if a
/// collection deleted it. One listing when nothing condemned it.
pub fn rescue(d: &Digest) -> Result<()> {
    if !bucket::maybe() {
        return Ok(());
    }
    let found = bucket::keys(&dir(d))?;
    if !bucket::maybe() {
        return Ok(());
    }
    node_roots::register()?;
    if found.is_empty() {
        return Ok(());
    }
    if found.contains(&condemned_key(d)) {
        bucket::delete(&condemned_key(d))?;
        std::thread::sleep(RESCUE_WAIT);
    }
    let mut there = blobs::size(d)?.is_some();
    if !there {
        // Not here yet either (a damaged copy being replaced): the
        // caller's rescue after it places the blob uploads it.
        let here = layout::blobs(d.algorithm)?;
        if let Some(stat) = here.stat(&d.hex)? {
            blobs::share(here, &d.hex, d, stat.size)?;
            there = true;
        }
    }
    if there && found.contains(&gone_key(d)) {
        bucket::delete(&gone_key(d))?;
    }
    Ok(())
}

/// Condemns `d`'s object (nothing if it is condemned already).
pub fn condemn(d: &Digest) -> Result<()> {
    bucket::put_new(&condemned_key(d), b"")
}

/// Takes back the condemnation of `d` (it is referenced again, or its
/// object is gone or new).
pub fn acquit(d: &Digest) -> Result<()> {
    bucket::delete(&condemned_key(d))
}

/// Deletes `d`'s object if its record, with ETag `etag`, is still there
/// now; whether it did.
pub fn delete(d: &Digest, etag: &str) -> Result<bool> {
    let looked = Instant::now();
    let still = bucket::head(&condemned_key(d))?.is_some_and(|m| m.etag == etag);
    if !still || looked.elapsed() > DELETE_WITHIN {
        return Ok(false);
    }
    blobs::remove(d)?;
    bucket::put(&gone_key(d), b"")?;
    acquit(d)?;
    Ok(true)
}
