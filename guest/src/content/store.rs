//! The `store` interface: reading, describing, labelling and deleting
//! committed blobs.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};

use crate::Component;
use crate::bindings::exports::kist::content::store::{
    Guest, GuestReader, GuestWalker, Reader, Walker,
};
use crate::bindings::exports::kist::content::types::BlobInfo as Info;
use crate::bindings::kist::content::hasher::Algorithm;
use crate::bindings::kist::content::locks::{self, Guard};
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorStat, DirectoryEntryStream,
};
use crate::bindings::wasi::io::streams::InputStream;
use crate::content::{labels, quarantine};
use crate::retention::{holds, leases};
use crate::shared::digest::{ALGORITHMS, Digest, is_hex_of};
use crate::shared::error::{self, Error, Result, fs as fs_error, invalid};
use crate::shared::filters::{Fields, Filters, label_field, rest_key};
use crate::shared::fs::{self, FileType};
use crate::shared::layout;
use crate::shared::validate;

/// Most infos one `walker.next` returns.
const BATCH: usize = 256;
/// Largest `read-at` (and `read-blob`) in bytes.
const MAX_READ: u64 = 16 << 20;
/// How long blob operations wait for each other (commit, delete, label
/// update of the same blob), in milliseconds.
pub const BLOB_LOCK_WAIT_MS: u32 = 10_000;

/// Serialises changes to one blob (publish, delete, label update) across
/// instances and processes.
pub fn lock_blob(d: &Digest) -> Result<Guard> {
    let name = format!("blob/{d}");
    locks::lock(&name, BLOB_LOCK_WAIT_MS).map_err(|e| error::lock(&name, e))
}

/// Releases `holder`'s hold on the stored blob `d`; returns who still
/// holds it. A blob nobody holds any more is cached until a collection;
/// it keeps its labels meanwhile, so what it references stays reachable
/// through it while something held references it. `not-found` if
/// `holder` did not hold it. The caller holds the blob's lock.
pub fn release(d: &Digest, holder: &str, lock: &Guard) -> Result<Vec<String>> {
    if fs::stat(&d.blob_path())?.is_none() {
        return Err(Error::NotFound);
    }
    let record = holds::release(d, holder, lock)?;
    let (labels, _) = labels::load(d).unwrap_or_default();
    record.live(d, &labels)
}

/// Which blobs a view of the store shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    /// Those something holds: what `store` is about.
    Held,
    /// Those every holder released, still stored.
    Cached,
    /// Every stored blob (what a label update that removed the last hold,
    /// `containerd.io/gc.root`, returns).
    Any,
}

/// What is wrong with something other than a file in a blob's place.
fn not_a_blob(d: &Digest, kind: FileType) -> Error {
    error::corrupt(
        &d.blob_path(),
        format!("a {kind:?}, not a regular file; storing the content again replaces it"),
    )
}

/// A blob's labels for a rewrite: a damaged label file is moved to
/// `quarantine/` and counts as none, so labels can always be set again.
/// The caller holds the blob's lock.
fn labels_to_rewrite(d: &Digest) -> Result<labels::Labels> {
    match labels::load(d) {
        Err(Error::Corrupt(_)) => {
            let path = format!("{}/{}", layout::label_dir(d.algorithm), d.hex);
            quarantine::quarantine(&path, ".labels")?;
            Ok(labels::Labels::new())
        }
        other => other.map(|(labels, _)| labels),
    }
}

/// The info of the held blob `d`; `None` if it is not stored or not held.
fn info_of(d: &Digest) -> Result<Option<Info>> {
    info_from(d, fs::stat(&d.blob_path())?, true, true, View::Held)
}

/// The info of the blob `d` from its metadata, if `view` shows it.
/// `has_labels` and `has_record` say whether to look for its label file
/// and its hold record.
fn info_from(
    d: &Digest,
    stat: Option<DescriptorStat>,
    has_labels: bool,
    has_record: bool,
    view: View,
) -> Result<Option<Info>> {
    let Some(stat) = stat else {
        return Ok(None);
    };
    if stat.type_ != FileType::RegularFile {
        // Never followed: a symlink here could point out of the store.
        return Err(not_a_blob(d, stat.type_));
    }
    let record = if has_record {
        holds::load(d)?
    } else {
        holds::Record::implicit()
    };
    let (labels, labelled_at) = if has_labels {
        labels::load(d)?
    } else {
        Default::default()
    };
    let holders = record.live(d, &labels)?;
    let shown = match view {
        View::Held => !holders.is_empty(),
        View::Cached => holders.is_empty(),
        View::Any => true,
    };
    if !shown {
        return Ok(None);
    }
    let created_at = stat.data_modification_timestamp.unwrap_or_else(fs::now);
    Ok(Some(Info {
        digest: d.to_string(),
        size: stat.size,
        created_at,
        updated_at: labelled_at
            .filter(|t| (t.seconds, t.nanoseconds) > (created_at.seconds, created_at.nanoseconds))
            .unwrap_or(created_at),
        labels: labels::to_list(labels),
        holders,
    }))
}

impl Guest for Component {
    type Walker = BlobWalker;
    type Reader = BlobReader;

    fn info(digest: String) -> Result<Info> {
        let d = Digest::parse(&digest)?;
        layout::ensure()?;
        info_of(&d)?.ok_or(Error::NotFound)
    }

    fn update(info: Info, fieldpaths: Vec<String>) -> Result<Info> {
        let d = Digest::parse(&info.digest)?;
        validate::labels(&info.labels)?;
        layout::ensure()?;
        let given = labels::from_list(info.labels);
        // Which keys change: `None` means all of them.
        let mut keys: Option<Vec<String>> = Some(Vec::new());
        for path in &fieldpaths {
            match path.split_once('.') {
                _ if path == "labels" => keys = None,
                Some(("labels", key)) if !key.is_empty() => {
                    if let Some(k) = keys.as_mut() {
                        k.push(key.to_owned());
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "field {path:?} cannot be updated; only labels can"
                    )));
                }
            }
        }
        if fieldpaths.is_empty() {
            keys = None;
        }
        // Blobs the new labels reference are touched first (one lock at a
        // time), so a collection running now keeps them.
        holds::touch_references(&given, &d)?;
        let _blob = lock_blob(&d)?;
        if fs::stat(&d.blob_path())?.is_none() {
            return Err(Error::NotFound);
        }
        let current = labels_to_rewrite(&d)?;
        if holds::load(&d)?.live(&d, &current)?.is_empty() {
            return Err(Error::NotFound);
        }
        let labels = match keys {
            None => given,
            Some(keys) => {
                let mut labels = current;
                for key in keys {
                    match given.get(&key) {
                        Some(v) => labels.insert(key, v.clone()),
                        None => labels.remove(&key),
                    };
                }
                labels
            }
        };
        labels::save(&d, &labels, fs::Durability::Synced)?;
        let stat = fs::stat(&d.blob_path())?;
        info_from(&d, stat, true, true, View::Any)?.ok_or(Error::NotFound)
    }

    fn delete(digest: String, holder: Option<String>) -> Result<Vec<String>> {
        let d = Digest::parse(&digest)?;
        let holder = holder.unwrap_or_else(|| holds::DEFAULT.to_owned());
        layout::ensure()?;
        let blob = lock_blob(&d)?;
        release(&d, &holder, &blob)
    }

    fn hold(digest: String, holder: String) -> Result<Info> {
        let d = Digest::parse(&digest)?;
        holds::check(&holder)?;
        layout::ensure()?;
        let blob = lock_blob(&d)?;
        if fs::stat(&d.blob_path())?.is_none() {
            return Err(Error::NotFound);
        }
        holds::add(&d, &holder, &blob)?;
        drop(blob);
        leases::note_content(&holder, &d)?;
        info_of(&d)?.ok_or(Error::NotFound)
    }

    fn purge(digest: String) -> Result<u64> {
        let d = Digest::parse(&digest)?;
        layout::ensure()?;
        let _blob = lock_blob(&d)?;
        let blobs = layout::blobs(d.algorithm)?;
        let size = blobs.stat(&d.hex)?.ok_or(Error::NotFound)?.size;
        // The blob first, its record last, as a collection removes one.
        blobs.remove(&d.hex)?;
        labels::remove(&d)?;
        holds::remove(&d)?;
        blobs.sync()?;
        Ok(size)
    }

    fn walk(filters: Vec<String>) -> Result<Walker> {
        BlobWalker::start(filters, View::Held)
    }

    fn walk_cached(filters: Vec<String>) -> Result<Walker> {
        BlobWalker::start(filters, View::Cached)
    }

    fn open_reader(digest: String) -> Result<Reader> {
        Ok(Reader::new(open_blob(&Digest::parse(&digest)?)?))
    }

    fn read_blob(digest: String, max_size: u64) -> Result<Vec<u8>> {
        let blob = open_blob(&Digest::parse(&digest)?)?;
        let max_size = max_size.min(MAX_READ);
        if blob.size > max_size {
            return Err(Error::TooLarge(format!(
                "{digest} is {} bytes, more than {max_size}",
                blob.size
            )));
        }
        fs::read_at(&blob.fd, &blob.path, 0, blob.size)
    }
}

/// Opens the held blob `d`. The common case costs an open, an `fstat` and
/// a `stat` of its hold record; what is not a regular file is only looked
/// at when the open fails or finds something else.
fn open_blob(d: &Digest) -> Result<BlobReader> {
    layout::ensure()?;
    let path = d.blob_path();
    let fd = match fs::open_existing(&path, DescriptorFlags::READ) {
        Ok(Some(fd)) => fd,
        Ok(None) => return Err(Error::NotFound),
        // A symlink (opened without following) fails with a loop error:
        // report what is stored under the name instead.
        Err(e) => {
            return Err(match layout::blobs(d.algorithm)?.stat(&d.hex)? {
                Some(s) if s.type_ != FileType::RegularFile => not_a_blob(d, s.type_),
                _ => e,
            });
        }
    };
    let stat = fs::fstat(&fd, &path)?;
    if stat.type_ != FileType::RegularFile {
        return Err(not_a_blob(d, stat.type_));
    }
    // A cached blob is not shown. Without a record the blob is held by
    // `default`: the common case costs one `stat`.
    if layout::holds(d.algorithm)?.stat(&d.hex)?.is_some() {
        let (labels, _) = labels::load(d).unwrap_or_default();
        if holds::load(d)?.live(d, &labels)?.is_empty() {
            return Err(Error::NotFound);
        }
    }
    Ok(BlobReader {
        fd,
        path,
        size: stat.size,
    })
}

/// A walk in progress: the algorithms still to list and the directory
/// being listed.
pub struct BlobWalker(RefCell<WalkState>);

struct WalkState {
    /// Which blobs it lists.
    view: View,
    /// A blob that could not be described, reported by the next call.
    damaged: Option<Error>,
    filters: Filters,
    pending: Vec<Algorithm>,
    /// The directory being listed, its entries.
    current: Option<Listing>,
}

/// One blob directory being listed.
struct Listing {
    alg: Algorithm,
    dir: Descriptor,
    entries: DirectoryEntryStream,
    /// Which of its blobs have labels, and hold records: their files are
    /// read only where there are some.
    labelled: HashSet<String>,
    recorded: BTreeSet<String>,
}

impl BlobWalker {
    fn start(filters: Vec<String>, view: View) -> Result<Walker> {
        let filters = Filters::parse(&filters)?;
        layout::ensure()?;
        Ok(Walker::new(BlobWalker(RefCell::new(WalkState {
            view,
            damaged: None,
            filters,
            pending: ALGORITHMS.to_vec(),
            current: None,
        }))))
    }
}

impl GuestWalker for BlobWalker {
    fn next(&self) -> Result<Vec<Info>> {
        let mut s = self.0.borrow_mut();
        if let Some(e) = s.damaged.take() {
            return Err(e);
        }
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            if s.current.is_none() {
                if s.pending.is_empty() {
                    break;
                }
                let alg = s.pending.remove(0);
                let dir = layout::blob_dir(alg);
                let Some(fd) = fs::open_dir(&dir)? else {
                    continue;
                };
                let entries = fd.read_directory().map_err(|e| fs_error("list", &dir, e))?;
                s.current = Some(Listing {
                    alg,
                    dir: fd,
                    entries,
                    labelled: labels::labelled(alg)?,
                    recorded: holds::recorded(alg)?,
                });
            }
            let view = s.view;
            let listing = s.current.as_ref().expect("set above");
            let alg = listing.alg;
            let Some(entry) = fs::next_entry(&listing.entries, "blobs")? else {
                s.current = None;
                continue;
            };
            // Only regular files with blob names are blobs: temporary files
            // and planted symlinks are not listed (and never followed).
            if entry.type_ != FileType::RegularFile || !is_hex_of(alg, &entry.name) {
                continue;
            }
            let d = Digest {
                algorithm: alg,
                hex: entry.name,
            };
            let has_labels = listing.labelled.contains(&d.hex);
            let has_record = listing.recorded.contains(&d.hex);
            // Stat relative to the open directory: no path walk from the
            // root per blob. A blob deleted since it was listed is skipped.
            let stat = fs::stat_in(&listing.dir, &d.hex, "blobs")?;
            let info = match info_from(&d, stat, has_labels, has_record, view) {
                Ok(Some(info)) => info,
                Ok(None) => continue,
                // One blob's damage is its own: reported, and the walk
                // goes on past it (this call, or the next one, says so).
                Err(e @ Error::Corrupt(_)) if batch.is_empty() => return Err(e),
                Err(e @ Error::Corrupt(_)) => {
                    s.damaged = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            };
            if s.filters.matches(&info) {
                batch.push(info);
            }
        }
        Ok(batch)
    }
}

impl Fields for Info {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str)? {
            "digest" if path.len() == 1 => Some(self.digest.clone()),
            "size" if path.len() == 1 => Some(self.size.to_string()),
            "labels" => label_field(&self.labels, path),
            // Present (empty) when that holder holds the blob.
            "holders" => {
                let holder = rest_key(path)?;
                self.holders.contains(&holder).then(String::new)
            }
            _ => None,
        }
    }
}

/// An open blob.
pub struct BlobReader {
    fd: Descriptor,
    path: String,
    size: u64,
}

impl BlobReader {
    fn check(&self, offset: u64) -> Result<()> {
        if offset > self.size {
            Err(Error::OutOfRange)
        } else {
            Ok(())
        }
    }
}

impl GuestReader for BlobReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.check(offset)?;
        fs::read_at(
            &self.fd,
            &self.path,
            offset,
            len.min(MAX_READ).min(self.size - offset),
        )
    }

    fn read_via_stream(&self, offset: u64) -> Result<InputStream> {
        self.check(offset)?;
        self.fd
            .read_via_stream(offset)
            .map_err(|e| fs_error("read", &self.path, e))
    }
}
