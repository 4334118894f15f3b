//! `snapshots/snapshots.json`: every snapshot's record, kept as the base
//! of a journal (`snapshots.journal`, see `shared::journal`) and changed
//! under one lock, so each call changes the metadata atomically (the way
//! containerd's snapshotters use one bolt transaction) and costs one
//! synced line for what it changed, not a rewrite of every record. Trees
//! live in `snapshots/<id>/` under short numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::snapshots::{Info, Kind};
use crate::bindings::kist::content::locks::{self, Guard};
use crate::content::labels::{self, Labels};
use crate::retention::holds::{self, Stamp};
use crate::shared::error::{self, Error, Result, corrupt, invalid};
use crate::shared::fs;
use crate::shared::journal::{Format, Journal, Tx, View};
use crate::shared::scope::Caller;

/// Where snapshots live, relative to the store root.
pub const DIR: &str = "snapshots";
/// The metadata file's name in [`DIR`].
pub const FILE: &str = "snapshots.json";
/// The journal of changes since, in [`DIR`].
pub const JOURNAL: &str = "snapshots.journal";
/// The lock every metadata change holds.
const LOCK: &str = "snapshots";
/// Longest key or name, in bytes (containerd's keys carry a chain id).
const MAX_KEY: usize = 4096;

/// What kind of snapshot a record is.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum State {
    View,
    Active,
    Committed,
}

/// One snapshot.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Record {
    /// Its tree: `snapshots/<id>/`.
    pub id: u64,
    pub parent: Option<String>,
    pub kind: State,
    #[serde(default)]
    pub labels: Labels,
    pub holders: BTreeSet<String>,
    pub created: Stamp,
    pub updated: Stamp,
    /// Allocated bytes and inodes, recorded at commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<(u64, u64)>,
}

/// Every snapshot's record, by name.
pub type Snapshots = BTreeMap<String, Record>;

/// The metadata file.
#[derive(Serialize, Deserialize)]
struct File {
    /// The next tree number to give out (written for older versions of
    /// kist, which read it; ids now follow the highest in use).
    #[serde(default)]
    next: u64,
    items: Snapshots,
}

/// `snapshots.json` as a journal's base.
struct MetadataFile;

impl Format for MetadataFile {
    type Record = Record;
    // [`DIR`]/[`FILE`] and [`DIR`]/[`JOURNAL`].
    const BASE: &'static str = "snapshots/snapshots.json";
    const JOURNAL: &'static str = "snapshots/snapshots.journal";

    fn decode(bytes: &[u8]) -> Result<Snapshots> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| corrupt(&path(), e))?;
        Ok(file.items)
    }

    fn encode(items: &Snapshots) -> Vec<u8> {
        let file = File {
            next: items.next_id(),
            items: items.clone(),
        };
        serde_json::to_vec(&file).expect("records serialise")
    }
}

/// What the snapshots' records answer.
pub trait Lookup {
    /// The record of `key`, or `not-found`.
    fn record(&self, key: &str) -> Result<&Record>;
    /// The record of `key` if `caller` may change it (its holder holds
    /// it); `not-found` otherwise, as if there were none.
    fn owned(&self, key: &str, caller: &Caller) -> Result<&Record>;
    /// The record of `key` if `caller` sees it: it may change it, or it is
    /// a parent (at any depth) of one it may; `not-found` otherwise.
    fn visible(&self, key: &str, caller: &Caller) -> Result<&Record>;
    /// Whether any snapshot has `name` as its parent.
    fn has_children(&self, name: &str) -> bool;
    /// The trees of `record`'s parents, nearest first.
    fn parent_ids(&self, record: &Record) -> Result<Vec<u64>>;
    /// The lowest tree number above every one in use.
    fn next_id(&self) -> u64;
}

impl Lookup for Snapshots {
    fn record(&self, key: &str) -> Result<&Record> {
        self.get(key).ok_or(Error::NotFound)
    }

    fn owned(&self, key: &str, caller: &Caller) -> Result<&Record> {
        let record = self.record(key)?;
        if caller.owns(&Vec::from_iter(record.holders.iter().cloned())) {
            Ok(record)
        } else {
            Err(Error::NotFound)
        }
    }

    fn visible(&self, key: &str, caller: &Caller) -> Result<&Record> {
        let record = self.record(key)?;
        if !caller.confined || record.holders.contains(&caller.holder) {
            return Ok(record);
        }
        let mine = self.values().filter(|r| r.holders.contains(&caller.holder));
        for start in mine {
            let mut next = start.parent.as_deref();
            let mut steps = 0;
            while let Some(name) = next {
                if name == key {
                    return Ok(record);
                }
                steps += 1;
                if steps > self.len() {
                    break; // a loop: fsck's business
                }
                next = self.get(name).and_then(|r| r.parent.as_deref());
            }
        }
        Err(Error::NotFound)
    }

    fn has_children(&self, name: &str) -> bool {
        self.values().any(|r| r.parent.as_deref() == Some(name))
    }

    fn parent_ids(&self, record: &Record) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut next = record.parent.as_deref();
        while let Some(name) = next {
            let parent = self
                .get(name)
                .ok_or_else(|| corrupt(&path(), format!("parent {name:?} has no record")))?;
            ids.push(parent.id);
            next = parent.parent.as_deref();
            if ids.len() > self.len() {
                return Err(corrupt(&path(), "a parent chain loops"));
            }
        }
        Ok(ids)
    }

    fn next_id(&self) -> u64 {
        self.values().map(|r| r.id + 1).max().unwrap_or(0)
    }
}

impl Record {
    /// The WIT view of the record named `name`, as `caller` is shown it
    /// (a confined caller sees its own hold only).
    pub fn info_for(&self, name: &str, caller: &Caller) -> Info {
        let mut info = self.info(name);
        info.holders = caller.shown(info.holders);
        info
    }

    /// The WIT view of the record named `name`.
    pub fn info(&self, name: &str) -> Info {
        let time = holds::datetime;
        Info {
            name: name.to_owned(),
            parent: self.parent.clone(),
            kind: match self.kind {
                State::View => Kind::View,
                State::Active => Kind::Active,
                State::Committed => Kind::Committed,
            },
            labels: labels::to_list(self.labels.clone()),
            holders: self.holders.iter().cloned().collect(),
            created_at: time(self.created),
            updated_at: time(self.updated),
        }
    }
}

fn path() -> String {
    MetadataFile::BASE.to_owned()
}

/// Checks a key or name: 1 to 4096 bytes without control characters.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(invalid(format!(
            "snapshot key {key:?}: 1 to {MAX_KEY} bytes without control characters"
        )));
    }
    Ok(())
}

thread_local! {
    static RECORDS: Journal<MetadataFile> = const { Journal::new() };
}

/// The snapshots as they are now (the journal's new lines read, the base
/// parsed again only when it changed).
pub fn current() -> Result<Rc<View<Record>>> {
    RECORDS.with(Journal::current)
}

/// Holds the metadata lock.
pub fn lock() -> Result<Guard> {
    fs::mkdir(DIR)?;
    locks::lock(LOCK, 10_000).map_err(|e| error::lock(LOCK, e))
}

/// Lines of the journal that do not parse, with whole updates after them
/// (damage; see `shared::journal`).
pub fn damaged() -> Result<usize> {
    RECORDS.with(Journal::damaged)
}

/// Writes every record into the metadata file and starts a fresh journal
/// (the caller holds [`lock`]).
pub fn fold(locked: &Guard) -> Result<()> {
    RECORDS.with(|journal| journal.compact(locked))
}

/// Changes the snapshots under `locked` with `change` and journals what it
/// changed if it succeeds (nothing changes if it fails); returns what
/// `change` returns.
pub fn update<R>(
    locked: &Guard,
    change: impl FnOnce(&mut Tx<'_, Record>) -> Result<R>,
) -> Result<R> {
    RECORDS.with(|journal| journal.update(locked, change))
}

/// The holders a new snapshot starts with.
pub fn holders_of(holder: Option<String>, caller: &Caller) -> Result<BTreeSet<String>> {
    Ok(BTreeSet::from([caller.holder_for(holder)?]))
}
