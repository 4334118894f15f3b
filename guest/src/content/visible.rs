//! Which stored blobs a caller sees: those its holder holds (any holder,
//! for an unconfined caller), and those it reaches through the
//! `containerd.io/gc.ref.content` labels of what it sees, as the collector
//! keeps them. What the collector keeps for a caller is what it can read.

use std::collections::{HashMap, HashSet};

use crate::content::{index, labels};
use crate::retention::holds;
use crate::shared::digest::{ALGORITHMS, Digest};
use crate::shared::error::Result;
use crate::shared::fs;
use crate::shared::scope::Caller;

/// Whether `caller` sees the stored blob `d` by holding it, given its live
/// holders: a hold it sees, or (unconfined) an `index.json` entry that
/// keeps it.
pub fn held(caller: &Caller, d: &Digest, live: &[String]) -> Result<bool> {
    Ok(caller.sees(live) || (!caller.confined && index::keeps(d)?))
}

/// Whether `caller` reaches the stored blob `d` from a blob it holds,
/// following references backwards.
///
/// Every label file is read: this runs only for a blob the caller does
/// not hold (rare: a referenced blob whose own holder released it), and
/// a store keeps labels only on blobs that have some.
pub fn reached(caller: &Caller, d: &Digest) -> Result<bool> {
    let mut referrers: HashMap<String, Vec<Digest>> = HashMap::new();
    for alg in ALGORITHMS {
        for hex in labels::labelled(alg)? {
            let source = Digest {
                algorithm: alg,
                hex,
            };
            // A damaged label file references nothing (fsck reports it).
            let file = labels::load(&source).unwrap_or_default();
            let holders = holds::load(&source)?.holding(&source)?;
            for target in holds::references(file.counted(&holders)) {
                referrers
                    .entry(target.to_string())
                    .or_default()
                    .push(source.clone());
            }
        }
    }
    let mut seen = HashSet::from([d.to_string()]);
    let mut queue = vec![d.to_string()];
    while let Some(target) = queue.pop() {
        for source in referrers.get(&target).into_iter().flatten() {
            if !seen.insert(source.to_string()) || fs::stat(&source.blob_path())?.is_none() {
                continue;
            }
            let file = labels::load(source).unwrap_or_default();
            let live = holds::load(source)?.live(source, &file)?;
            if held(caller, source, &live)? {
                return Ok(true);
            }
            // A cached blob still references what it references.
            queue.push(source.to_string());
        }
    }
    Ok(false)
}
