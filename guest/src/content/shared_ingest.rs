//! Ingests kept in the store's bucket too, when it has one, so that any
//! node continues an ingest another began: a registry upload whose chunks
//! reach different nodes behind a load balancer, or one whose node died.
//!
//! The bucket holds, per ingest, a record `ingests/<sha256(ref)>/record`
//! (what was declared, and the segments its bytes are in) and the
//! segments. A writer dropped without a commit (the end of a `PATCH`)
//! sends the bytes past the recorded offset as one segment, then replaces
//! the record by compare-and-swap on its ETag. The first segment goes to
//! the content address of the bytes so far, `blobs/<alg>/<hex>`: an
//! upload sent in one chunk and committed next (docker, skopeo) is then
//! in the bucket already, and its commit sends nothing again. Later
//! segments go to `ingests/<sha256(ref)>/<start>-<hex>`, named by the
//! digest of everything up to their end, so two writes of one key are
//! the same bytes.
//!
//! A node opening an ingest compares its copy with the record. One it
//! lacks, or one another node extended, is fetched segment by segment and
//! hashed on the way. Bytes no record names are not promised to other
//! nodes: a node resuming there reports the recorded offset and the
//! client sends the rest again, as the resumable-upload protocol has it.
//!
//! Each node keeps, in `<ingest>/bucket`, the record it last wrote or
//! read and that record's ETag: what of its own copy the bucket has.

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::types::IngestStatus as Status;
use crate::bindings::kist::content::hasher::Hasher;
use crate::bindings::kist::content::objects::{self, PutMode};
use crate::bindings::wasi::clocks::wall_clock::Datetime;
use crate::bindings::wasi::filesystem::types::Descriptor;
use crate::content::bucket as blobs;
use crate::content::ingest::{self, Meta};
use crate::shared::bucket;
use crate::shared::digest::{Digest, key_of};
use crate::shared::error::{Error, Result, corrupt, fs as fs_error};
use crate::shared::fs::{self, Durability};

/// Where an ingest's bytes are in the bucket.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct Segment {
    /// Offset of its first byte in the ingest.
    start: u64,
    /// Its length.
    len: u64,
    /// Its object.
    key: String,
}

/// The bucket's record of one ingest.
#[derive(Serialize, Deserialize, Clone)]
struct Record {
    /// What was declared, as in the node's `meta`.
    meta: Meta,
    /// The segments, in order, each starting where the one before ends.
    segments: Vec<Segment>,
    /// When it was last written, in seconds since the epoch.
    updated: u64,
}

impl Record {
    /// The offset the bucket has: where the last segment ends.
    fn offset(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.start + s.len)
    }

    fn new(meta: &Meta) -> Self {
        Self {
            meta: meta.clone(),
            segments: Vec::new(),
            updated: fs::now().seconds,
        }
    }
}

/// The record a node last wrote or read, with its ETag.
#[derive(Serialize, Deserialize)]
struct Synced {
    etag: String,
    record: Record,
}

impl Synced {
    fn load(dir: &str) -> Result<Option<Self>> {
        let path = format!("{dir}/bucket");
        let Some(bytes) = fs::read_file(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(&path, e))
    }

    /// Not synced, as the rest of an ingest's state: after a power cut
    /// the record is read again and differs, and the node catches up.
    fn save(&self, dir: &str) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("record serialises");
        fs::write_atomic(dir, "bucket", &bytes, Durability::Cached)
    }
}

/// The objects of the ingest `r` lie under this prefix.
fn prefix(r: &str) -> String {
    format!("ingests/{}", key_of(r))
}

fn record_key(r: &str) -> String {
    format!("{}/record", prefix(r))
}

/// The bucket's record of `r` and its ETag.
fn fetch_record(r: &str) -> Result<Option<(Record, String)>> {
    read_record(&record_key(r))
}

/// The record at `key` and its ETag.
fn read_record(key: &str) -> Result<Option<(Record, String)>> {
    let Some((bytes, etag)) = bucket::get_tagged(key)? else {
        return Ok(None);
    };
    let record = serde_json::from_slice(&bytes).map_err(|e| corrupt(key, e))?;
    Ok(Some((record, etag)))
}

/// Removes the ingest under `prefix` from the bucket: its record first,
/// so no node resumes it, then its segments.
fn remove(prefix: &str) -> Result<()> {
    bucket::delete(&format!("{prefix}/record"))?;
    for key in bucket::keys(prefix)? {
        bucket::delete(&key)?;
    }
    Ok(())
}

/// Writes `record` as `r`'s under `mode`; its ETag. A failed condition
/// where the bucket holds this very record is this write's own, its
/// answer lost and the write retried: it succeeded.
fn store_record(r: &str, record: &Record, mode: &PutMode) -> Result<String> {
    let key = record_key(r);
    let bytes = serde_json::to_vec(record).expect("record serialises");
    match bucket::put_as(&key, &bytes, mode) {
        Ok(etag) => etag.ok_or_else(|| Error::Io(format!("{key}: the store has no bucket"))),
        Err(Error::Unavailable) => match bucket::get_tagged(&key)? {
            Some((held, etag)) if held == bytes => Ok(etag),
            _ => Err(Error::Unavailable),
        },
        Err(e) => Err(e),
    }
}

/// Brings the node's copy of the ingest `r` in `dir` (`local`: its meta
/// and data, if it has one) up to the bucket's record, under the
/// ingest's lock; `None` if the ingest exists nowhere (or ended on
/// another node: then the stale copy is removed). `may` checks a record's
/// meta before anything is fetched for the caller.
pub fn reconcile(
    dir: &str,
    r: &str,
    local: Option<(Meta, Descriptor)>,
    may: impl Fn(&Meta) -> Result<()>,
) -> Result<Option<(Meta, Descriptor)>> {
    if !bucket::maybe() {
        return Ok(local);
    }
    let known = if local.is_some() {
        Synced::load(dir)?
    } else {
        None
    };
    match (fetch_record(r)?, local) {
        (None, None) => Ok(None),
        (None, Some(_)) if known.is_some() => {
            // Committed or aborted through another node.
            ingest::remove(dir)?;
            Ok(None)
        }
        // Begun before the store had a bucket, or its record failed to
        // go up: it goes up now.
        (None, Some((meta, data))) => {
            begin(dir, &meta)?;
            Ok(Some((meta, data)))
        }
        (Some((_, etag)), Some(local)) if known.as_ref().is_some_and(|k| k.etag == etag) => {
            Ok(Some(local))
        }
        (Some((record, etag)), local) => {
            may(&record.meta)?;
            let data = match local {
                Some((_, data)) => data,
                None => {
                    ingest::create(dir, &record.meta)?;
                    ingest::open_data(dir)?
                        .ok_or_else(|| Error::Io(format!("{dir}/data vanished")))?
                }
            };
            let kept = known.map_or(0, |k| common(&k.record, &record));
            catch_up(dir, &data, &record, kept)?;
            record.meta.save(dir)?;
            let meta = record.meta.clone();
            Synced { etag, record }.save(dir)?;
            Ok(Some((meta, data)))
        }
    }
}

/// Where the bytes two records describe alike end: their common leading
/// segments.
fn common(a: &Record, b: &Record) -> u64 {
    a.segments
        .iter()
        .zip(&b.segments)
        .take_while(|(x, y)| x == y)
        .last()
        .map_or(0, |(s, _)| s.start + s.len)
}

/// Keeps the first `kept` bytes of `data` (those the bucket still has as
/// this node wrote them) and fetches the rest of `record`'s segments,
/// checked and hashed; saves the hash state.
fn catch_up(dir: &str, data: &Descriptor, record: &Record, kept: u64) -> Result<()> {
    let path = format!("{dir}/data");
    let kept = kept.min(fs::fstat(data, dir)?.size);
    data.set_size(kept)
        .map_err(|e| fs_error("truncate", &path, e))?;
    // A saved state up to `kept` still holds (one past it is ignored);
    // then none is kept, since one past `kept` describes bytes that are
    // being replaced.
    let algorithm = record.meta.algorithm();
    let hasher = ingest::resume_hash(dir, data, algorithm, kept)?;
    fs::remove_file(&format!("{dir}/hashstate"))?;
    for segment in record.segments.iter().filter(|s| s.start >= kept) {
        let key = &segment.key;
        let got = objects::download(key, 0, segment.len, data, segment.start, &hasher)
            .map_err(|e| bucket::error(key, e))?;
        let digest = Digest::of(algorithm, &hasher);
        if got != segment.len || (segment.start == 0 && *key != blobs::key(&digest)) {
            let _ = data.set_size(kept);
            return Err(Error::Corrupt(format!(
                "the bucket's {key}: {got} bytes hashing to {digest} where {} of a segment were recorded",
                segment.len
            )));
        }
    }
    ingest::sync_data(dir, data)?;
    ingest::save_hash_state(dir, record.offset(), &hasher)
}

/// Records the new ingest in `dir` in the bucket. Another node that began
/// the same ref at the same moment makes this fail with `unavailable`,
/// as a second writer on one node does, and the new copy is removed.
pub fn begin(dir: &str, meta: &Meta) -> Result<()> {
    if !bucket::maybe() {
        return Ok(());
    }
    let record = Record::new(meta);
    match store_record(&meta.reference, &record, &PutMode::IfAbsent) {
        Ok(etag) => Synced { etag, record }.save(dir),
        Err(e) => {
            ingest::remove(dir)?;
            Err(e)
        }
    }
}

/// Sends what the writer of `dir` wrote past the record (its `data` holds
/// `offset` bytes hashing to `so_far`) and records it, if the record is
/// still the one this node knows; else the bytes stay on this node only,
/// and the next open here catches up with the bucket instead.
pub fn checkpoint(
    dir: &str,
    meta: &Meta,
    data: &Descriptor,
    offset: u64,
    so_far: &Digest,
) -> Result<()> {
    if !bucket::maybe() {
        return Ok(());
    }
    let Some(known) = Synced::load(dir)? else {
        return Ok(());
    };
    let mut record = known.record.clone();
    let start = record.offset();
    if start == offset && record.meta == *meta {
        return Ok(());
    }
    if offset > start {
        let key = if start == 0 {
            blobs::share(&fs::Dir::open(dir)?, "data", so_far, offset)?;
            blobs::key(so_far)
        } else {
            let key = format!("{}/{start}-{}", prefix(&meta.reference), so_far.hex);
            let hasher = Hasher::new(so_far.algorithm);
            objects::upload(
                &key,
                data,
                start,
                offset - start,
                &hasher,
                &PutMode::Overwrite,
            )
            .map_err(|e| bucket::error(&key, e))?;
            key
        };
        record.segments.push(Segment {
            start,
            len: offset - start,
            key,
        });
    }
    record.meta = meta.clone();
    record.updated = fs::now().seconds;
    let etag = store_record(&meta.reference, &record, &PutMode::IfMatch(known.etag))?;
    Synced { etag, record }.save(dir)
}

/// Forgets, in what this node knows of the bucket, the segments past
/// `size` (the writer cut its data back there): the next checkpoint
/// sends the bytes from the last whole segment before it again.
pub fn truncated(dir: &str, size: u64) -> Result<()> {
    let Some(mut known) = Synced::load(dir)? else {
        return Ok(());
    };
    known.record.segments.retain(|s| s.start + s.len <= size);
    known.save(dir)
}

/// The status of `r` from the bucket's record, when this node's copy
/// (`here`: whether it has the ingest in `dir`) is not the record's;
/// `not-found` if the ingest ended on another node.
pub fn status(dir: &str, r: &str, here: bool) -> Result<Option<(Status, Meta)>> {
    if !bucket::maybe() {
        return Ok(None);
    }
    let known = if here { Synced::load(dir)? } else { None };
    match fetch_record(r)? {
        None if known.is_some() => Err(Error::NotFound),
        None => Ok(None),
        Some((_, etag)) if known.is_some_and(|k| k.etag == etag) => Ok(None),
        Some((record, _)) => {
            let updated = Datetime {
                seconds: record.updated,
                nanoseconds: 0,
            };
            let status = record.meta.status(record.offset(), Some(updated));
            Ok(Some((status, record.meta)))
        }
    }
}

/// Removes the ingest `r` from the bucket (committed or aborted). The
/// first segment, a content-addressed blob object, stays: it is the
/// committed blob, or bytes another push may share.
pub fn finish(r: &str) -> Result<()> {
    if !bucket::maybe() {
        return Ok(());
    }
    remove(&prefix(r))
}

/// Removes from the bucket the ingests no node has written to for `ttl`
/// seconds before `now` (uploads their clients abandoned, on whichever
/// node, or whose node died), unless a lease holds them; with `dry_run`
/// only says which. A node's own copy of one goes by its own TTL.
pub fn expire(ttl: u64, now: u64, dry_run: bool) -> Result<Expired> {
    let mut expired = Expired::default();
    if !bucket::maybe() {
        return Ok(expired);
    }
    for key in bucket::keys("ingests")? {
        let Some(prefix) = key.strip_suffix("/record") else {
            continue;
        };
        let Some((record, _)) = read_record(&key)? else {
            continue; // committed or aborted meanwhile
        };
        let leased = crate::retention::leases::ingest_leases(&record.meta)
            .next()
            .is_some();
        if leased || now.saturating_sub(record.updated) < ttl {
            let blobs = record
                .segments
                .iter()
                .filter_map(|s| blobs::digest_of(&s.key));
            expired.kept_blobs.extend(blobs.map(|d| d.to_string()));
            continue;
        }
        if !dry_run {
            remove(prefix)?;
        }
        let removed = (record.meta.reference.clone(), record.offset());
        expired.removed.push(removed);
    }
    Ok(expired)
}

/// What [`expire`] found.
#[derive(Default)]
pub struct Expired {
    /// The refs and sizes of the ingests it removed (or would).
    pub removed: Vec<(String, u64)>,
    /// The blobs the ingests it kept have segments in (a first segment
    /// is at its content address): a collection of the bucket keeps them.
    pub kept_blobs: std::collections::BTreeSet<String>,
}

/// Whether the bucket has a record of `r` (an ingest begun elsewhere).
pub fn exists(r: &str) -> Result<Option<Meta>> {
    Ok(fetch_record(r)?.map(|(record, _)| record.meta))
}
