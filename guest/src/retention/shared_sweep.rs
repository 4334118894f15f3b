//! The last stage of a collection on a bucket store: blobs the bucket
//! keeps for nothing are deleted from it, with no leader and nothing
//! stopped.
//!
//! A blob object is referenced when a repository holds it (a
//! `repos/…/_blobs/` record), an ingest has a segment in it, or a node
//! lists it among its roots (`node_roots`). One referenced by nothing,
//! untouched for the grace (the upload grace), is condemned; one
//! condemned for the grace, still referenced by nothing, written before
//! its condemnation and left out by every node's roots listed since, is
//! deleted (see `condemned` for the steps that make a hold taken meanwhile
//! win). Times are the bucket's clock throughout. Two collections at once
//! condemn and delete the same blobs, harmlessly.
//!
//! First the node publishes its own roots and uploads again what it
//! keeps that the bucket lacks (a hold it took on a blob a collection
//! deleted before it could tell).

use std::collections::{BTreeMap, BTreeSet};

use crate::bindings::exports::kist::content::retention::{Removed, RemovedKind};
use crate::bindings::kist::content::objects::ObjectMeta;
use crate::content::bucket as blobs;
use crate::retention::scan::Scan;
use crate::retention::{condemned, node_roots};
use crate::shared::bucket;
use crate::shared::digest::Digest;
use crate::shared::error::Result;
use crate::shared::layout;

/// Blobs one step deletes at most.
const STEP: usize = 256;

/// A sweep of the bucket in progress: the condemned blobs due, next last.
pub struct Sweep {
    dry_run: bool,
    due: Vec<(Digest, String, u64)>,
}

impl Sweep {
    /// Publishes this node's roots from `scan` (its collection began at
    /// the bucket's `since`), restores what it keeps that the bucket
    /// lacks, acquits and condemns, and lists what is due: `None` without
    /// a bucket. `ingests` are the blobs kept ingests have segments in.
    /// A dry run writes nothing and lists what is due.
    pub fn start(
        since: Option<u64>,
        scan: &Scan,
        ingests: BTreeSet<String>,
        dry_run: bool,
    ) -> Result<Option<Self>> {
        if !bucket::maybe() {
            return Ok(None);
        }
        let objects = blob_objects()?;
        let now = match since {
            Some(since) if !dry_run => {
                restore(scan, &objects)?;
                node_roots::publish(since, scan.marked.clone())?
            }
            _ => crate::shared::fs::now().seconds,
        };
        let nodes = node_roots::all()?;
        let mut live = members()?;
        live.extend(ingests);
        for (_, roots) in &nodes {
            live.extend(roots.roots.iter().cloned());
        }
        let grace = scan.config.upload_grace;
        let mut due = Vec::new();
        let mut accused = BTreeSet::new();
        for record in bucket::objects(condemned::PREFIX)? {
            let Some((d, gone)) = condemned::parse(&record.key) else {
                continue;
            };
            let at = record.modified_seconds;
            let key = d.to_string();
            if gone {
                if at.saturating_add(grace) <= now && !dry_run {
                    bucket::delete(&record.key)?;
                }
                continue;
            }
            accused.insert(key.clone());
            let object = objects.get(&key);
            if live.contains(&key) || object.is_none_or(|o| o.modified_seconds >= at) {
                if !dry_run {
                    condemned::acquit(&d)?;
                }
                continue;
            }
            let heard = nodes.iter().all(|(_, r)| r.since > at);
            if heard && at.saturating_add(grace) <= now {
                let size = object.map_or(0, |o| o.size);
                due.push((d, record.etag, size));
            }
        }
        for (key, object) in &objects {
            let idle = object.modified_seconds.saturating_add(grace) <= now;
            if idle && !live.contains(key) && !accused.contains(key) && !dry_run {
                condemned::condemn(&Digest::parse(key)?)?;
            }
        }
        Ok(Some(Self { dry_run, due }))
    }

    /// Deletes the next blobs due; what it deleted (or would).
    pub fn step(&mut self) -> Result<Vec<Removed>> {
        let mut removed = Vec::new();
        for (d, etag, size) in self.due.drain(self.due.len().saturating_sub(STEP)..) {
            if self.dry_run || condemned::delete(&d, &etag)? {
                removed.push(Removed {
                    kind: RemovedKind::Blob,
                    name: format!("bucket:{d}"),
                    bytes: size,
                });
            }
        }
        Ok(removed)
    }

    /// Whether nothing is left to delete.
    pub fn done(&self) -> bool {
        self.due.is_empty()
    }
}

/// The blob objects in the bucket, by digest.
fn blob_objects() -> Result<BTreeMap<String, ObjectMeta>> {
    let objects = bucket::objects("blobs")?.into_iter();
    Ok(objects
        .filter_map(|o| Some((blobs::digest_of(&o.key)?.to_string(), o)))
        .collect())
}

/// The blobs some repository holds (`repos/<repository>/_blobs/<alg>/<hex>`).
fn members() -> Result<BTreeSet<String>> {
    let mut live = BTreeSet::new();
    for key in bucket::keys("repos")? {
        let Some((_, blob)) = key.rsplit_once("/_blobs/") else {
            continue;
        };
        if let Ok(d) = Digest::parse(&blob.replacen('/', ":", 1)) {
            live.insert(d.to_string());
        }
    }
    Ok(live)
}

/// Uploads again the blobs this node keeps (its scan marked them) that
/// the bucket lacks.
fn restore(scan: &Scan, objects: &BTreeMap<String, ObjectMeta>) -> Result<()> {
    for key in scan.marked.iter().filter(|k| !objects.contains_key(*k)) {
        let Some(blob) = scan.blobs.get(key) else {
            continue;
        };
        let d = &blob.digest;
        let here = layout::blobs(d.algorithm)?;
        if here.stat(&d.hex)?.is_some() {
            blobs::share(here, &d.hex, d, blob.size)?;
        }
    }
    Ok(())
}
