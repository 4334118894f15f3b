//! A map of named records kept as a base file plus an append-only journal
//! of the changes made since, so that one change costs one appended line
//! (and one sync), not a rewrite of every record.
//!
//! - The base file keeps the format other tools read (`index.json` stays
//!   an OCI image index); it is rewritten whole only when the journal has
//!   grown to a fraction of it (amortised O(1) per change), or when asked
//!   ([`Journal::compact`]).
//! - A journal line is one complete update: the `set` or `remove` of
//!   every name it changed. A crash mid-append leaves a torn last line,
//!   which readers ignore and the next writer cuts off: every update is
//!   there whole or not at all, so each name has its old record or its new
//!   one, and an update of several names (a snapshot's commit renames it)
//!   is never half there. Lines are synced before an update returns, so
//!   only the last whole line can be a crash's (a line whose blocks were
//!   not all written): a line that does not parse with whole updates
//!   after it is damage, not a crash. It is skipped (its update is lost;
//!   the ones after it are kept, never cut off), counted for `fsck`, and
//!   dropped by the next compaction.
//! - The journal's first line names it (a fresh id per compaction); it is
//!   replaced by a rename after the base, and readers open it before they
//!   read the base, so a reader may pair the new base with the old journal
//!   (and replay changes the base already has, which is harmless: each
//!   sets or removes a name outright) but never an old base with a new
//!   journal.
//! - Readers need no lock: each instance keeps the parsed map, and a
//!   `stat` of the base plus a read of the journal's new lines bring it up
//!   to date. Writers hold the caller's lock.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bindings::kist::content::locks::Guard;
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags};
use crate::shared::cached::{Version, version};
use crate::shared::error::{Result, corrupt, fs as fs_error};
use crate::shared::fs::{self, Durability};

/// Changes always kept in the journal before a compaction is due,
/// however small the base.
const MIN_CHANGES: usize = 256;
/// A compaction is due once the journal has more changes than the map has
/// records divided by this.
const CHANGES_PER_RECORD: usize = 4;
/// Longest journal header read.
const HEADER: u64 = 256;

/// How a journal's base file is read and written.
pub trait Format {
    /// One record.
    type Record: Clone + Serialize + DeserializeOwned;
    /// The base file, relative to the store root.
    const BASE: &'static str;
    /// The journal file, in the same directory.
    const JOURNAL: &'static str;
    /// The records of a base file's bytes.
    fn decode(bytes: &[u8]) -> Result<BTreeMap<String, Self::Record>>;
    /// A base file's bytes for `records`.
    fn encode(records: &BTreeMap<String, Self::Record>) -> Vec<u8>;
}

/// One change.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change<R> {
    /// `name` now has this record.
    Set(String, R),
    /// `name` has no record.
    Remove(String),
}

/// The journal's first line.
#[derive(Serialize, Deserialize, PartialEq, Clone)]
struct Header {
    journal: String,
}

/// The records as this instance last read them.
#[derive(Clone)]
pub struct View<R> {
    /// Every record, by name.
    pub records: BTreeMap<String, R>,
    /// The base file's version when read (`None`: there was none).
    base: Option<Version>,
    journal: Option<Header>,
    /// Bytes of the journal applied (up to the end of its last whole line).
    read: u64,
    /// Changes in the journal.
    changes: usize,
    /// Lines of the journal that do not parse, with whole updates after
    /// them (damage: see the module's docs).
    damaged: usize,
}

impl<R> std::ops::Deref for View<R> {
    type Target = BTreeMap<String, R>;

    fn deref(&self) -> &Self::Target {
        &self.records
    }
}

/// The records while [`Journal::update`] changes them: reads see the
/// changes made so far; each change remembers what it replaced, to write
/// the changed names only, or to undo them all if the update fails.
pub struct Tx<'a, R> {
    records: &'a mut BTreeMap<String, R>,
    /// Every changed name's record before the update (`None`: it had none).
    before: BTreeMap<String, Option<R>>,
}

impl<R: Clone> Tx<'_, R> {
    /// Gives `name` `record`; returns the record it had.
    pub fn insert(&mut self, name: String, record: R) -> Option<R> {
        let old = self.records.insert(name.clone(), record);
        self.before.entry(name).or_insert_with(|| old.clone());
        old
    }

    /// Removes `name`'s record; returns it.
    pub fn remove(&mut self, name: &str) -> Option<R> {
        let old = self.records.remove(name)?;
        self.before
            .entry(name.to_owned())
            .or_insert_with(|| Some(old.clone()));
        Some(old)
    }

    /// `name`'s record, to change in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut R> {
        let record = self.records.get_mut(name)?;
        self.before
            .entry(name.to_owned())
            .or_insert_with(|| Some(record.clone()));
        Some(record)
    }

    /// The changes made, one per changed name.
    fn changes(&self) -> Vec<Change<R>> {
        self.before
            .keys()
            .map(|name| match self.records.get(name) {
                Some(record) => Change::Set(name.clone(), record.clone()),
                None => Change::Remove(name.clone()),
            })
            .collect()
    }

    /// Puts back every record as it was before the update.
    fn undo(self) {
        for (name, old) in self.before {
            match old {
                Some(record) => self.records.insert(name, record),
                None => self.records.remove(&name),
            };
        }
    }
}

impl<R> std::ops::Deref for Tx<'_, R> {
    type Target = BTreeMap<String, R>;

    fn deref(&self) -> &Self::Target {
        self.records
    }
}

/// A journaled map, cached per instance.
pub struct Journal<F: Format> {
    cached: RefCell<Option<Rc<View<F::Record>>>>,
}

impl<F: Format> Journal<F> {
    /// Nothing read yet.
    pub const fn new() -> Self {
        Self {
            cached: RefCell::new(None),
        }
    }

    /// The records as they are now.
    pub fn current(&self) -> Result<Rc<View<F::Record>>> {
        let base = version(F::BASE)?;
        let mut cached = self.cached.borrow_mut();
        let view = match cached.take() {
            Some(view) if view.base == base => {
                let mut view = Rc::unwrap_or_clone(view);
                if !catch_up::<F::Record>(&mut view, F::JOURNAL)? {
                    view = reload::<F>(base)?;
                }
                view
            }
            _ => reload::<F>(base)?,
        };
        let view = Rc::new(view);
        *cached = Some(Rc::clone(&view));
        Ok(view)
    }

    /// Appends `changes` to the journal (synced), and compacts it if it is
    /// due. The caller holds the lock that covers the base file.
    pub fn apply(&self, locked: &Guard, changes: Vec<Change<F::Record>>) -> Result<()> {
        self.update(locked, |tx| {
            for change in changes {
                match change {
                    Change::Set(name, record) => tx.insert(name, record),
                    Change::Remove(name) => tx.remove(&name),
                };
            }
            Ok(())
        })
    }

    /// Runs `change` on the records as they are now and, if it succeeds,
    /// appends what it changed to the journal (one synced write) and
    /// compacts the journal if that is due; if it fails, nothing changes.
    /// Costs what `change` touches, not what the map holds. The caller
    /// holds the lock that covers the base file.
    pub fn update<T>(
        &self,
        locked: &Guard,
        change: impl FnOnce(&mut Tx<'_, F::Record>) -> Result<T>,
    ) -> Result<T> {
        let (fd, mut view) = self.writable(locked)?;
        let mut tx = Tx {
            records: &mut view.records,
            before: BTreeMap::new(),
        };
        let out = change(&mut tx);
        let (out, changes) = match out {
            Ok(out) => {
                let changes = tx.changes();
                (out, changes)
            }
            Err(e) => {
                tx.undo();
                self.cached.replace(Some(Rc::new(view)));
                return Err(e);
            }
        };
        if changes.is_empty() {
            self.cached.replace(Some(Rc::new(view)));
            return Ok(out);
        }
        let mut bytes = serde_json::to_vec(&changes).expect("changes serialise");
        bytes.push(b'\n');
        // Cut a torn line a crash may have left, then append.
        let appended = (|| {
            fd.set_size(view.read)
                .map_err(|e| fs_error("truncate", F::JOURNAL, e))?;
            fs::write_all(&fd, F::JOURNAL, &bytes, view.read)?;
            fd.sync_data().map_err(|e| fs_error("sync", F::JOURNAL, e))
        })();
        if let Err(e) = appended {
            // What is in the file is unknown: read it again next time.
            self.cached.replace(None);
            return Err(e);
        }
        view.read += bytes.len() as u64;
        view.changes += changes.len();
        let due = view.changes > MIN_CHANGES.max(view.records.len() / CHANGES_PER_RECORD);
        self.cached.replace(Some(Rc::new(view)));
        if due {
            self.compact(locked)?;
        }
        Ok(out)
    }

    /// The journal, open to append, and the records as they are now, taken
    /// out of the cache to be changed in place (copied only if a reader
    /// still holds them).
    fn writable(&self, locked: &Guard) -> Result<(Descriptor, View<F::Record>)> {
        let view = self.current()?;
        let flags = DescriptorFlags::READ | DescriptorFlags::WRITE;
        let fd = match view.journal {
            Some(_) => fs::open(F::JOURNAL, OpenFlags::empty(), flags)?,
            None => {
                // No journal yet: start one on the base as it is.
                drop(view);
                self.compact(locked)?;
                return self.writable(locked);
            }
        };
        if read_header(&fd)? != view.journal {
            // Compacted by a writer this instance has not seen: read again.
            drop(view);
            self.cached.replace(None);
            return self.writable(locked);
        }
        self.cached.replace(None);
        Ok((fd, Rc::unwrap_or_clone(view)))
    }

    /// Writes every record to the base file and starts an empty journal.
    /// The caller holds the lock that covers the base file.
    pub fn compact(&self, _locked: &Guard) -> Result<()> {
        let view = self.current()?;
        let (dir, base) = split(F::BASE);
        fs::write_atomic(dir, base, &F::encode(&view.records), Durability::Synced)?;
        let now = fs::now();
        let header = Header {
            journal: format!("{}.{:09}", now.seconds, now.nanoseconds),
        };
        let mut bytes = serde_json::to_vec(&header).expect("headers serialise");
        bytes.push(b'\n');
        let (_, journal) = split(F::JOURNAL);
        fs::write_atomic(dir, journal, &bytes, Durability::Synced)?;
        self.cached.replace(None);
        Ok(())
    }

    /// Whether the journal holds changes the base file lacks.
    pub fn pending(&self) -> Result<bool> {
        Ok(self.current()?.changes > 0)
    }

    /// Lines of the journal that do not parse and have whole updates
    /// after them (damage, not a crash; see the module's docs).
    pub fn damaged(&self) -> Result<usize> {
        Ok(self.current()?.damaged)
    }
}

/// Reads the base and the whole journal.
///
/// The journal is opened before the base is read: a compaction replaces
/// the base first and the journal after, so the base read is the one that
/// journal was started on or a newer one that already holds its changes
/// (which replaying them again leaves as it is). Reading the base first
/// could pair an old base with a new journal and lose a batch.
fn reload<F: Format>(base: Option<Version>) -> Result<View<F::Record>> {
    let journal = fs::open_existing(F::JOURNAL, DescriptorFlags::READ)?;
    let records = match fs::read_file(F::BASE)? {
        Some(bytes) => F::decode(&bytes)?,
        None => BTreeMap::new(),
    };
    let mut view = View {
        records,
        base,
        journal: None,
        read: 0,
        changes: 0,
        damaged: 0,
    };
    if let Some(fd) = journal {
        replay(&mut view, &fd, F::JOURNAL)?;
    }
    Ok(view)
}

/// Applies the journal's lines past `view.read`; false if the journal is
/// another one than `view` read (compacted since), which needs a reload.
fn catch_up<R: DeserializeOwned>(view: &mut View<R>, path: &str) -> Result<bool> {
    let Some(fd) = fs::open_existing(path, DescriptorFlags::READ)? else {
        return Ok(view.journal.is_none());
    };
    if view.journal.is_some() && read_header(&fd)? != view.journal {
        return Ok(false);
    }
    replay(view, &fd, path)?;
    Ok(true)
}

/// Applies the lines of the journal open as `fd` that `view` lacks.
fn replay<R: DeserializeOwned>(view: &mut View<R>, fd: &Descriptor, path: &str) -> Result<()> {
    let Some(header) = read_header(fd)? else {
        return Ok(()); // being created: nothing in it yet
    };
    let from = match view.journal {
        Some(_) => view.read,
        None => header_len(&header),
    };
    let size = fs::fstat(fd, path)?.size;
    let tail = fs::read_at(fd, path, from, size.saturating_sub(from))?;
    let (mut used, mut unparsed) = (0, Vec::new());
    for line in tail.split_inclusive(|b| *b == b'\n') {
        // A line without its end is being written, or was torn by a crash.
        let Some(body) = line.strip_suffix(b"\n") else {
            break;
        };
        let Ok(changes) = serde_json::from_slice::<Vec<Change<R>>>(body) else {
            // Torn by a crash if it is the last (the next writer cuts it
            // off), damaged if whole updates follow.
            unparsed.push(line.len());
            continue;
        };
        view.damaged += unparsed.len();
        used += unparsed.drain(..).sum::<usize>();
        view.changes += changes.len();
        for change in changes {
            match change {
                Change::Set(name, record) => view.records.insert(name, record),
                Change::Remove(name) => view.records.remove(&name),
            };
        }
        used += line.len();
    }
    view.journal = Some(header);
    view.read = from + used as u64;
    Ok(())
}

/// The journal's first line, if it has a whole one.
fn read_header(fd: &Descriptor) -> Result<Option<Header>> {
    let bytes = fs::read_at(fd, "journal", 0, HEADER)?;
    let Some(end) = bytes.iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes[..end])
        .map(Some)
        .map_err(|e| corrupt("journal header", e))
}

fn header_len(header: &Header) -> u64 {
    serde_json::to_vec(header).expect("headers serialise").len() as u64 + 1
}

/// `path`'s directory and name.
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or((".", path))
}
