//! Label persistence: one small JSON file per labelled blob, replaced
//! atomically, under the blob's lock.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::types::Label;
use crate::bindings::kist::content::hasher::Algorithm;
use crate::bindings::wasi::clocks::wall_clock::Datetime;
use crate::shared::digest::{self, Digest};
use crate::shared::error::{Result, corrupt};
use crate::shared::fs;
use crate::shared::layout;

/// Labels of one blob, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// What `labels/<alg>/<hex>` holds.
#[derive(Serialize, Deserialize)]
struct Record {
    labels: Labels,
    /// When the labels last changed: (seconds, nanoseconds) since the epoch.
    updated: (u64, u32),
}

/// A blob's labels and when they last changed; empty and `None` if it has
/// none.
pub fn load(d: &Digest) -> Result<(Labels, Option<Datetime>)> {
    let path = format!("{}/{}", layout::label_dir(d.algorithm), d.hex);
    let Some(bytes) = fs::read_file(&path)? else {
        return Ok((Labels::new(), None));
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))?;
    let (seconds, nanoseconds) = record.updated;
    Ok((
        record.labels,
        Some(Datetime {
            seconds,
            nanoseconds,
        }),
    ))
}

/// Replaces a blob's labels; the caller holds the blob's lock.
pub fn save(d: &Digest, labels: &Labels, durability: fs::Durability) -> Result<()> {
    if labels.is_empty() {
        return remove(d);
    }
    let dir = layout::label_dir(d.algorithm);
    let now = fs::now();
    let record = Record {
        labels: labels.clone(),
        updated: (now.seconds, now.nanoseconds),
    };
    let bytes = serde_json::to_vec(&record).expect("labels serialise");
    fs::write_atomic(&dir, &d.hex, &bytes, durability)
}

/// Removes a blob's labels; the caller holds the blob's lock.
pub fn remove(d: &Digest) -> Result<()> {
    layout::labels(d.algorithm)?.remove(&d.hex).map(drop)
}

/// Hex names of the `alg` blobs that have labels, so a walk reads label
/// files only where there are some.
pub fn labelled(alg: Algorithm) -> Result<HashSet<String>> {
    let names = fs::list_dir(&layout::label_dir(alg))?.unwrap_or_default();
    Ok(names
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| digest::is_hex_of(alg, n))
        .collect())
}

/// Labels as the WIT list.
pub fn to_list(labels: Labels) -> Vec<Label> {
    labels
        .into_iter()
        .map(|(key, value)| Label { key, value })
        .collect()
}

/// The WIT list as labels (a later duplicate key wins).
pub fn from_list(list: Vec<Label>) -> Labels {
    list.into_iter().map(|l| (l.key, l.value)).collect()
}
