//! `snapshots/snapshots.json`: every snapshot's record in one file,
//! replaced whole under one lock, so each call changes the metadata
//! atomically (the way containerd's snapshotters use one bolt
//! transaction). Trees live in `snapshots/<id>/` under short numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::snapshots::{Info, Kind};
use crate::bindings::kist::content::locks::{self, Guard};
use crate::content::labels::{self, Labels};
use crate::retention::holds::{self, Stamp};
use crate::shared::cached::Cached;
use crate::shared::error::{self, Error, Result, corrupt, invalid};
use crate::shared::fs::{self, Durability};
use crate::shared::scope::Caller;

/// Where snapshots live, relative to the store root.
pub const DIR: &str = "snapshots";
/// The metadata file's name in [`DIR`].
pub const FILE: &str = "snapshots.json";
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

/// The whole metadata file.
#[derive(Serialize, Deserialize, Default, Clone)]
pub struct Snapshots {
    /// The next tree number to give out.
    pub next: u64,
    pub items: BTreeMap<String, Record>,
}

impl Snapshots {
    /// The record of `key`, or `not-found`.
    pub fn get(&self, key: &str) -> Result<&Record> {
        self.items.get(key).ok_or(Error::NotFound)
    }

    /// The record of `key` if `caller` may change it (its holder holds
    /// it); `not-found` otherwise, as if there were none.
    pub fn owned(&self, key: &str, caller: &Caller) -> Result<&Record> {
        let record = self.get(key)?;
        if caller.owns(&Vec::from_iter(record.holders.iter().cloned())) {
            Ok(record)
        } else {
            Err(Error::NotFound)
        }
    }

    /// The record of `key` if `caller` sees it: it may change it, or it is
    /// a parent (at any depth) of one it may; `not-found` otherwise.
    pub fn visible(&self, key: &str, caller: &Caller) -> Result<&Record> {
        let record = self.get(key)?;
        if !caller.confined || record.holders.contains(&caller.holder) {
            return Ok(record);
        }
        let mine = self
            .items
            .values()
            .filter(|r| r.holders.contains(&caller.holder));
        for start in mine {
            let mut next = start.parent.as_deref();
            let mut steps = 0;
            while let Some(name) = next {
                if name == key {
                    return Ok(record);
                }
                steps += 1;
                if steps > self.items.len() {
                    break; // a loop: fsck's business
                }
                next = self.items.get(name).and_then(|r| r.parent.as_deref());
            }
        }
        Err(Error::NotFound)
    }

    /// Whether any snapshot has `name` as its parent.
    pub fn has_children(&self, name: &str) -> bool {
        self.items
            .values()
            .any(|r| r.parent.as_deref() == Some(name))
    }

    /// The trees of `key`'s parents, nearest first.
    pub fn parent_ids(&self, record: &Record) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut next = record.parent.as_deref();
        while let Some(name) = next {
            let parent = self
                .items
                .get(name)
                .ok_or_else(|| corrupt(&path(), format!("parent {name:?} has no record")))?;
            ids.push(parent.id);
            next = parent.parent.as_deref();
            if ids.len() > self.items.len() {
                return Err(corrupt(&path(), "a parent chain loops"));
            }
        }
        Ok(ids)
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
    format!("{DIR}/{FILE}")
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
    static CURRENT: Cached<Snapshots> = const { Cached::new() };
}

/// The snapshots as last written (parsed again only when the file changed).
pub fn current() -> Result<Rc<Snapshots>> {
    CURRENT
        .with(|c| {
            c.get(&path(), |bytes| {
                serde_json::from_slice(bytes).map_err(|e| corrupt(&path(), e))
            })
        })
        .map(|s| s.unwrap_or_default())
}

/// Holds the metadata lock.
pub fn lock() -> Result<Guard> {
    fs::mkdir(DIR)?;
    locks::lock(LOCK, 10_000).map_err(|e| error::lock(LOCK, e))
}

/// Changes the snapshots under `_locked` with `change` and writes them if
/// it succeeds; returns what `change` returns.
pub fn update<R>(_locked: &Guard, change: impl FnOnce(&mut Snapshots) -> Result<R>) -> Result<R> {
    let mut snapshots = (*current()?).clone();
    let out = change(&mut snapshots)?;
    let bytes = serde_json::to_vec(&snapshots)
        .map_err(|e| Error::Io(format!("encoding {}: {e}", path())))?;
    fs::write_atomic(DIR, FILE, &bytes, Durability::Synced)?;
    Ok(out)
}

/// The holders a new snapshot starts with.
pub fn holders_of(holder: Option<String>, caller: &Caller) -> Result<BTreeSet<String>> {
    Ok(BTreeSet::from([caller.holder_for(holder)?]))
}
