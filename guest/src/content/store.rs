//! The `store` interface: reading, describing, labelling and deleting
//! committed blobs.

use std::cell::RefCell;
use std::collections::HashSet;

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
use crate::shared::digest::{ALGORITHMS, Digest, is_hex_of};
use crate::shared::error::{self, Error, Result, fs as fs_error, invalid};
use crate::shared::filters::{Fields, Filters, rest_key};
use crate::shared::fs::{self, FileType};
use crate::shared::layout;
use crate::shared::validate;

/// Most infos one `walker.next` returns.
const BATCH: usize = 256;
/// Largest `read-at` in bytes.
const MAX_READ: u64 = 16 << 20;
/// How long blob operations wait for each other (commit, delete, label
/// update of the same blob), in milliseconds.
const BLOB_LOCK_WAIT_MS: u32 = 10_000;

/// Serialises changes to one blob (publish, delete, label update) across
/// instances and processes.
pub fn lock_blob(d: &Digest) -> Result<Guard> {
    let name = format!("blob/{d}");
    locks::lock(&name, BLOB_LOCK_WAIT_MS).map_err(|e| error::lock(&name, e))
}

/// Removes the blob `d` and its labels; the caller holds its lock.
pub fn remove_blob(d: &Digest, _locked: &Guard) -> Result<()> {
    let blobs = layout::blobs(d.algorithm)?;
    if !blobs.remove(&d.hex)? {
        return Err(Error::NotFound);
    }
    labels::remove(d)?;
    blobs.sync()
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

/// The info of the blob `d` if it is stored. `has_labels` says whether to
/// look for its label file.
fn info_of(d: &Digest, has_labels: bool) -> Result<Option<Info>> {
    info_from(d, fs::stat(&d.blob_path())?, has_labels)
}

/// The info of the blob `d` from its metadata (`None`: not stored).
fn info_from(d: &Digest, stat: Option<DescriptorStat>, has_labels: bool) -> Result<Option<Info>> {
    let Some(stat) = stat else {
        return Ok(None);
    };
    if stat.type_ != FileType::RegularFile {
        // Never followed: a symlink here could point out of the store.
        return Err(not_a_blob(d, stat.type_));
    }
    let created_at = stat.data_modification_timestamp.unwrap_or_else(fs::now);
    let (labels, labelled_at) = if has_labels {
        labels::load(d)?
    } else {
        Default::default()
    };
    Ok(Some(Info {
        digest: d.to_string(),
        size: stat.size,
        created_at,
        updated_at: labelled_at
            .filter(|t| (t.seconds, t.nanoseconds) > (created_at.seconds, created_at.nanoseconds))
            .unwrap_or(created_at),
        labels: labels::to_list(labels),
    }))
}

impl Guest for Component {
    type Walker = BlobWalker;
    type Reader = BlobReader;

    fn info(digest: String) -> Result<Info> {
        let d = Digest::parse(&digest)?;
        layout::ensure()?;
        info_of(&d, true)?.ok_or(Error::NotFound)
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
        let _blob = lock_blob(&d)?;
        info_of(&d, false)?.ok_or(Error::NotFound)?;
        let current = labels_to_rewrite(&d)?;
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
        info_of(&d, true)?.ok_or(Error::NotFound)
    }

    fn delete(digest: String) -> Result<()> {
        let d = Digest::parse(&digest)?;
        layout::ensure()?;
        let blob = lock_blob(&d)?;
        remove_blob(&d, &blob)
    }

    fn walk(filters: Vec<String>) -> Result<Walker> {
        let filters = Filters::parse(&filters)?;
        layout::ensure()?;
        Ok(Walker::new(BlobWalker(RefCell::new(WalkState {
            damaged: None,
            filters,
            pending: ALGORITHMS.to_vec(),
            current: None,
        }))))
    }

    fn open_reader(digest: String) -> Result<Reader> {
        let d = Digest::parse(&digest)?;
        layout::ensure()?;
        let path = d.blob_path();
        // A symlink is reported as one, not as the loop error opening it
        // without following gives.
        if let Some(s) = fs::stat(&path)?.filter(|s| s.type_ != FileType::RegularFile) {
            return Err(not_a_blob(&d, s.type_));
        }
        let fd = fs::open_existing(&path, DescriptorFlags::READ)?.ok_or(Error::NotFound)?;
        let stat = fs::fstat(&fd, &path)?;
        if stat.type_ != FileType::RegularFile {
            return Err(not_a_blob(&d, stat.type_));
        }
        Ok(Reader::new(BlobReader {
            fd,
            path,
            size: stat.size,
        }))
    }
}

/// A walk in progress: the algorithms still to list and the directory
/// being listed.
pub struct BlobWalker(RefCell<WalkState>);

struct WalkState {
    /// A blob that could not be described, reported by the next call.
    damaged: Option<Error>,
    filters: Filters,
    pending: Vec<Algorithm>,
    /// The directory being listed, its entries, and which have labels.
    current: Option<(Algorithm, Descriptor, DirectoryEntryStream, HashSet<String>)>,
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
                s.current = Some((alg, fd, entries, labels::labelled(alg)?));
            }
            let (alg, dir, entries, labelled) = s.current.as_ref().expect("set above");
            let alg = *alg;
            let Some(entry) = fs::next_entry(entries, "blobs")? else {
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
            let has_labels = labelled.contains(&d.hex);
            // Stat relative to the open directory: no path walk from the
            // root per blob. A blob deleted since it was listed is skipped.
            let stat = fs::stat_in(dir, &d.hex, "blobs")?;
            let info = match info_from(&d, stat, has_labels) {
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
            "labels" => {
                let key = rest_key(path)?;
                self.labels
                    .iter()
                    .find(|l| l.key == key)
                    .map(|l| l.value.clone())
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
