//! One ingest on disk: `ingest/<sha256(ref)>/` holding `meta` (what the
//! caller declared), `data` (the bytes so far) and `hashstate` (the hash
//! state at some offset, so a resume need not re-read everything).
//!
//! The size of `data` is the ingest's offset: the single source of truth.
//! A `hashstate` is only a shortcut; when it is missing, damaged or ahead
//! of the data, the data is hashed again.
//!
//! Nothing here is synced except the data before a hash state is saved and
//! at commit: after a crash of the process the page cache still has it
//! all, and after a power cut an uncommitted ingest may be lost or need
//! re-hashing, which is allowed. Only a commit must be durable.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::types::IngestStatus as Status;
use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::wasi::clocks::wall_clock::Datetime;
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags};
use crate::content::labels::Labels;
use crate::shared::digest::{Digest, key_of};
use crate::shared::error::{Result, corrupt, fs as fs_error};
use crate::shared::filters::Fields;
use crate::shared::fs::{self, Durability};
use crate::shared::layout;

/// Directory of the ingest `r`; also the name of the lock that makes its
/// writer exclusive.
pub fn dir_of(r: &str) -> String {
    format!("{}/{}", layout::INGEST, key_of(r))
}

/// What the caller declared when the ingest was opened.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct Meta {
    /// The caller's ref.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Declared size.
    pub total: Option<u64>,
    /// Declared digest.
    pub expected: Option<String>,
    /// When the ingest was created: (seconds, nanoseconds).
    pub started: (u64, u32),
    /// Labels declared at open, which the blob gets at commit (absent in
    /// ingests a kist before 0.2 created).
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Who holds the blob it becomes (`default` when empty: ingests a
    /// kist before 0.2 created); a lease among them holds the ingest too.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub holders: BTreeSet<String>,
}

impl Meta {
    /// Who holds the blob it becomes.
    pub fn holders(&self) -> BTreeSet<String> {
        if self.holders.is_empty() {
            BTreeSet::from([crate::retention::holds::DEFAULT.to_owned()])
        } else {
            self.holders.clone()
        }
    }

    /// The hash algorithm the ingest computes while writing.
    pub fn algorithm(&self) -> Algorithm {
        self.expected
            .as_deref()
            .and_then(|d| Digest::parse(d).ok())
            .map_or(Algorithm::Sha256, |d| d.algorithm)
    }

    /// Reads `dir/meta`; `None` if the ingest does not exist.
    pub fn load(dir: &str) -> Result<Option<Self>> {
        let path = format!("{dir}/meta");
        let Some(bytes) = fs::read_file(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(&path, e))
    }

    /// Replaces `dir/meta` atomically (not synced: see the module docs).
    pub fn save(&self, dir: &str) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("meta serialises");
        fs::write_atomic(dir, "meta", &bytes, Durability::Cached)
    }

    /// The ingest's status, given its data file's metadata.
    pub fn status(&self, offset: u64, modified: Option<Datetime>) -> Status {
        let (seconds, nanoseconds) = self.started;
        let started_at = Datetime {
            seconds,
            nanoseconds,
        };
        Status {
            ref_: self.reference.clone(),
            offset,
            total: self.total,
            expected: self.expected.clone(),
            started_at,
            updated_at: modified.unwrap_or(started_at),
        }
    }
}

/// Creates the ingest `dir` atomically: it is built under a temporary
/// name and renamed into place, so a crash never leaves half an ingest.
/// The caller holds the ingest's lock.
pub fn create(dir: &str, meta: &Meta) -> Result<()> {
    let tmp = format!("{dir}.new");
    fs::remove_tree(&tmp)?;
    fs::mkdir(&tmp)?;
    meta.save(&tmp)?;
    fs::open(
        &format!("{tmp}/data"),
        OpenFlags::CREATE,
        DescriptorFlags::WRITE,
    )?;
    fs::rename(&tmp, dir)
}

/// Opens `dir/data` for appending and reading.
pub fn open_data(dir: &str) -> Result<Option<Descriptor>> {
    fs::open_existing(
        &format!("{dir}/data"),
        DescriptorFlags::READ | DescriptorFlags::WRITE,
    )
}

/// The status of the ingest in `dir`, read from disk.
pub fn status_on_disk(dir: &str, meta: &Meta) -> Result<Status> {
    let path = format!("{dir}/data");
    let stat = fs::stat(&path)?;
    Ok(meta.status(
        stat.as_ref().map_or(0, |s| s.size),
        stat.and_then(|s| s.data_modification_timestamp),
    ))
}

/// Saves `hasher`'s state as of `offset`. The data up to `offset` must be
/// on disk first (the caller syncs it), so a saved state never claims
/// bytes a power cut lost.
///
/// Format: crc32 (LE) of the rest, offset (u64 LE), the host's state.
pub fn save_hash_state(dir: &str, offset: u64, hasher: &Hasher) -> Result<()> {
    let mut body = offset.to_le_bytes().to_vec();
    body.extend_from_slice(&hasher.export_state());
    let mut bytes = crc32fast::hash(&body).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    fs::write_atomic(dir, "hashstate", &bytes, Durability::Cached)
}

/// The hash of `data` up to `size`: from the saved state when it is valid
/// and not ahead of the data, else from the start.
pub fn resume_hash(
    dir: &str,
    data: &Descriptor,
    algorithm: Algorithm,
    size: u64,
) -> Result<Hasher> {
    let (from, hasher) =
        saved_hash_state(dir, algorithm, size)?.unwrap_or_else(|| (0, Hasher::new(algorithm)));
    fs::for_each_chunk(data, &format!("{dir}/data"), from, size, |chunk| {
        hasher.update(chunk)
    })?;
    Ok(hasher)
}

fn saved_hash_state(dir: &str, algorithm: Algorithm, size: u64) -> Result<Option<(u64, Hasher)>> {
    let Some(bytes) = fs::read_file(&format!("{dir}/hashstate"))? else {
        return Ok(None);
    };
    if bytes.len() < 12 {
        return Ok(None);
    }
    let (crc, body) = bytes.split_at(4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Ok(None);
    }
    let (offset, state) = body.split_at(8);
    let offset = u64::from_le_bytes(offset.try_into().expect("8 bytes"));
    if offset > size {
        return Ok(None);
    }
    Ok(Hasher::restore(algorithm, state).map(|h| (offset, h)))
}

/// Hashes `size` bytes of `data` with `algorithm` (a commit whose expected
/// digest uses another algorithm than the one computed while writing).
pub fn rehash(dir: &str, data: &Descriptor, algorithm: Algorithm, size: u64) -> Result<Digest> {
    let hasher = Hasher::new(algorithm);
    fs::for_each_chunk(data, &format!("{dir}/data"), 0, size, |chunk| {
        hasher.update(chunk)
    })?;
    Ok(Digest::of(algorithm, &hasher))
}

/// Removes the ingest `dir` (data and state); the caller holds its lock.
///
/// It is renamed to `<dir>.gone` first, so a crash midway never leaves half
/// an ingest under its name; what it leaves is removed by the next
/// collection (or `fsck --repair`).
pub fn remove(dir: &str) -> Result<()> {
    let gone = format!("{dir}{GONE}");
    match fs::stat(dir)? {
        None => return Ok(()),
        Some(_) => {
            fs::remove_tree(&gone)?;
            fs::rename(dir, &gone)?;
        }
    }
    fs::remove_tree(&gone).map(drop)
}

/// The suffix of an ingest directory being removed.
pub const GONE: &str = ".gone";

/// Removes what interrupted removals left (`<dir>.gone` directories).
pub fn sweep_removed() -> Result<()> {
    for (name, kind) in fs::list_dir(layout::INGEST)?.unwrap_or_default() {
        if kind == fs::FileType::Directory && name.ends_with(GONE) {
            fs::remove_tree(&format!("{}/{name}", layout::INGEST))?;
        }
    }
    Ok(())
}

/// Flushes `data` to disk.
pub fn sync_data(dir: &str, data: &Descriptor) -> Result<()> {
    data.sync_data()
        .map_err(|e| fs_error("sync", &format!("{dir}/data"), e))
}

impl Fields for Status {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str)? {
            "ref" if path.len() == 1 => Some(self.ref_.clone()),
            "offset" if path.len() == 1 => Some(self.offset.to_string()),
            "total" if path.len() == 1 => self.total.map(|t| t.to_string()),
            "expected" if path.len() == 1 => self.expected.clone(),
            _ => None,
        }
    }
}
