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
use crate::content::labels::{LabelFile, Labels};
use crate::content::{bucket, labels, publish, quarantine, visible};
use crate::retention::{holds, leases, quota};
use crate::shared::digest::{ALGORITHMS, Digest, is_hex_of};
use crate::shared::error::{self, Error, Result, fs as fs_error, invalid};
use crate::shared::filters::{Fields, Filters, label_field, rest_key};
use crate::shared::fs::{self, FileType};
use crate::shared::layout;
use crate::shared::scope::Caller;
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
/// holds it. Its labels go with the hold, unless nobody holds the blob any
/// more: then it is cached until a collection and keeps the last holder's
/// labels meanwhile, so what it references stays reachable through it
/// while something held references it. `not-found` if `holder` did not
/// hold it. The caller holds the blob's lock.
pub fn release(d: &Digest, holder: &str, lock: &Guard) -> Result<Vec<String>> {
    if fs::stat(&d.blob_path())?.is_none() {
        return Err(Error::NotFound);
    }
    let record = holds::release(d, holder, lock)?;
    let mut labels = labels::load(d).unwrap_or_default();
    if !record.holding(d)?.is_empty() && labels.has(holder) {
        labels.drop_holder(holder);
        labels::save(d, &labels, fs::Durability::Synced)?;
    }
    record.live(d, &labels)
}

/// Which blobs a view of the store shows a caller.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    /// Those the caller holds (anyone holds, unconfined): what walks list.
    Held,
    /// Those the caller holds or reaches through references: what it may
    /// describe and read.
    Visible,
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
fn labels_to_rewrite(d: &Digest) -> Result<LabelFile> {
    match labels::load(d) {
        Err(Error::Corrupt(_)) => {
            let path = format!("{}/{}", layout::label_dir(d.algorithm), d.hex);
            quarantine::quarantine(&path, ".labels")?;
            Ok(LabelFile::default())
        }
        other => other,
    }
}

/// Fails with `not-found` unless the blob `d` is stored and `caller`
/// sees it (holds or reaches it).
pub fn require_visible(d: &Digest, caller: &Caller) -> Result<()> {
    info_of(d, caller)?.map(drop).ok_or(Error::NotFound)
}

/// The info of the blob `d` if `caller` sees it (holds or reaches it);
/// `None` if it is not stored or not visible.
fn info_of(d: &Digest, caller: &Caller) -> Result<Option<Info>> {
    info_from(
        d,
        fs::stat(&d.blob_path())?,
        true,
        true,
        View::Visible,
        caller,
    )
}

/// The info of the blob `d` from its metadata, if `view` shows it to
/// `caller`. `has_labels` and `has_record` say whether to look for its
/// label file and its hold record.
fn info_from(
    d: &Digest,
    stat: Option<DescriptorStat>,
    has_labels: bool,
    has_record: bool,
    view: View,
    caller: &Caller,
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
    let file = if has_labels {
        labels::load(d)?
    } else {
        LabelFile::default()
    };
    let live = record.live(d, &file)?;
    let shown = match view {
        View::Held => caller.sees(&live),
        View::Visible => visible::held(caller, d, &live)? || visible::reached(caller, d)?,
        View::Cached => live.is_empty(),
        View::Any => true,
    };
    if !shown {
        return Ok(None);
    }
    // Holds the caller does not see are not shown (nor any, for a blob it
    // only reaches).
    let holders = if caller.sees(&live) || view == View::Cached {
        caller.shown(live)
    } else {
        Vec::new()
    };
    let (labels, labelled_at) = file.of(&caller.holder);
    let graces = holders
        .iter()
        .filter_map(|h| {
            record
                .until
                .get(h)
                .map(|u| (h.clone(), holds::datetime(*u)))
        })
        .collect();
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
        graces,
    }))
}

impl Guest for Component {
    type Walker = BlobWalker;
    type Reader = BlobReader;

    fn info(digest: String) -> Result<Info> {
        let caller = Caller::current();
        let d = Digest::parse(&digest)?;
        layout::ensure()?;
        info_of(&d, &caller)?.ok_or(Error::NotFound)
    }

    fn update(info: Info, fieldpaths: Vec<String>) -> Result<Info> {
        let caller = Caller::current();
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
        let mut file = labels_to_rewrite(&d)?;
        let live = holds::load(&d)?.live(&d, &file)?;
        // A holder changes its own labels of what it holds; the last one's
        // stay with a blob kept by its `gc.root` label, to be removed.
        let mine = live.contains(&caller.holder) || (file.has(&caller.holder) && !live.is_empty());
        if !mine {
            return Err(Error::NotFound);
        }
        let labels = match keys {
            None => given,
            Some(keys) => {
                let (mut labels, _) = file.of(&caller.holder);
                for key in keys {
                    match given.get(&key) {
                        Some(v) => labels.insert(key, v.clone()),
                        None => labels.remove(&key),
                    };
                }
                labels
            }
        };
        file.set(&caller.holder, labels);
        labels::save(&d, &file, fs::Durability::Synced)?;
        let stat = fs::stat(&d.blob_path())?;
        info_from(&d, stat, true, true, View::Any, &caller)?.ok_or(Error::NotFound)
    }

    fn delete(digest: String, holder: Option<String>) -> Result<Vec<String>> {
        let caller = Caller::current();
        let d = Digest::parse(&digest)?;
        let holder = caller.releasing(holder)?;
        layout::ensure()?;
        let blob = lock_blob(&d)?;
        release(&d, &holder, &blob).map(|left| caller.shown(left))
    }

    fn hold(digest: String, holder: String) -> Result<Info> {
        let caller = Caller::current();
        let d = Digest::parse(&digest)?;
        let holder = caller.holder_for(Some(holder))?;
        layout::ensure()?;
        let Some(stat) = fs::stat(&d.blob_path())? else {
            // Not on this node: another node may have stored it.
            adopt(&d, &holder, &Labels::new())?.ok_or(Error::NotFound)?;
            leases::note_content(&holder, &d)?;
            return info_of(&d, &caller)?.ok_or(Error::NotFound);
        };
        quota::charge_hold(&d, &holder, stat.size)?;
        let blob = lock_blob(&d)?;
        if fs::stat(&d.blob_path())?.is_none() {
            return Err(Error::NotFound);
        }
        take(&d, &holder, &blob)?;
        drop(blob);
        leases::note_content(&holder, &d)?;
        info_of(&d, &caller)?.ok_or(Error::NotFound)
    }

    fn purge(digest: String) -> Result<u64> {
        Caller::current().administer("purge")?;
        let d = Digest::parse(&digest)?;
        layout::ensure()?;
        let _blob = lock_blob(&d)?;
        let blobs = layout::blobs(d.algorithm)?;
        // The bucket's copy first: no node fetches it again.
        let Some(stat) = blobs.stat(&d.hex)? else {
            // Only in the bucket, if anywhere: its size is what is freed.
            let size = bucket::size(&d)?.ok_or(Error::NotFound)?;
            bucket::remove(&d)?;
            return Ok(size);
        };
        bucket::remove(&d)?;
        let size = stat.size;
        // The blob first, its record last, as a collection removes one.
        blobs.remove(&d.hex)?;
        labels::remove(&d)?;
        holds::remove(&d)?;
        blobs.sync()?;
        Ok(size)
    }

    fn walk(filters: Vec<String>) -> Result<Walker> {
        BlobWalker::start(filters, View::Held, Caller::current())
    }

    fn walk_cached(filters: Vec<String>) -> Result<Walker> {
        let caller = Caller::current();
        caller.administer("listing cached blobs")?;
        BlobWalker::start(filters, View::Cached, caller)
    }

    fn open_reader(digest: String) -> Result<Reader> {
        let caller = Caller::current();
        Ok(Reader::new(open_blob(&Digest::parse(&digest)?, caller)?))
    }

    fn read_blob(digest: String, max_size: u64) -> Result<Vec<u8>> {
        let blob = open_blob(&Digest::parse(&digest)?, Caller::current())?;
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

/// Makes `holder` hold the stored blob `d`; a cached one is taken back with
/// its labels, which become `holder`'s. The caller holds the blob's lock.
pub fn take(d: &Digest, holder: &str, lock: &Guard) -> Result<()> {
    let mut file = labels::load(d).unwrap_or_default();
    let was_cached = holds::load(d)?.live(d, &file)?.is_empty();
    holds::add(d, holder, lock)?;
    if was_cached {
        file.pass_to(holder, &[]);
        labels::save(d, &file, fs::Durability::Synced)?;
    }
    Ok(())
}

/// Makes `holder` hold the blob `d` that a node of the store's bucket
/// stored, with `labels` (what that node's holder gave it): fetched from
/// the bucket if this node lacks it. Its size; `None` if neither this
/// node nor the bucket has it. Takes `d`'s lock.
pub fn adopt(d: &Digest, holder: &str, labels: &Labels) -> Result<Option<u64>> {
    layout::ensure()?;
    let size = match fs::stat(&d.blob_path())? {
        Some(stat) => stat.size,
        None => match bucket::size(d)? {
            Some(size) => size,
            None => return Ok(None),
        },
    };
    quota::charge_hold(d, holder, size)?;
    fetch(d, size, holder, labels)?;
    Ok(Some(size))
}

/// Fetches the blob `d` (`size` bytes) from the bucket into this node's
/// store, held by `holder` with `labels`. If it is stored here intact
/// (another caller fetched or stored it), `holder` holds that copy, as
/// any publish of a stored blob does.
fn fetch(d: &Digest, size: u64, holder: &str, labels: &Labels) -> Result<()> {
    let blobs = layout::blobs(d.algorithm)?;
    let lock = lock_blob(d)?;
    // Beside the blob, as `put` writes (walks skip its name); its fixed
    // name is safe under the blob's lock.
    let tmp = format!(".{}.fetch", d.hex);
    if publish::stored(d, Some(size))? != publish::Stored::Intact {
        bucket::fetch(d, size, blobs, &tmp)?;
    }
    let holders = BTreeSet::from([holder.to_owned()]);
    let meta = publish::Meta {
        labels,
        holders: &holders,
    };
    match publish::publish_fetched(blobs, &tmp, (d, size), &meta, &lock) {
        Ok(true) => blobs.sync(),
        Ok(false) | Err(Error::AlreadyExists) => blobs.remove(&tmp).map(drop),
        Err(e) => {
            blobs.remove(&tmp)?;
            Err(e)
        }
    }
}

/// Opens the blob `d` if `caller` sees it. The common case costs an open,
/// an `fstat` and a `stat` of its hold record; what is not a regular file
/// is only looked at when the open fails or finds something else.
pub fn open_blob(d: &Digest, caller: Caller) -> Result<BlobReader> {
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
    let blob = BlobReader {
        fd,
        path,
        size: stat.size,
        digest: d.clone(),
        caller,
    };
    blob.check_visible()?;
    Ok(blob)
}

/// A walk in progress: the algorithms still to list and the directory
/// being listed.
pub struct BlobWalker(RefCell<WalkState>);

struct WalkState {
    /// Which blobs it lists, to whom.
    view: View,
    caller: Caller,
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
    fn start(filters: Vec<String>, view: View, caller: Caller) -> Result<Walker> {
        let filters = Filters::parse(&filters)?;
        layout::ensure()?;
        Ok(Walker::new(BlobWalker(RefCell::new(WalkState {
            view,
            caller,
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
            let info = match info_from(&d, stat, has_labels, has_record, view, &s.caller) {
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

/// An open blob, and who opened it.
pub struct BlobReader {
    pub fd: Descriptor,
    pub path: String,
    pub size: u64,
    digest: Digest,
    caller: Caller,
}

impl BlobReader {
    /// Whether the caller may still read the blob: it was not removed
    /// (purged, collected) since it was opened, and the caller still sees
    /// it. An unconfined caller keeps reading a blob released meanwhile;
    /// a confined one stops when its holder no longer holds or reaches it.
    /// Without a hold record the blob is held by `default` alone: the
    /// common case costs one `stat`.
    fn check_visible(&self) -> Result<()> {
        let d = &self.digest;
        let holders = if layout::holds(d.algorithm)?.stat(&d.hex)?.is_some() {
            holds::load(d)?.live(d, &labels::load(d).unwrap_or_default())?
        } else {
            vec![holds::DEFAULT.to_owned()]
        };
        if visible::held(&self.caller, d, &holders)? || visible::reached(&self.caller, d)? {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// Checks a read at `offset`: within the blob, which is still there
    /// for this caller.
    fn check(&self, offset: u64) -> Result<()> {
        if offset > self.size {
            return Err(Error::OutOfRange);
        }
        if fs::fstat(&self.fd, &self.path)?.link_count == 0 {
            return Err(Error::NotFound); // purged or collected
        }
        if self.caller.confined {
            self.check_visible()?;
        }
        Ok(())
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
