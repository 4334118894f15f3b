//! The image layout's `index.json`: the store's named roots. Each entry
//! keeps its manifest (and what that references) stored; an entry whose
//! `org.opencontainers.image.ref.name` is `<repository>:<tag>` is a
//! registry tag. Other tools (skopeo, umoci) read and write the same file.
//!
//! Changes happen under one lock and replace the file whole, so a reader
//! sees the index before or after a change, never half of one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::bindings::kist::content::locks::{self, Guard};
use crate::shared::cached::Cached;
use crate::shared::digest::Digest;
use crate::shared::error::{self, Result, corrupt};
use crate::shared::fs::{self, Durability};

/// The file.
pub const FILE: &str = "index.json";
/// The annotation that names an entry.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

thread_local! {
    static CACHED: Cached<Index> = const { Cached::new() };
}

/// The index as read, with the set of its entries' digests (a collection
/// asks "does the index name this blob?" once per blob it removes).
pub struct Index {
    entries: Vec<Descriptor>,
    digests: HashSet<String>,
}

impl Index {
    fn new(entries: Vec<Descriptor>) -> Self {
        let digests = entries.iter().map(|d| d.digest().to_string()).collect();
        Self { entries, digests }
    }

    /// The entries.
    pub fn manifests(&self) -> &[Descriptor] {
        &self.entries
    }
}

fn parse(bytes: &[u8]) -> Result<ImageIndex> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(FILE, e))
}

/// What reads need of the file: its entries.
#[derive(serde::Deserialize)]
struct Entries {
    manifests: Vec<Descriptor>,
}

/// The index as it is now (an empty one if the file is missing).
pub fn current() -> Result<Rc<Index>> {
    let parsed = CACHED.with(|c| {
        c.get(FILE, |bytes| {
            let entries: Entries = serde_json::from_slice(bytes).map_err(|e| corrupt(FILE, e))?;
            Ok(Index::new(entries.manifests))
        })
    })?;
    Ok(parsed.unwrap_or_else(|| Rc::new(Index::new(Vec::new()))))
}

/// Whether an entry of the index is the blob `d`.
pub fn names(d: &Digest) -> Result<bool> {
    Ok(current()?.digests.contains(&d.to_string()))
}

fn empty() -> ImageIndex {
    let mut index = ImageIndex::default();
    index.set_manifests(Vec::new());
    index
}

/// The name of an entry, if it has one.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// Every entry's digest, with the names it has (`<digest>` for an entry
/// without one): the roots `index.json` holds.
pub fn roots() -> Result<BTreeMap<String, Vec<String>>> {
    let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in current()?.manifests() {
        let digest = d.digest().to_string();
        let name = ref_name(d).map_or_else(|| digest.clone(), str::to_owned);
        roots.entry(digest).or_default().push(name);
    }
    Ok(roots)
}

/// Serialises changes to the index.
pub fn lock() -> Result<Guard> {
    locks::lock("index.json", 10_000).map_err(|e| error::lock("index.json", e))
}

/// Changes the entries with `change` (the caller holds [`lock`]), which
/// says whether it changed anything, and writes the index back if so.
pub fn update<R>(
    _locked: &Guard,
    change: impl FnOnce(&mut Vec<Descriptor>) -> (R, bool),
) -> Result<R> {
    // Read afresh: the cached copy is only as new as its last stat.
    let mut index = match fs::read_file(FILE)? {
        Some(bytes) => parse(&bytes)?,
        None => empty(),
    };
    let mut manifests = index.manifests().clone();
    let (result, changed) = change(&mut manifests);
    if changed {
        index.set_manifests(manifests);
        let bytes = serde_json::to_vec(&index).expect("an index serialises");
        fs::write_atomic(".", FILE, &bytes, Durability::Synced)?;
    }
    Ok(result)
}

/// A descriptor named `name`.
pub fn named(mut d: Descriptor, name: &str) -> Descriptor {
    d.set_annotations(Some(HashMap::from([(
        REF_NAME.to_owned(),
        name.to_owned(),
    )])));
    d
}
