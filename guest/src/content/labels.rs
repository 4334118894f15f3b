//! Label persistence: one small JSON file per labelled blob, holding each
//! holder's labels, replaced atomically under the blob's lock.
//!
//! Labels are per holder, as containerd keeps them per namespace: a
//! holder reads and writes its own set, and nothing one holder does
//! changes another's. A holder's set lives while it holds the blob; the
//! last holder's set stays with a cached blob (what it references while
//! cached) and goes to whoever takes the blob back with `hold`. kist reads
//! two kinds of label whoever set them: references (what keeps and shows
//! other blobs) and `containerd.io/gc.root`.
//!
//! A file from a kist before 0.7 has one set shared by every holder; it
//! counts as the labels of each holder without a set of its own, so
//! nothing any holder saw changes until it writes labels itself.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::types::Label;
use crate::bindings::kist::content::hasher::Algorithm;
use crate::bindings::kist::content::lender;
use crate::bindings::wasi::clocks::wall_clock::Datetime;
use crate::shared::digest::{self, Digest};
use crate::shared::error::{Result, corrupt};
use crate::shared::fs;
use crate::shared::layout;

/// Labels of one blob for one holder, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// One holder's labels and when they last changed: (seconds,
/// nanoseconds) since the epoch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
struct Set {
    labels: Labels,
    updated: (u64, u32),
}

/// What `labels/<alg>/<hex>` holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelFile {
    /// Each holder's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    by: BTreeMap<String, Set>,
    /// The one set of a kist before 0.7 (its `labels` and `updated` at
    /// the top of the file), shared by every holder without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated: Option<(u64, u32)>,
}

fn datetime((seconds, nanoseconds): (u64, u32)) -> Datetime {
    Datetime {
        seconds,
        nanoseconds,
    }
}

impl LabelFile {
    /// `holder`'s labels and when they last changed: its own set, else
    /// the shared one of an older kist, else none.
    pub fn of(&self, holder: &str) -> (Labels, Option<Datetime>) {
        match self.by.get(holder) {
            Some(set) => (set.labels.clone(), Some(datetime(set.updated))),
            None => (
                self.labels.clone().unwrap_or_default(),
                self.updated.map(datetime),
            ),
        }
    }

    /// Whether `holder` has a set of its own.
    pub fn has(&self, holder: &str) -> bool {
        self.by.contains_key(holder)
    }

    /// Every label of every set, a key once per set that has it.
    fn pairs(&self) -> impl Iterator<Item = (&String, &String)> {
        self.by
            .values()
            .map(|s| &s.labels)
            .chain(self.labels.as_ref())
            .flat_map(|l| l.iter())
    }

    /// The labels that count for what the blob keeps (its references) and
    /// whether it is a root, given `holders`, who hold it now: theirs, or
    /// every set while nobody does (a cached blob keeps its last holder's),
    /// and the shared set of an older kist. A set left by a holder whose
    /// hold ended otherwise (an expired lease) keeps nothing.
    pub fn counted<'a>(
        &'a self,
        holders: &'a [String],
    ) -> impl Iterator<Item = (&'a String, &'a String)> {
        self.by
            .iter()
            .filter(move |(h, _)| holders.is_empty() || holders.contains(h))
            .map(|(_, s)| &s.labels)
            .chain(self.labels.as_ref())
            .flat_map(|l| l.iter())
    }

    /// The value of `key` in the first set (by holder name) of a holder
    /// `trusted` accepts, else in the shared set of an older kist.
    pub fn find(&self, key: &str, trusted: impl Fn(&str) -> bool) -> Option<&String> {
        self.by
            .iter()
            .filter(|(h, _)| trusted(h))
            .find_map(|(_, s)| s.labels.get(key))
            .or_else(|| self.labels.as_ref()?.get(key))
    }

    /// Whether any set has `key`.
    pub fn any_has(&self, key: &str) -> bool {
        self.pairs().any(|(k, _)| k == key)
    }

    /// Makes `labels` the labels of `holder` (none removes its set).
    pub fn set(&mut self, holder: &str, labels: Labels) {
        if labels.is_empty() {
            self.by.remove(holder);
            return;
        }
        let now = fs::now();
        self.by.insert(
            holder.to_owned(),
            Set {
                labels,
                updated: (now.seconds, now.nanoseconds),
            },
        );
    }

    /// Drops the set of `holder` (it released the blob).
    pub fn drop_holder(&mut self, holder: &str) {
        self.by.remove(holder);
    }

    /// Gives the sets of holders not among `holders` (those that no longer
    /// hold the blob) to `holder`, which takes it back: a cached blob keeps
    /// its labels. `holder` keeps its own set if it has one, else gets the
    /// first (by holder name).
    pub fn pass_to(&mut self, holder: &str, holders: &[String]) {
        let gone: Vec<String> = self
            .by
            .keys()
            .filter(|h| !holders.contains(h) && h.as_str() != holder)
            .cloned()
            .collect();
        for h in gone {
            let set = self.by.remove(&h).expect("listed above");
            self.by.entry(holder.to_owned()).or_insert(set);
        }
    }

    /// Removes `key` from every set; whether any had it.
    pub fn remove_everywhere(&mut self, key: &str) -> bool {
        let sets = self.by.values_mut().map(|s| &mut s.labels);
        let mut removed = false;
        for labels in sets.chain(self.labels.as_mut()) {
            removed |= labels.remove(key).is_some();
        }
        removed
    }

    fn is_empty(&self) -> bool {
        self.by.is_empty() && self.labels.as_ref().is_none_or(Labels::is_empty)
    }
}

/// A blob's label file; empty if it has none.
pub fn load(d: &Digest) -> Result<LabelFile> {
    let path = format!("{}/{}", layout::label_dir(d.algorithm), d.hex);
    let Some(bytes) = fs::read_file(&path)? else {
        return Ok(LabelFile::default());
    };
    serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))
}

/// Replaces a blob's label file (an empty one is removed); the caller
/// holds the blob's lock.
pub fn save(d: &Digest, file: &LabelFile, durability: fs::Durability) -> Result<()> {
    if file.is_empty() {
        return remove(d);
    }
    let dir = layout::label_dir(d.algorithm);
    let bytes = serde_json::to_vec(file).expect("labels serialise");
    fs::write_atomic(&dir, &d.hex, &bytes, durability)?;
    // A reference (`gc.ref`) may have gone with the old labels.
    lender::revoke();
    Ok(())
}

/// Removes a blob's labels; the caller holds the blob's lock.
pub fn remove(d: &Digest) -> Result<()> {
    layout::labels(d.algorithm)?.remove(&d.hex)?;
    lender::revoke();
    Ok(())
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
