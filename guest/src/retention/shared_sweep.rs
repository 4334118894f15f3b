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

/// A sweep of the bucket in progress: what is left to do, next last.
pub struct Sweep {
    dry_run: bool,
    actions: Vec<Action>,
}

/// One write a sweep makes.
enum Action {
    /// Take back the condemnation of a blob referenced again (or whose
    /// object is gone or new).
    Acquit(Digest),
    /// Condemn a blob referenced by nothing.
    Condemn(Digest),
    /// Delete the record of a blob deleted or acquitted long enough ago.
    Forget(String),
    /// Delete a blob condemned long enough (its record's ETag, its size).
    Delete(Digest, String, u64),
}

impl Sweep {
    /// Publishes this node's roots from `scan` (its collection began at
    /// the bucket's `since`), restores what it keeps that the bucket
    /// lacks, and lists what to acquit, condemn and delete: `None`
    /// without a bucket. `ingests` are the blobs kept ingests have
    /// segments in. A dry run writes nothing and only reports deletions.
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
        let mut live = members()?;
        let now = match since {
            Some(since) if !dry_run => {
                restore(scan, &objects)?;
                // What a repository holds, its record keeps already: the
                // roots list only the rest (a registry's are short).
                let roots = scan.marked.difference(&live).cloned().collect();
                node_roots::publish(since, roots)?
            }
            _ => crate::shared::fs::now().seconds,
        };
        let nodes = node_roots::all()?;
        live.extend(ingests);
        for roots in &nodes {
            live.extend(roots.roots.iter().cloned());
        }
        let grace = scan.config.upload_grace;
        let past_grace = |at: u64| at.saturating_add(grace) <= now;
        let mut actions = Vec::new();
        let mut accused = BTreeSet::new();
        for record in bucket::objects(condemned::PREFIX)? {
            let Some(d) = condemned::parse(&record.key) else {
                continue;
            };
            let at = record.modified_seconds;
            let key = d.to_string();
            accused.insert(key.clone());
            if record.size > 0 {
                if at.saturating_add(grace.max(condemned::RECORD_LIFE)) <= now {
                    actions.push(Action::Forget(record.key));
                }
                continue;
            }
            let object = objects.get(&key);
            if live.contains(&key) || object.is_none_or(|o| o.modified_seconds >= at) {
                actions.push(Action::Acquit(d));
            } else if past_grace(at) && nodes.iter().all(|r| r.since > at) {
                let size = object.map_or(0, |o| o.size);
                actions.push(Action::Delete(d, record.etag, size));
            }
        }
        for (key, object) in &objects {
            if past_grace(object.modified_seconds) && !live.contains(key) && !accused.contains(key)
            {
                actions.push(Action::Condemn(Digest::parse(key)?));
            }
        }
        Ok(Some(Self { dry_run, actions }))
    }

    /// Does the next writes; the blobs it deleted (or would).
    pub fn step(&mut self) -> Result<Vec<Removed>> {
        let mut removed = Vec::new();
        let next = self.actions.len().saturating_sub(STEP);
        for action in self.actions.drain(next..) {
            match action {
                Action::Delete(d, etag, size) => {
                    if self.dry_run || condemned::delete(&d, &etag)? {
                        removed.push(Removed {
                            kind: RemovedKind::Blob,
                            name: format!("bucket:{d}"),
                            bytes: size,
                        });
                    }
                }
                _ if self.dry_run => {}
                Action::Acquit(d) => condemned::acquit(&d)?,
                Action::Condemn(d) => condemned::condemn(&d)?,
                Action::Forget(key) => bucket::delete(&key)?,
            }
        }
        Ok(removed)
    }

    /// Whether nothing is left to do.
    pub fn done(&self) -> bool {
        self.actions.is_empty()
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
        if let Some(d) = Digest::from_key_path(blob) {
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
