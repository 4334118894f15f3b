//! The `leases` interface: `leases/<sha256(id)>`, one JSON record per
//! lease with what it holds. A lease holds a blob as the holder
//! `lease/<id>` in the blob's own record (so a blob's holders are read in
//! one place); the lease's record lists its resources for `resources` and
//! for `delete`. A deleted or expired lease holds nothing: blob records
//! that still name it count it as gone, and a collection tidies them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Component;
use crate::bindings::exports::kist::content::leases::{Guest, Lease, LeaseResource};
use crate::bindings::exports::kist::content::types::Label;
use crate::bindings::kist::content::lender;
use crate::bindings::kist::content::locks::{self, Guard};
use crate::content::{ingest, labels, store};
use crate::retention::holds::{self, LEASE, Stamp};
use crate::shared::digest::{Digest, key_of};
use crate::shared::error::{self, Error, Result, corrupt, invalid};
use crate::shared::filters::{Fields, Filters, label_field};
use crate::shared::fs::{self, Durability};
use crate::shared::scope::Caller;
use crate::shared::{layout, validate};

/// Label that sets a lease's expiry (RFC 3339), as containerd's.
const EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// Label that makes a lease flat, as containerd's.
const FLAT_LABEL: &str = "containerd.io/gc.flat";
/// Longest lease id.
const MAX_ID: usize = 256;

/// What `leases/<key>` holds.
#[derive(Serialize, Deserialize, Clone)]
pub struct Record {
    pub id: String,
    pub labels: labels::Labels,
    pub created: Stamp,
    pub expires: Option<Stamp>,
    /// Blobs it holds, by digest.
    pub content: BTreeSet<String>,
    /// Ingests it holds, by ref.
    pub ingests: BTreeSet<String>,
}

impl Record {
    /// Whether it still holds anything at `now`.
    pub fn live(&self, now: Stamp) -> bool {
        self.expires.is_none_or(|e| e > now)
    }

    /// Whether it holds exactly its resources, without following their
    /// references.
    pub fn flat(&self) -> bool {
        self.labels.contains_key(FLAT_LABEL)
    }

    fn to_lease(&self) -> Lease {
        let time = holds::datetime;
        Lease {
            id: self.id.clone(),
            labels: labels::to_list(self.labels.clone()),
            created_at: time(self.created),
            expires_at: self.expires.map(time),
            flat: self.flat(),
        }
    }
}

fn path_of(id: &str) -> String {
    format!("{}/{}", layout::LEASES, key_of(id))
}

/// The record of the lease `id`, live or not; `None` if there is none.
pub fn load(id: &str) -> Result<Option<Record>> {
    let path = path_of(id);
    let Some(bytes) = fs::read_file(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(&path, e))
}

/// Whether the lease `id` exists and has not expired.
pub fn holds(id: &str) -> Result<bool> {
    Ok(load(id)?.is_some_and(|r| r.live(holds::now())))
}

/// Every lease record, live or not.
pub fn all() -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (name, _) in fs::list_dir(layout::LEASES)?.unwrap_or_default() {
        if crate::shared::digest::is_hex_of(
            crate::bindings::kist::content::hasher::Algorithm::Sha256,
            &name,
        ) && let Some(bytes) = fs::read_file(&format!("{}/{name}", layout::LEASES))?
        {
            let path = format!("{}/{name}", layout::LEASES);
            out.push(serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))?);
        }
    }
    Ok(out)
}

fn save(record: &Record) -> Result<()> {
    let bytes = serde_json::to_vec(record).expect("records serialise");
    fs::write_atomic(
        layout::LEASES,
        &key_of(&record.id),
        &bytes,
        Durability::Synced,
    )
}

/// Removes the lease `id`'s record. The caller holds its lock.
pub fn remove(id: &str) -> Result<()> {
    fs::remove_file(&path_of(id))?;
    // What the lease kept may no longer be reached.
    lender::revoke();
    Ok(())
}

/// Serialises changes to one lease.
pub fn lock(id: &str) -> Result<Guard> {
    let name = format!("lease/{id}");
    locks::lock(&name, store::BLOB_LOCK_WAIT_MS).map_err(|e| error::lock(&name, e))
}

/// The live lease `id` and its lock; `not-found` if there is none.
fn live(id: &str) -> Result<(Record, Guard)> {
    let guard = lock(id)?;
    match load(id)? {
        Some(r) if r.live(holds::now()) => Ok((r, guard)),
        _ => Err(Error::NotFound),
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_ID
        || !id.bytes().all(|b| matches!(b, b'!'..=b'~') && b != b'/')
    {
        return Err(invalid(format!(
            "lease id {id:?}: 1 to {MAX_ID} printable ASCII characters without spaces or `/`"
        )));
    }
    Ok(())
}

/// The expiry `expire_label` (RFC 3339, UTC `Z` or an offset) gives.
fn parse_expiry(value: &str) -> Result<Stamp> {
    let bad = || {
        invalid(format!(
            "{EXPIRE_LABEL} {value:?}: expected an RFC 3339 time"
        ))
    };
    let (date, time) = value.split_once(['T', 't']).ok_or_else(bad)?;
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let mut d = date.split('-');
    let (y, m, day) = (
        num(d.next().ok_or_else(bad)?)?,
        num(d.next().ok_or_else(bad)?)?,
        num(d.next().ok_or_else(bad)?)?,
    );
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => return Err(bad()),
    };
    let mut c = clock.split(':');
    let (hh, mm, ss) = (
        num(c.next().ok_or_else(bad)?)?,
        num(c.next().ok_or_else(bad)?)?,
        c.next().ok_or_else(bad)?,
    );
    let (secs, nanos) = match ss.split_once('.') {
        Some((s, frac)) => {
            let digits: String = frac.chars().chain("000000000".chars()).take(9).collect();
            (num(s)?, digits.parse::<u32>().map_err(|_| bad())?)
        }
        None => (num(ss)?, 0),
    };
    let offset_secs = match offset {
        "Z" | "z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (h, m) = o[1..].split_once(':').ok_or_else(bad)?;
            sign * (num(h)? * 3600 + num(m)? * 60)
        }
    };
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's
    // `days_from_civil`).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let at = days * 86_400 + hh * 3600 + mm * 60 + secs - offset_secs;
    u64::try_from(at).map(|s| (s, nanos)).map_err(|_| bad())
}

impl Guest for Component {
    fn create(id: Option<String>, expires_in: Option<u64>, labels: Vec<Label>) -> Result<Lease> {
        Caller::current().administer("leases")?;
        validate::labels(&labels)?;
        let labels = labels::from_list(labels);
        let now = holds::now();
        let id = match id {
            Some(id) => id,
            None => format!("kist-{}-{:09}", now.0, now.1),
        };
        check_id(&id)?;
        let expires = match (expires_in, labels.get(EXPIRE_LABEL)) {
            (Some(s), _) => Some(holds::later(now, s)),
            (None, Some(v)) => Some(parse_expiry(v).map(|(s, n)| (s.min(holds::LAST), n))?),
            (None, None) => None,
        };
        layout::ensure()?;
        let _guard = lock(&id)?;
        if load(&id)?.is_some_and(|r| r.live(now)) {
            return Err(Error::AlreadyExists);
        }
        let record = Record {
            id,
            labels,
            created: now,
            expires,
            content: BTreeSet::new(),
            ingests: BTreeSet::new(),
        };
        save(&record)?;
        Ok(record.to_lease())
    }

    fn get(id: String) -> Result<Lease> {
        Caller::current().administer("leases")?;
        layout::ensure()?;
        match load(&id)? {
            Some(r) if r.live(holds::now()) => Ok(r.to_lease()),
            _ => Err(Error::NotFound),
        }
    }

    fn list(filters: Vec<String>) -> Result<Vec<Lease>> {
        Caller::current().administer("leases")?;
        let filters = Filters::parse(&filters)?;
        layout::ensure()?;
        let now = holds::now();
        let mut out: Vec<Lease> = all()?
            .into_iter()
            .filter(|r| r.live(now))
            .map(|r| r.to_lease())
            .filter(|l| filters.matches(l))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn delete(id: String) -> Result<()> {
        Caller::current().administer("leases")?;
        layout::ensure()?;
        let (record, _guard) = live(&id)?;
        // The record goes first: from then on the lease holds nothing,
        // whatever the blob records still say.
        remove(&id)?;
        release_all(&record)
    }

    fn add_resource(id: String, resource: LeaseResource) -> Result<()> {
        Caller::current().administer("leases")?;
        layout::ensure()?;
        let (mut record, _guard) = live(&id)?;
        match resource {
            LeaseResource::Content(d) => {
                let d = Digest::parse(&d)?;
                let blob = store::lock_blob(&d)?;
                if fs::stat(&d.blob_path())?.is_none() {
                    return Err(Error::NotFound);
                }
                // Recorded in the lease first: a crash before the blob's
                // record names it leaves the lease listing a blob it does
                // not hold yet, never one it holds unlisted.
                record.content.insert(d.to_string());
                save(&record)?;
                holds::add(&d, &format!("{LEASE}{id}"), &blob)?;
            }
            LeaseResource::Ingest(r) => {
                validate::reference(&r)?;
                record.ingests.insert(r);
                save(&record)?;
            }
        }
        Ok(())
    }

    fn delete_resource(id: String, resource: LeaseResource) -> Result<()> {
        Caller::current().administer("leases")?;
        layout::ensure()?;
        let (mut record, _guard) = live(&id)?;
        match resource {
            LeaseResource::Content(d) => {
                let d = Digest::parse(&d)?;
                if !record.content.remove(&d.to_string()) {
                    return Err(Error::NotFound);
                }
                release_blob(&d, &id)?;
            }
            LeaseResource::Ingest(r) => {
                if !record.ingests.remove(&r) {
                    return Err(Error::NotFound);
                }
            }
        }
        save(&record)
    }

    fn resources(id: String) -> Result<Vec<LeaseResource>> {
        Caller::current().administer("leases")?;
        layout::ensure()?;
        let (record, _guard) = live(&id)?;
        Ok(record
            .content
            .into_iter()
            .map(LeaseResource::Content)
            .chain(record.ingests.into_iter().map(LeaseResource::Ingest))
            .collect())
    }
}

/// Releases every blob the (deleted or expired) lease `record` held.
pub fn release_all(record: &Record) -> Result<()> {
    for d in &record.content {
        if let Ok(d) = Digest::parse(d) {
            release_blob(&d, &record.id)?;
        }
    }
    Ok(())
}

/// Drops the lease `id`'s hold on `d`, if it still has one.
fn release_blob(d: &Digest, id: &str) -> Result<()> {
    let blob = store::lock_blob(d)?;
    match store::release(d, &format!("{LEASE}{id}"), &blob) {
        Ok(_) | Err(Error::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Lists the blob `d` among the lease's resources when `holder` is a lease
/// (it was written or taken by one): call it once the blob's lock is
/// released.
pub fn note_content(holder: &str, d: &Digest) -> Result<()> {
    let Some(id) = holder.strip_prefix(LEASE) else {
        return Ok(());
    };
    let guard = lock(id)?;
    if let Some(mut record) = load(id)?
        && record.content.insert(d.to_string())
    {
        save(&record)?;
    }
    drop(guard);
    Ok(())
}

/// Records that the lease `id` holds the ingest `reference` (an ingest
/// opened with the lease as its holder).
pub fn hold_ingest(id: &str, reference: &str) -> Result<()> {
    let (mut record, _guard) = live(id)?;
    if record.ingests.insert(reference.to_owned()) {
        save(&record)?;
    }
    Ok(())
}

/// Moves the lease `id`'s hold from the ingest `reference` to the blob
/// `d` it was committed as (the blob's record already names the lease).
pub fn committed(id: &str, reference: &str, d: &Digest) -> Result<()> {
    let guard = lock(id)?;
    if let Some(mut record) = load(id)? {
        record.ingests.remove(reference);
        record.content.insert(d.to_string());
        save(&record)?;
    }
    drop(guard);
    Ok(())
}

/// The leases an ingest's record names among its holders.
pub fn ingest_leases(meta: &ingest::Meta) -> impl Iterator<Item = &str> {
    meta.holders.iter().filter_map(|h| h.strip_prefix(LEASE))
}

impl Fields for Lease {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str)? {
            "id" if path.len() == 1 => Some(self.id.clone()),
            "labels" => label_field(&self.labels, path),
            _ => None,
        }
    }
}
