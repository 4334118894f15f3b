//! The collector: a [`Collection`] removes, in bounded steps, what nothing
//! needs any more — expired leases, cached blobs past their TTL (or, while
//! a quota is exceeded, oldest last use first) that nothing live reaches,
//! and ingests idle past the ingest TTL — and [`evict`] frees space for a
//! write that would cross a quota.
//!
//! It runs beside writers. A blob is only removed under its lock, after
//! its record is read again: a hold taken meanwhile keeps it, and so does a
//! blob being written that references it (writers touch what they
//! reference before they publish; see `holds::touch`).

use std::cell::RefCell;

use crate::bindings::exports::kist::content::retention::{GuestCollection, Removed, RemovedKind};
use crate::bindings::kist::content::locks;
use crate::bindings::kist::content::space;
use crate::content::{index, labels, store};
use crate::retention::holds::{self, GRACE_SECONDS, Record, Stamp};
use crate::retention::leases;
use crate::retention::quota;
use crate::retention::scan::{Blob, Scan};
use crate::retention::settings::{self, Config, QuotaRecord};
use crate::retention::{node_roots, shared_sweep};
use crate::shared::scope::Caller;
use std::collections::{BTreeSet, HashMap};

use crate::shared::digest::{self, Digest};
use crate::shared::error::Result;
use crate::shared::fs::{self, Durability};
use crate::shared::layout;

/// Blobs, ingests or leases one step removes at most.
const STEP: usize = 256;

/// A collection in progress (the `collection` resource).
pub struct Collection(RefCell<State>);

struct State {
    /// Who started the collection: only an unconfined caller may run one.
    caller: Caller,
    dry_run: bool,
    stage: Stage,
    /// Blobs and ingests removed so far (digests, ingest dirs) and when,
    /// to correct the scan's counts at the end and to tell stale
    /// references from new ones.
    gone: HashMap<String, Stamp>,
    /// Blobs unlinked whose labels and records are still to go (see
    /// [`State::settle`]).
    unlinked: Vec<Digest>,
    /// The bucket's time when this collection began, if the store has a
    /// bucket (and it is not a dry run).
    since: Option<u64>,
}

enum Stage {
    Start,
    /// Expired leases still to remove.
    Leases(Vec<leases::Record>),
    Scanning(Scan),
    /// Cached blobs (nothing live reaches them), oldest last use first,
    /// next last.
    Sweeping(Scan, Vec<String>),
    /// Ingests past the ingest TTL, next last.
    Ingests(Scan, Vec<String>),
    /// Blobs the bucket keeps for nothing.
    Bucket(shared_sweep::Sweep),
    Done,
}

impl GuestCollection for Collection {
    fn new(dry_run: bool) -> Self {
        Self(RefCell::new(State {
            caller: Caller::current(),
            dry_run,
            stage: Stage::Start,
            gone: HashMap::new(),
            unlinked: Vec::new(),
            since: None,
        }))
    }

    fn next(&self) -> Result<Option<Vec<Removed>>> {
        let mut s = self.0.borrow_mut();
        s.caller.administer("collecting")?;
        s.step()
    }
}

impl State {
    fn step(&mut self) -> Result<Option<Vec<Removed>>> {
        layout::ensure()?;
        let mut removed = Vec::new();
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Start => {
                // What interrupted removals left, first.
                if !self.dry_run {
                    crate::content::ingest::sweep_removed()?;
                    holds::sweep_orphans()?;
                    crate::registry::referrers::sweep()?;
                    // A crash after an eviction can leave its mirrored tag.
                    crate::registry::tags::forget_evicted(|_| true)?;
                    self.since = node_roots::begin()?;
                }
                let now = holds::now();
                let expired = leases::all()?
                    .into_iter()
                    .filter(|l| !l.live(now))
                    .collect();
                self.stage = Stage::Leases(expired);
            }
            Stage::Leases(mut pending) => {
                for lease in pending.drain(pending.len().saturating_sub(STEP)..) {
                    if !self.dry_run && !expire(&lease)? {
                        continue;
                    }
                    removed.push(Removed {
                        kind: RemovedKind::Lease,
                        name: lease.id.clone(),
                        bytes: 0,
                    });
                }
                self.stage = if pending.is_empty() {
                    Stage::Scanning(Scan::new(settings::current()?)?)
                } else {
                    Stage::Leases(pending)
                };
            }
            Stage::Scanning(mut scan) => {
                scan.step()?;
                self.stage = if scan.done() {
                    let cached = cached(&scan);
                    Stage::Sweeping(scan, cached)
                } else {
                    Stage::Scanning(scan)
                };
            }
            Stage::Sweeping(scan, mut cached) => {
                for key in cached.drain(cached.len().saturating_sub(STEP)..).rev() {
                    let blob = &scan.blobs[&key];
                    if let Some(bytes) = self.sweep(&scan, blob, false)? {
                        removed.push(blob_removed(blob, bytes));
                    }
                }
                self.settle()?;
                self.stage = if cached.is_empty() {
                    let expired = scan
                        .ingests
                        .iter()
                        .filter(|i| scan.expired(i))
                        .map(|i| i.meta.reference.clone())
                        .collect();
                    Stage::Ingests(scan, expired)
                } else {
                    Stage::Sweeping(scan, cached)
                };
            }
            Stage::Ingests(scan, mut expired) => {
                for reference in expired.drain(expired.len().saturating_sub(STEP)..) {
                    let ingest = scan
                        .ingests
                        .iter()
                        .find(|i| i.meta.reference == reference)
                        .expect("listed");
                    if self.dry_run || abort(&ingest.dir)? {
                        self.gone.insert(ingest.dir.clone(), holds::now());
                        removed.push(Removed {
                            kind: RemovedKind::Ingest,
                            name: reference,
                            bytes: ingest.size,
                        });
                    }
                }
                if expired.is_empty() {
                    let (ttl, now) = (scan.config.ingest_ttl, scan.started.0);
                    let shared = crate::content::shared_ingest::expire(ttl, now, self.dry_run)?;
                    removed.extend(shared.removed.into_iter().map(|(name, bytes)| Removed {
                        kind: RemovedKind::Ingest,
                        name,
                        bytes,
                    }));
                    let snapshots =
                        crate::snapshots::retention::collect(&scan.snapshot_refs, self.dry_run)?;
                    removed.extend(snapshots.into_iter().map(|name| Removed {
                        kind: RemovedKind::Snapshot,
                        name,
                        bytes: 0,
                    }));
                    removed.extend(self.finish(&scan)?);
                    let sweep = shared_sweep::Sweep::start(
                        self.since,
                        &scan,
                        shared.kept_blobs,
                        self.dry_run,
                    )?;
                    self.stage = sweep.map_or(Stage::Done, Stage::Bucket);
                } else {
                    self.stage = Stage::Ingests(scan, expired);
                }
            }
            Stage::Bucket(mut sweep) => {
                removed.extend(sweep.step()?);
                if !sweep.done() {
                    self.stage = Stage::Bucket(sweep);
                }
            }
            Stage::Done => return Ok(None),
        }
        Ok(Some(removed))
    }

    /// Removes the cached blob `blob` if its time has come (or `evict`),
    /// nothing took it back meanwhile and no blob being written references
    /// it; returns the bytes freed. A dry run only says whether it would.
    fn sweep(&mut self, scan: &Scan, blob: &Blob, evict: bool) -> Result<Option<u64>> {
        let ttl = scan.config.cache_ttl;
        let freed = if self.dry_run {
            let due = blob
                .record
                .released
                .is_none_or(|r| r.0.saturating_add(ttl) <= scan.started.0);
            (evict || due).then_some(blob.size)
        } else {
            let freed = unlink_cached(&blob.digest, ttl, evict, &self.gone)?;
            if freed.is_some() {
                self.unlinked.push(blob.digest.clone());
            }
            freed
        };
        if freed.is_some() {
            self.gone.insert(blob.digest.to_string(), holds::now());
        }
        Ok(freed)
    }

    /// Finishes the removals of a step: the blob directories are synced
    /// once, then the unlinked blobs' labels and records go (a crash in
    /// between leaves released records and labels without blobs, which the
    /// next collection removes; never a blob without its record, which
    /// would count as held by `default`).
    fn settle(&mut self) -> Result<()> {
        if self.unlinked.is_empty() {
            return Ok(());
        }
        let names: BTreeSet<_> = self
            .unlinked
            .iter()
            .map(|d| digest::name(d.algorithm))
            .collect();
        for alg in digest::ALGORITHMS {
            if names.contains(digest::name(alg)) {
                layout::blobs(alg)?.sync()?;
            }
        }
        let mut evicted = BTreeSet::new();
        for d in self.unlinked.drain(..) {
            let _lock = store::lock_blob(&d)?;
            // Stored again meanwhile: its record is the new one's.
            if layout::blobs(d.algorithm)?.stat(&d.hex)?.is_none() {
                labels::remove(&d)?;
                holds::remove(&d)?;
                evicted.insert(d.to_string());
            }
        }
        crate::registry::tags::forget_evicted(|d| evicted.contains(d))
    }

    /// What counts against `q` now: what the scan counted, less what this
    /// collection removed.
    fn used(&self, scan: &Scan, q: &QuotaRecord) -> u64 {
        let gone: u64 = self
            .gone
            .keys()
            .map(|g| match scan.blobs.get(g) {
                Some(b) if counts(q, b) => b.size,
                Some(_) => 0,
                None => scan
                    .ingests
                    .iter()
                    .find(|i| i.dir == *g && q.prefix.is_none())
                    .map_or(0, |i| i.size),
            })
            .sum();
        scan.used(q.prefix.as_deref()).saturating_sub(gone)
    }

    /// Sets the quota counters to what is used now.
    fn save_counters(&self, scan: &Scan) -> Result<()> {
        if self.dry_run {
            return Ok(());
        }
        quota::save(&quota::Counters {
            used: scan
                .config
                .quotas
                .iter()
                .map(|q| (q.prefix.clone().unwrap_or_default(), self.used(scan, q)))
                .collect(),
        })
    }

    /// The end of a collection: what the quotas still need is evicted, and
    /// the quota counters are set to what is really used.
    fn finish(&mut self, scan: &Scan) -> Result<Vec<Removed>> {
        let mut removed = Vec::new();
        let filesystem = space::filesystem();
        for q in &scan.config.quotas {
            let Some(limit) = q.limit(filesystem) else {
                continue;
            };
            let used = self.used(scan, q);
            if used <= limit {
                continue;
            }
            let mut over = used - limit;
            for key in cached(scan).into_iter().rev() {
                let blob = &scan.blobs[&key];
                if over == 0 || !counts(q, blob) || fs::stat(&blob.digest.blob_path())?.is_none() {
                    continue;
                }
                if let Some(bytes) = self.sweep(scan, blob, true)? {
                    over = over.saturating_sub(bytes);
                    removed.push(blob_removed(blob, bytes));
                }
            }
        }
        self.settle()?;
        self.save_counters(scan)?;
        Ok(removed)
    }
}

fn blob_removed(blob: &Blob, bytes: u64) -> Removed {
    Removed {
        kind: RemovedKind::Blob,
        name: blob.digest.to_string(),
        bytes,
    }
}

/// Whether `blob` counts against quota `q`.
fn counts(q: &QuotaRecord, blob: &Blob) -> bool {
    q.prefix.is_none() || blob.counted_by(|h| q.counts(h))
}

/// The blobs a scan found that nothing live reaches, last used first:
/// taken from the end, oldest first.
fn cached(scan: &Scan) -> Vec<String> {
    let mut cached: Vec<(&String, Stamp)> = scan
        .blobs
        .iter()
        .filter(|(k, _)| !scan.marked.contains(*k))
        .map(|(k, b)| (k, b.record.last_use()))
        .collect();
    cached.sort_by_key(|c| std::cmp::Reverse(c.1));
    cached.into_iter().map(|(k, _)| k.clone()).collect()
}

/// Removes an expired lease and releases what it held; false if it was
/// renewed or removed meanwhile.
fn expire(lease: &leases::Record) -> Result<bool> {
    let _guard = leases::lock(&lease.id)?;
    match leases::load(&lease.id)? {
        Some(r) if !r.live(holds::now()) => {
            leases::remove(&r.id)?;
            leases::release_all(&r)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Aborts an expired ingest unless a writer has it open.
fn abort(dir: &str) -> Result<bool> {
    let Ok(_writer) = locks::try_lock(dir) else {
        return Ok(false);
    };
    crate::content::ingest::remove(dir)?;
    Ok(true)
}

/// Unlinks the blob `d` if, read again under its lock, no root holds it,
/// it was released `ttl` seconds ago or more (or `evict`), and no blob
/// written since references it; returns the bytes freed. Its labels and
/// record go in [`State::settle`]. Holds that no longer keep it by
/// themselves (a lease that ended, a registry hold past its grace) are
/// released now, and its cache TTL counts from now.
fn unlink_cached(
    d: &Digest,
    ttl: u64,
    evict: bool,
    gone: &HashMap<String, Stamp>,
) -> Result<Option<u64>> {
    let lock = store::lock_blob(d)?;
    let Some(stat) = layout::blobs(d.algorithm)?.stat(&d.hex)? else {
        return Ok(None);
    };
    let mut record = holds::load(d)?;
    let now = holds::now();
    if kept(d, &record, now)? || referenced(d, &record, now, gone)? {
        return Ok(None);
    }
    if !record.holders.is_empty() || record.released.is_none() {
        record.released_by = std::mem::take(&mut record.holders);
        record.until.clear();
        record.released = Some(now);
        holds::save(d, &record, Durability::Synced, &lock)?;
    }
    let released = record.released.unwrap_or(now);
    if !evict && released.0.saturating_add(ttl) > now.0 {
        return Ok(None);
    }
    layout::blobs(d.algorithm)?.remove(&d.hex)?;
    drop(lock);
    Ok(Some(stat.size))
}

/// Whether `d`, whose record is `record`, is kept by itself at `now`: a
/// root holds it, or an `index.json` entry keeps it.
fn kept(d: &Digest, record: &Record, now: Stamp) -> Result<bool> {
    let labels = labels::load(d).unwrap_or_default();
    if !record.roots(d, &labels, now)?.is_empty() {
        return Ok(true);
    }
    index::keeps(d)
}

/// Whether a blob written since `d` was released references it: one that
/// is kept (and still has the reference), or one not published yet whose
/// writer touched `d` within the grace period. A referrer this
/// collection removed (in `gone`) after it touched `d` keeps nothing: its
/// touch is stale (a writer storing it again touches `d` again, later).
fn referenced(
    d: &Digest,
    record: &Record,
    now: Stamp,
    gone: &HashMap<String, Stamp>,
) -> Result<bool> {
    for (source, when) in &record.touched {
        let Ok(source) = Digest::parse(source) else {
            continue;
        };
        if gone.get(&source.to_string()).is_some_and(|at| when <= at) {
            continue;
        }
        if fs::stat(&source.blob_path())?.is_none() {
            if now.0.saturating_sub(when.0) < GRACE_SECONDS {
                return Ok(true);
            }
            continue;
        }
        let labels = labels::load(&source).unwrap_or_default();
        let source_record = holds::load(&source)?;
        let holders = source_record.holding(&source)?;
        if holds::references(labels.counted(&holders)).contains(d)
            && kept(&source, &source_record, now)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Frees room for a write of `bytes` that would cross the quotas `over`:
/// scans the store, removes cached content that counts against them,
/// oldest last use first, whatever its TTL, until the write fits or none
/// is left, and sets the quota counters to what is then used.
pub fn evict(config: &Config, over: &[&QuotaRecord], bytes: u64) -> Result<()> {
    let mut scan = Scan::new(config.clone())?;
    scan.finish()?;
    let filesystem = space::filesystem();
    let mut state = State {
        caller: Caller::current(),
        dry_run: false,
        stage: Stage::Done,
        gone: HashMap::new(),
        unlinked: Vec::new(),
        since: None,
    };
    for key in cached(&scan).into_iter().rev() {
        let blob = &scan.blobs[&key];
        let needed = over.iter().any(|q| {
            counts(q, blob)
                && q.limit(filesystem)
                    .is_some_and(|limit| state.used(&scan, q).saturating_add(bytes) > limit)
        });
        if needed {
            state.sweep(&scan, blob, true)?;
        }
    }
    state.settle()?;
    state.save_counters(&scan)
}
