//! The image layout's `index.json`: the store's named roots. Each entry
//! keeps its manifest (and what that references) stored; an entry whose
//! `org.opencontainers.image.ref.name` is `<repository>:<tag>` is a
//! registry tag. Other tools (skopeo, umoci) read and write the same file.
//!
//! Changes go to `index.journal` first, one synced line per update, and are
//! written into `index.json` in batches (see `shared::journal`): a tag
//! update costs the same with ten tags or ten thousand, and a crash leaves
//! each tag as it was or as it was set, never half of one. `index.json`
//! lags the journal until the next compaction: the server compacts when
//! tags have been quiet for a moment (`registry.sync-index`), and the CLI
//! after each command that changes tags, so tools that read the file see
//! what kist sees.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::bindings::kist::content::locks::{self, Guard};
use crate::shared::digest::Digest;
use crate::shared::error::{self, Result, corrupt};
use crate::shared::journal::{Change, Format, Journal, View};

/// The file.
pub const FILE: &str = "index.json";
/// The annotation that names an entry.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation that makes an entry a mirror's: a cache entry that
/// keeps nothing by itself (see [`keeps`]).
pub const MIRRORED: &str = "kist.registry/mirrored";

/// `index.json` as a journal's base: entries by name (an entry without
/// one is keyed by its digest after a NUL, which no name starts with).
/// The journal of tag changes not yet in `index.json`.
pub const JOURNAL_FILE: &str = "index.journal";

struct IndexFile;

impl Format for IndexFile {
    type Record = Descriptor;
    const BASE: &'static str = FILE;
    const JOURNAL: &'static str = JOURNAL_FILE;

    fn decode(bytes: &[u8]) -> Result<BTreeMap<String, Descriptor>> {
        let entries: Entries = serde_json::from_slice(bytes).map_err(|e| corrupt(FILE, e))?;
        Ok(entries
            .manifests
            .into_iter()
            .map(|d| (key(&d), d))
            .collect())
    }

    fn encode(records: &BTreeMap<String, Descriptor>) -> Vec<u8> {
        let mut index = ImageIndex::default();
        index.set_manifests(records.values().cloned().collect());
        serde_json::to_vec(&index).expect("an index serialises")
    }
}

thread_local! {
    static JOURNAL: Journal<IndexFile> = const { Journal::new() };
    /// The digests of the view last asked about, with that view.
    static DIGESTS: RefCell<Option<Digests>> = const { RefCell::new(None) };
}

/// A view of the index, and the digests its entries name.
type Digests = (Rc<View<Descriptor>>, HashSet<String>);

/// What reads need of the file: its entries.
#[derive(serde::Deserialize)]
struct Entries {
    manifests: Vec<Descriptor>,
}

/// The key of an entry.
fn key(d: &Descriptor) -> String {
    ref_name(d).map_or_else(|| format!("\0{}", d.digest()), str::to_owned)
}

/// Every entry as it is now, by name.
pub fn current() -> Result<Rc<View<Descriptor>>> {
    JOURNAL.with(Journal::current)
}

/// The entry named `name`.
pub fn get(name: &str) -> Result<Option<Descriptor>> {
    Ok(current()?.records.get(name).cloned())
}

/// The entries whose names start with `prefix`, by name.
pub fn with_prefix(prefix: &str) -> Result<Vec<(String, Descriptor)>> {
    Ok(current()?
        .records
        .range(prefix.to_owned()..)
        .take_while(|(name, _)| name.starts_with(prefix))
        .map(|(name, d)| (name.clone(), d.clone()))
        .collect())
}

/// Whether an entry of the index keeps the blob `d`: one names it and is
/// not a mirror's (a mirrored tag is a cache entry; what it names is kept
/// by its repository's hold until that runs out, then evicted as cached
/// content is, and the entry goes with it).
pub fn keeps(d: &Digest) -> Result<bool> {
    let view = current()?;
    DIGESTS.with(|cell| {
        let mut cell = cell.borrow_mut();
        if !matches!(&*cell, Some((seen, _)) if Rc::ptr_eq(seen, &view)) {
            let digests = view
                .records
                .values()
                .filter(|d| !mirrored(d))
                .map(|d| d.digest().to_string())
                .collect();
            *cell = Some((Rc::clone(&view), digests));
        }
        let (_, digests) = cell.as_ref().expect("just filled");
        Ok(digests.contains(&d.to_string()))
    })
}

/// The name of an entry, if it has one.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// Whether the entry `d` is a mirror's (see [`MIRRORED`]).
pub fn mirrored(d: &Descriptor) -> bool {
    d.annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRRORED))
}

/// Every entry's digest, with the names it has (`<digest>` for an entry
/// without one): the roots `index.json` holds (mirrors' entries aside,
/// see [`keeps`]).
pub fn roots() -> Result<BTreeMap<String, Vec<String>>> {
    let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in current()?.records.values().filter(|d| !mirrored(d)) {
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

/// Names each entry of `entries` by its name, in one update (a crash
/// leaves all or none; the caller holds [`lock`]); returns the entries
/// the names had before, in order.
pub fn set(locked: &Guard, entries: Vec<(String, Descriptor)>) -> Result<Vec<Option<Descriptor>>> {
    let view = current()?;
    let olds: Vec<_> = entries
        .iter()
        .map(|(name, _)| view.records.get(name).cloned())
        .collect();
    let changes: Vec<_> = entries
        .into_iter()
        .zip(&olds)
        .filter(|((_, entry), old)| old.as_ref() != Some(entry))
        .map(|((name, entry), _)| Change::Set(name, entry))
        .collect();
    if !changes.is_empty() {
        JOURNAL.with(|j| j.apply(locked, changes))?;
    }
    Ok(olds)
}

/// Removes the entries named `names` (the caller holds [`lock`]).
pub fn remove(locked: &Guard, names: Vec<String>) -> Result<()> {
    let changes = names.into_iter().map(Change::Remove).collect();
    JOURNAL.with(|j| j.apply(locked, changes))
}

/// Lines of the journal that do not parse, with whole updates after them
/// (damage; see `shared::journal`).
pub fn damaged() -> Result<usize> {
    JOURNAL.with(Journal::damaged)
}

/// Writes every entry into `index.json` and starts a fresh journal (the
/// caller holds [`lock`]).
pub fn fold(locked: &Guard) -> Result<()> {
    JOURNAL.with(|j| j.compact(locked))
}

/// Whether the journal holds changes `index.json` lacks.
pub fn pending() -> Result<bool> {
    JOURNAL.with(Journal::pending)
}

/// Writes what the journal holds into `index.json` (the caller holds
/// [`lock`]); returns whether there was anything to write.
pub fn sync(locked: &Guard) -> Result<bool> {
    JOURNAL.with(|j| {
        let pending = j.pending()?;
        if pending {
            j.compact(locked)?;
        }
        Ok(pending)
    })
}

/// A descriptor named `name`, a mirror's entry if `mirrored`.
pub fn named(mut d: Descriptor, name: &str, mirrored: bool) -> Descriptor {
    let mut annotations = HashMap::from([(REF_NAME.to_owned(), name.to_owned())]);
    if mirrored {
        annotations.insert(MIRRORED.to_owned(), "true".to_owned());
    }
    d.set_annotations(Some(annotations));
    d
}
