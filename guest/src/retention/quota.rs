//! Quotas at write time. What counts against each quota is kept in
//! `retention-usage.json`: exact after a collection, then raised by every
//! write charged against it, so between collections it can only
//! overstate. A write that would cross a quota evicts cached content and
//! counts exactly before it is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bindings::kist::content::locks;
use crate::bindings::kist::content::space;
use crate::retention::scan::Scan;
use crate::retention::settings::{self, Config, QuotaRecord};
use crate::retention::{collector, holds};
use crate::shared::digest::Digest;
use crate::shared::error::{self, Error, Result, corrupt};
use crate::shared::fs::{self, Durability};

/// Where the counters live.
const FILE: &str = "retention-usage.json";
/// The lock that serialises charges.
const LOCK: &str = "retention-usage";

/// Bytes counted against each quota, by its key (see [`key`]).
#[derive(Serialize, Deserialize, Default)]
pub struct Counters {
    pub used: BTreeMap<String, u64>,
}

/// A quota's key in the counters: its holder prefix, or empty for the
/// store-wide one.
fn key(q: &QuotaRecord) -> String {
    q.prefix.clone().unwrap_or_default()
}

/// The counters as a scan finds them, less what was freed since.
pub fn exact(config: &Config, scan: &Scan) -> Counters {
    Counters {
        used: config
            .quotas
            .iter()
            .map(|q| (key(q), scan.used(q.prefix.as_deref())))
            .collect(),
    }
}

/// Replaces the counters.
pub fn save(counters: &Counters) -> Result<()> {
    let _guard = locks::lock(LOCK, 10_000).map_err(|e| error::lock(LOCK, e))?;
    write(counters)
}

fn write(counters: &Counters) -> Result<()> {
    let bytes = serde_json::to_vec(counters).expect("counters serialise");
    // Not synced: after a crash they are counted again.
    fs::write_atomic(".", FILE, &bytes, Durability::Cached)
}

fn load() -> Result<Option<Counters>> {
    let Some(bytes) = fs::read_file(FILE)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(FILE, e))
}

/// Forgets the counters (the quotas changed): the next charge counts.
pub fn reset() -> Result<()> {
    fs::remove_file(FILE).map(drop)
}

/// Charges the blob `d` (of `size` bytes) for `holder` if it is about to
/// hold it without holding it already: a new hold (a mount, an adopted
/// blob, content stored before) counts against its quotas as a write
/// does, and is refused the same way.
pub fn charge_hold(d: &Digest, holder: &str, size: u64) -> Result<()> {
    if holds::load(d)?.holders.contains(holder) {
        return Ok(());
    }
    charge(holder, size)
}

/// Charges `bytes` about to be written for `holder` against every quota
/// that counts it: `Ok` once they fit (after evicting cached content if
/// needed), `no-space` naming the quota otherwise. Costs nothing when the
/// store has no quota. Take no other lock around it.
pub fn charge(holder: &str, bytes: u64) -> Result<()> {
    let config = settings::current()?;
    let quotas: Vec<&QuotaRecord> = config.quotas.iter().filter(|q| q.counts(holder)).collect();
    if bytes == 0 || quotas.is_empty() {
        return Ok(());
    }
    let filesystem = space::filesystem();
    let mut evicted = false;
    loop {
        let guard = locks::lock(LOCK, 10_000).map_err(|e| error::lock(LOCK, e))?;
        let mut counters = match load()? {
            Some(c) => c,
            None => {
                let mut scan = Scan::new(config.clone())?;
                scan.finish()?;
                exact(&config, &scan)
            }
        };
        let over: Vec<&QuotaRecord> = quotas
            .iter()
            .copied()
            .filter(|q| {
                q.limit(filesystem).is_some_and(|limit| {
                    counters
                        .used
                        .get(&key(q))
                        .copied()
                        .unwrap_or(0)
                        .saturating_add(bytes)
                        > limit
                })
            })
            .collect();
        if over.is_empty() {
            for q in &quotas {
                *counters.used.entry(key(q)).or_default() += bytes;
            }
            return write(&counters);
        }
        drop(guard);
        if evicted {
            let q = over[0];
            let used = counters.used.get(&key(q)).copied().unwrap_or(0);
            return Err(Error::NoSpace(format!(
                "{}: {used} bytes are used, {bytes} more do not fit",
                q.describe(filesystem)
            )));
        }
        // Evict what counts against the crossed quotas, then count exactly
        // and try once more.
        collector::evict(&config, &over, bytes)?;
        evicted = true;
    }
}
