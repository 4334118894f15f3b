//! Snapshots in the retention graph. A snapshot is kept while a holder
//! that is not a lease holds it, while a live lease does, while another
//! snapshot has it as parent, or while a live blob names it in a
//! `containerd.io/gc.ref.snapshot.*` label; a collection removes the rest
//! (snapshots prepared under a lease that has gone).

use std::collections::BTreeSet;

use crate::retention::holds::LEASE;
use crate::retention::leases;
use crate::shared::error::Result;
use crate::snapshots::records::{self, Lookup, Snapshots};
use crate::snapshots::tree;

/// Whether nothing keeps the snapshot `name` any more.
fn collectable(all: &Snapshots, name: &str, referenced: &BTreeSet<String>) -> Result<bool> {
    let record = all.record(name)?;
    if referenced.contains(name) || all.has_children(name) {
        return Ok(false);
    }
    for holder in &record.holders {
        match holder.strip_prefix(LEASE) {
            Some(id) if !leases::holds(id)? => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Removes the snapshots nothing keeps (children before their parents,
/// which they free); returns their names. A `dry_run` only names them.
pub fn collect(referenced: &BTreeSet<String>, dry_run: bool) -> Result<Vec<String>> {
    // Most stores have no snapshots: no lock (and no `snapshots/` made).
    if records::current()?.is_empty() {
        return Ok(Vec::new());
    }
    let lock = records::lock()?;
    let mut all = records::current()?.records.clone();
    let mut gone = Vec::new();
    loop {
        let mut round = Vec::new();
        for name in all.keys() {
            if collectable(&all, name, referenced)? {
                round.push(name.clone());
            }
        }
        if round.is_empty() {
            break;
        }
        for name in round {
            let record = all.remove(&name).expect("listed");
            gone.push((name, record.id));
        }
    }
    if dry_run || gone.is_empty() {
        return Ok(gone.into_iter().map(|(n, _)| n).collect());
    }
    let names: BTreeSet<&str> = gone.iter().map(|(n, _)| n.as_str()).collect();
    records::update(&lock, |current| {
        for name in names {
            current.remove(name);
        }
        Ok(())
    })?;
    drop(lock);
    for (_, id) in &gone {
        // A tree that cannot go now is left for `cleanup` and fsck.
        let _ = tree::remove(*id);
    }
    Ok(gone.into_iter().map(|(n, _)| n).collect())
}
