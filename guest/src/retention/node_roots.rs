//! What each node on a bucket keeps, told to the other nodes: a
//! collection deletes a blob from the bucket only once every node has
//! said, since the blob was condemned, that it does not keep it (see
//! `retention::shared_sweep`).
//!
//! - `nodes/<id>/roots`: the blobs the node's last collection found kept
//!   (what its scan marked) that no repository record keeps already, and
//!   `since`, the bucket's clock when that
//!   collection began. A hold taken after `since` may be missing from
//!   the list; such a hold looks for a condemnation itself
//!   (`condemned::rescue`).
//! - `nodes/<id>/started`: written when a collection begins, so that
//!   `since` is the bucket's clock, never a node's.
//! - A node registers, with `since` 0 (no collection yet), before its
//!   first hold on a bucket store: until it collects, nothing condemned
//!   is deleted. A node retired for good is forgotten by deleting its
//!   `nodes/<id>/` objects.
//!
//! A node's id is made once and kept in its directory (`node-id`).

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::bindings::kist::content::locks;
use crate::shared::bucket;
use crate::shared::error::{self, Error, Result, corrupt};
use crate::shared::fs::{self, Durability};

/// Where the node keeps its id.
const ID_FILE: &str = "node-id";
/// Where the nodes' objects are.
pub const PREFIX: &str = "nodes";

/// What `nodes/<id>/roots` holds.
#[derive(Serialize, Deserialize, Default)]
pub struct Roots {
    /// The bucket's time, in seconds, when the collection that listed
    /// `roots` began; 0 for a node that has not collected yet.
    pub since: u64,
    /// The blobs the node keeps, as digests.
    pub roots: BTreeSet<String>,
}

/// Set once this instance registered its node.
static REGISTERED: AtomicBool = AtomicBool::new(false);

fn roots_key(id: &str) -> String {
    format!("{PREFIX}/{id}/roots")
}

/// This node's id, made on first use: two random words from the
/// instance's seed and the clock.
pub fn id() -> Result<String> {
    let _guard = locks::lock(ID_FILE, 10_000).map_err(|e| error::lock(ID_FILE, e))?;
    if let Some(bytes) = fs::read_file(ID_FILE)? {
        return String::from_utf8(bytes).map_err(|e| corrupt(ID_FILE, e));
    }
    let random = std::collections::hash_map::RandomState::new();
    let t = fs::now();
    let id = format!(
        "{:016x}{:016x}",
        random.hash_one(t.nanoseconds),
        random.hash_one(t.seconds)
    );
    fs::write_atomic(".", ID_FILE, id.as_bytes(), Durability::Synced)?;
    Ok(id)
}

/// Makes the bucket's collections wait for this node (once per
/// instance): a node that has never collected is registered with
/// nothing listed since time 0.
pub fn register() -> Result<()> {
    if REGISTERED.load(Ordering::Relaxed) || !bucket::maybe() {
        return Ok(());
    }
    let bytes = serde_json::to_vec(&Roots::default()).expect("roots serialise");
    bucket::put_new(&roots_key(&id()?), &bytes)?;
    REGISTERED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Notes that a collection begins on this node; the bucket's time of it
/// (`None` without a bucket).
pub fn begin() -> Result<Option<u64>> {
    // Before the id: a local store gets no `node-id`.
    if !bucket::present()? {
        return Ok(None);
    }
    let key = format!("{PREFIX}/{}/started", id()?);
    bucket::put(&key, b"")?;
    Ok(bucket::head(&key)?.map(|m| m.modified_seconds))
}

/// Publishes what this node keeps, as found by a collection that began
/// at `since`; returns the bucket's time of the write.
pub fn publish(since: u64, roots: BTreeSet<String>) -> Result<u64> {
    let key = roots_key(&id()?);
    let bytes = serde_json::to_vec(&Roots { since, roots }).expect("roots serialise");
    bucket::put(&key, &bytes)?;
    REGISTERED.store(true, Ordering::Relaxed);
    Ok(bucket::head(&key)?.ok_or(Error::NotFound)?.modified_seconds)
}

/// Every node's roots.
pub fn all() -> Result<Vec<Roots>> {
    let mut nodes = Vec::new();
    for key in bucket::keys(PREFIX)? {
        if !key.ends_with("/roots") {
            continue;
        }
        let Some(bytes) = bucket::get(&key)? else {
            continue; // retired meanwhile
        };
        nodes.push(serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?);
    }
    Ok(nodes)
}
