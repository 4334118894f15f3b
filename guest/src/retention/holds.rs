//! Who holds each blob: `holds/<alg>/<hex>`, one small JSON record for a
//! blob that anything but `default` alone holds or held.
//!
//! No record means held by `default` only: what kist's CLI and library
//! store, and every blob of a store from before holds existed. So the
//! common case — a `put` by the default holder — writes nothing more.
//!
//! Records change under the blob's lock. A record is written before the
//! blob it describes is published (a crash in between leaves a record
//! without a blob, which the next publish replaces and fsck removes), and
//! removed after the blob is (so a blob never loses its holds).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::artifacts::records;
use crate::bindings::kist::content::lender;
use crate::bindings::kist::content::locks::Guard;
use crate::bindings::wasi::clocks::wall_clock::Datetime;
use crate::content::labels::{LabelFile, Labels};
use crate::retention::leases;
use crate::shared::digest::{self, Digest};
use crate::shared::error::{Error, Result, corrupt, invalid};
use crate::shared::fs::{self, Durability};
use crate::shared::layout;

/// The holder of what the CLI and library store when none is given.
pub const DEFAULT: &str = "default";
/// Holders that are leases: `lease/<id>`.
pub const LEASE: &str = "lease/";
/// Holders that are artifacts of the storer: `artifact/<path>`.
pub const ARTIFACT: &str = "artifact/";
/// Holders that are registry repositories: `registry/<repository>`. Their
/// holds are roots only until their `until` (see [`Record::roots`]).
pub const REGISTRY: &str = "registry/";
/// The label that makes a blob a root, and the holder it shows as.
pub const ROOT_LABEL: &str = "containerd.io/gc.root";
const ROOT_HOLDER: &str = "label/containerd.io/gc.root";
/// Longest holder name, in bytes.
const MAX_HOLDER: usize = 1024;

/// A time as records keep it: (seconds, nanoseconds) since the epoch.
pub type Stamp = (u64, u32);

/// The current time as a [`Stamp`].
pub fn now() -> Stamp {
    let t = fs::now();
    (t.seconds, t.nanoseconds)
}

/// What `holds/<alg>/<hex>` holds.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The holders, sorted.
    pub holders: BTreeSet<String>,
    /// When the last holder released the blob; `None` while held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Stamp>,
    /// Who held it last, kept while it is cached: whose quota it counts
    /// against.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub released_by: BTreeSet<String>,
    /// Blobs written since it was released that reference it (a
    /// `gc.ref` label), by digest, and when: a collection keeps it while
    /// one of them is live, or may still be being published (see
    /// [`GRACE`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub touched: BTreeMap<String, Stamp>,
    /// Holders whose hold is a root only until a time (registry
    /// repositories: their grace). Past it the holder still holds the
    /// blob while something live reaches it; a collection releases it
    /// from what nothing reaches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub until: BTreeMap<String, Stamp>,
}

/// How long after a write touched a cached blob a collection keeps it if
/// the referencing blob is not there: the write touches before it
/// publishes, in the same call, and a call ends within its deadline
/// (120 s by default).
pub const GRACE_SECONDS: u64 = 300;

impl Record {
    /// The record of a blob without one: held by `default`.
    pub fn implicit() -> Self {
        Self {
            holders: BTreeSet::from([DEFAULT.to_owned()]),
            ..Self::default()
        }
    }

    /// The holders that hold the blob `d` now, root labels aside: whose
    /// labels count (see [`LabelFile::counted`]).
    pub fn holding(&self, d: &Digest) -> Result<Vec<String>> {
        self.live(d, &LabelFile::default())
    }

    /// The holders that hold the blob `d` now: leases that expired or were
    /// deleted do not, nor artifacts whose record no longer names it; a
    /// `containerd.io/gc.root` label does.
    pub fn live(&self, d: &Digest, labels: &LabelFile) -> Result<Vec<String>> {
        let mut live = Vec::new();
        for h in &self.holders {
            let holds = if let Some(id) = h.strip_prefix(LEASE) {
                leases::holds(id)?
            } else if let Some(path) = h.strip_prefix(ARTIFACT) {
                records::holds_blob(path, &d.to_string())?
            } else {
                true
            };
            if holds {
                live.push(h.clone());
            }
        }
        if labels.counted(&live).any(|(k, _)| k == ROOT_LABEL) {
            live.push(ROOT_HOLDER.to_owned());
            live.sort();
        }
        Ok(live)
    }

    /// The holders of `d` that keep it by themselves at `now`: [`live`]
    /// ones whose grace, if they have one, has not run out. What a
    /// collection starts from.
    ///
    /// [`live`]: Record::live
    pub fn roots(&self, d: &Digest, labels: &LabelFile, now: Stamp) -> Result<Vec<String>> {
        let mut live = self.live(d, labels)?;
        live.retain(|h| self.until.get(h).is_none_or(|until| *until > now));
        Ok(live)
    }

    /// When the blob was last released or referenced: what eviction orders
    /// by.
    pub fn last_use(&self) -> Stamp {
        let touched = self.touched.values().max().copied();
        self.released.max(touched).unwrap_or_default()
    }
}

/// Checks a holder name given by a caller: printable ASCII without
/// spaces, 1 to 1024 bytes, a lease that exists. `label/` holders are
/// shown, never given.
pub fn check(holder: &str) -> Result<()> {
    if holder.is_empty()
        || holder.len() > MAX_HOLDER
        || !holder.bytes().all(|b| matches!(b, b'!'..=b'~'))
    {
        return Err(invalid(format!(
            "holder {holder:?}: 1 to {MAX_HOLDER} printable ASCII characters without spaces"
        )));
    }
    if holder.starts_with("label/") {
        return Err(invalid(format!(
            "holder {holder:?}: label holders are set by labels, not given"
        )));
    }
    if let Some(id) = holder.strip_prefix(LEASE)
        && !leases::holds(id)?
    {
        return Err(Error::NotFound);
    }
    Ok(())
}

fn path(d: &Digest) -> String {
    format!("{}/{}", layout::hold_dir(d.algorithm), d.hex)
}

/// The record of `d`, or the implicit one when it has none.
pub fn load(d: &Digest) -> Result<Record> {
    Ok(stored(d)?.unwrap_or_else(Record::implicit))
}

/// The record of `d` if it has one.
pub fn stored(d: &Digest) -> Result<Option<Record>> {
    let path = path(d);
    let Some(bytes) = fs::read_file(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(&path, e))
}

/// Replaces the record of `d`; the implicit record is stored as none. The
/// caller holds the blob's lock.
pub fn save(d: &Digest, record: &Record, durability: Durability, _locked: &Guard) -> Result<()> {
    if *record == Record::implicit() {
        return remove(d);
    }
    let bytes = serde_json::to_vec(record).expect("records serialise");
    fs::write_atomic(&layout::hold_dir(d.algorithm), &d.hex, &bytes, durability)?;
    // A holder may have gone: no loan outlives the check it was made under.
    lender::revoke();
    Ok(())
}

/// Removes the record of `d` (the blob is gone, or held by `default`
/// only). The caller holds the blob's lock.
pub fn remove(d: &Digest) -> Result<()> {
    layout::holds(d.algorithm)?.remove(&d.hex)?;
    lender::revoke();
    Ok(())
}

/// The record a blob published now for `holders` starts with, replacing
/// whatever a crash may have left. The caller holds the blob's lock.
pub fn publish(
    d: &Digest,
    holders: &BTreeSet<String>,
    durability: Durability,
    lock: &Guard,
) -> Result<()> {
    let mut record = Record {
        holders: holders.clone(),
        ..Record::default()
    };
    for h in holders {
        if let Some(until) = grace_of(h)? {
            record.until.insert(h.clone(), until);
        }
    }
    save(d, &record, durability, lock)
}

/// Makes `holder` hold the stored blob `d` (a cached one is live again);
/// returns whether anything changed. The caller holds the blob's lock.
pub fn add(d: &Digest, holder: &str, lock: &Guard) -> Result<bool> {
    add_until(d, holder, grace_of(holder)?, lock)
}

/// [`add`] with a hold that is a root only until `until` (`None`: for
/// good); a later `until` than the one recorded extends it.
pub fn add_until(d: &Digest, holder: &str, until: Option<Stamp>, lock: &Guard) -> Result<bool> {
    let mut record = load(d)?;
    let extends = until.is_some_and(|u| record.until.get(holder).is_none_or(|old| u > *old));
    if record.holders.contains(holder) && record.released.is_none() && !extends {
        return Ok(false);
    }
    record.holders.insert(holder.to_owned());
    if let Some(until) = until.filter(|_| extends) {
        record.until.insert(holder.to_owned(), until);
    }
    record.released = None;
    record.released_by.clear();
    if until.is_none() {
        // Held for good: nothing needs to remember who references it. A
        // hold with a grace still does, for when the grace runs out.
        record.touched.clear();
    }
    save(d, &record, Durability::Synced, lock)?;
    // A hold this node's last roots do not list: the bucket must not
    // delete the blob meanwhile.
    crate::retention::condemned::rescue(d)?;
    Ok(true)
}

/// Sets when `holder`'s hold on `d` stops being a root by itself, later
/// or sooner than before. The caller holds the blob's lock.
pub fn set_until(d: &Digest, holder: &str, until: Stamp, lock: &Guard) -> Result<()> {
    let mut record = load(d)?;
    if record.holders.contains(holder) && record.until.get(holder) != Some(&until) {
        record.until.insert(holder.to_owned(), until);
        save(d, &record, Durability::Synced, lock)?;
    }
    Ok(())
}

/// Until when a hold `holder` takes now is a root by itself: registry
/// holds for the upload grace, others for good.
pub fn grace_of(holder: &str) -> Result<Option<Stamp>> {
    if !holder.starts_with(REGISTRY) {
        return Ok(None);
    }
    let grace = crate::retention::settings::current()?.upload_grace;
    Ok(Some(later(now(), grace)))
}

/// A [`Stamp`] as WIT's `datetime`.
pub fn datetime((seconds, nanoseconds): Stamp) -> Datetime {
    Datetime {
        seconds,
        nanoseconds,
    }
}

/// The latest time a record keeps: 9999-12-31T23:59:59Z, the last second
/// RFC 3339 (and every tool that prints one) can write. Later expiries are
/// this one: forever, as far as anyone can tell.
pub const LAST: u64 = 253_402_300_799;

/// `stamp` plus `seconds`, at most [`LAST`].
pub fn later(stamp: Stamp, seconds: u64) -> Stamp {
    (stamp.0.saturating_add(seconds).min(LAST), stamp.1)
}

/// Releases `holder`'s hold on `d`; returns the record after. `not-found`
/// if it did not hold it. The caller holds the blob's lock.
pub fn release(d: &Digest, holder: &str, lock: &Guard) -> Result<Record> {
    let mut record = load(d)?;
    if !record.holders.remove(holder) {
        return Err(Error::NotFound);
    }
    record.until.remove(holder);
    if record.holders.is_empty() {
        record.released = Some(now());
        record.released_by = BTreeSet::from([holder.to_owned()]);
    }
    save(d, &record, Durability::Synced, lock)?;
    Ok(record)
}

/// Notes that `source`, about to be written, references `d`, so that a
/// collection running now does not remove `d` from under it. Only a blob
/// no root holds can be collected, so one held for good needs nothing.
/// Takes `d`'s lock itself: call it before taking any other.
pub fn touch(d: &Digest, source: &Digest) -> Result<()> {
    let Some(record) = stored(d)? else {
        return Ok(());
    };
    if kept_while_writing(d, &record)? {
        return Ok(());
    }
    let lock = crate::content::store::lock_blob(d)?;
    if let Some(record) = stored(d)? {
        mark_touched(d, record, source, &lock)?;
        crate::retention::condemned::rescue(d)?;
    }
    Ok(())
}

/// Whether a root holds `d` (whose record is `record`) for longer than a
/// write in progress can take: then nothing need note that the write
/// references it.
pub fn kept_while_writing(d: &Digest, record: &Record) -> Result<bool> {
    let soon = later(now(), GRACE_SECONDS);
    Ok(!record.roots(d, &LabelFile::default(), soon)?.is_empty())
}

/// Records in `record`, `d`'s, that `source` references it now. The
/// caller holds `d`'s lock.
pub fn mark_touched(d: &Digest, mut record: Record, source: &Digest, lock: &Guard) -> Result<()> {
    record.touched.insert(source.to_string(), now());
    save(d, &record, Durability::Synced, lock)
}

/// The digests the `containerd.io/gc.ref.content` labels among `labels`
/// name: `…content`, `…content.<x>` and `…content/<x>`. Values that are
/// not digests are no references.
pub fn references<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<Digest> {
    const KEY: &str = "containerd.io/gc.ref.content";
    labels
        .filter(|(k, _)| {
            k.strip_prefix(KEY)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '/']))
        })
        .filter_map(|(_, v)| Digest::parse(v).ok())
        .collect()
}

/// Touches every blob `labels` reference for `source` (see [`touch`]).
pub fn touch_references(labels: &Labels, source: &Digest) -> Result<()> {
    references(labels.iter())
        .iter()
        .try_for_each(|d| touch(d, source))
}

/// Removes what a collection interrupted between unlinking blobs and
/// removing their labels and records leaves: released records, and labels,
/// whose blob is gone (labels of a publish that crashed before its rename
/// too: they belong to nothing). Each under the blob's lock, which a
/// publish holds from its labels to its rename.
pub fn sweep_orphans() -> Result<()> {
    for alg in crate::shared::digest::ALGORITHMS {
        let labelled = crate::content::labels::labelled(alg)?;
        let recorded = recorded(alg)?;
        for hex in labelled.iter().chain(&recorded) {
            let d = Digest {
                algorithm: alg,
                hex: hex.clone(),
            };
            if fs::stat(&d.blob_path())?.is_some() {
                continue;
            }
            let lock = crate::content::store::lock_blob(&d)?;
            if fs::stat(&d.blob_path())?.is_none() {
                crate::content::labels::remove(&d)?;
                if stored(&d)?.is_some_and(|r| r.holders.is_empty()) {
                    remove(&d)?;
                }
            }
            drop(lock);
        }
    }
    Ok(())
}

/// Hex names of the `alg` blobs that have a record.
pub fn recorded(
    alg: crate::bindings::kist::content::hasher::Algorithm,
) -> Result<BTreeSet<String>> {
    let names = fs::list_dir(&layout::hold_dir(alg))?.unwrap_or_default();
    Ok(names
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| digest::is_hex_of(alg, n))
        .collect())
}
