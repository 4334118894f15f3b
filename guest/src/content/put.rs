//! `ingester.put` and `ingester.put-batch`: small blobs stored in one call,
//! with no ingest to resume or abort.

use std::collections::BTreeSet;

use crate::bindings::exports::kist::content::ingester::{Durability, PutRequest};
use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::content::labels;
use crate::content::publish::{self, Meta, Stored, publish, stored};
use crate::content::store;
use crate::retention::{holds, leases, quota};
use crate::shared::digest::Digest;
use crate::shared::error::{self, Error, Result, fs as fs_error, precondition};
use crate::shared::fs;
use crate::shared::layout;
use crate::shared::scope::Caller;
use crate::shared::validate;

/// Largest blob `put` takes in one call, and largest batch in all.
pub const MAX_PUT: u64 = 16 << 20;
/// Most requests in one `put-batch`.
const MAX_BATCH: usize = 4096;

/// Stores one blob; with [`Durability::Synced`] it is on disk on return.
pub fn put(request: PutRequest, durability: Durability, caller: &Caller) -> Result<String> {
    if request.data.len() as u64 > MAX_PUT {
        return Err(error::invalid(format!(
            "put takes at most {MAX_PUT} bytes; use a writer"
        )));
    }
    layout::ensure()?;
    let digest = store_one(request, durability, caller)?;
    if durability == Durability::Synced {
        layout::blobs(digest.algorithm)?.sync()?;
    }
    Ok(digest.to_string())
}

/// Stores each request on its own; with [`Durability::Synced`] every blob
/// directory a request touched is synced once, before returning.
pub fn put_batch(
    requests: Vec<PutRequest>,
    durability: Durability,
    caller: &Caller,
) -> Result<Vec<Result<String>>> {
    let total: u64 = requests.iter().map(|r| r.data.len() as u64).sum();
    if requests.len() > MAX_BATCH || total > MAX_PUT {
        return Err(error::invalid(format!(
            "a batch holds at most {MAX_BATCH} requests and {MAX_PUT} bytes; \
             this one has {} and {total}",
            requests.len()
        )));
    }
    layout::ensure()?;
    let mut touched: Vec<Algorithm> = Vec::new();
    let results: Vec<Result<String>> = requests
        .into_iter()
        .map(|r| {
            let digest = store_one(r, durability, caller)?;
            if !touched.contains(&digest.algorithm) {
                touched.push(digest.algorithm);
            }
            Ok(digest.to_string())
        })
        .collect();
    if durability == Durability::Synced {
        for alg in touched {
            layout::blobs(alg)?.sync()?;
        }
    }
    Ok(results)
}

/// Checks and stores one blob, syncing its data (not its directory) when
/// `durability` asks for it. Content already stored succeeds, its labels
/// unchanged, and is held by the request's holder too.
fn store_one(request: PutRequest, durability: Durability, caller: &Caller) -> Result<Digest> {
    let holder = caller.holder_for(request.holder.clone())?;
    let digest = store_for(request, &holder, durability)?;
    // Once the blob's lock is released: a lease lists what it holds.
    leases::note_content(&holder, &digest)?;
    Ok(digest)
}

/// [`store_one`] for the checked `holder`.
fn store_for(request: PutRequest, holder: &str, durability: Durability) -> Result<Digest> {
    let PutRequest {
        data,
        expected,
        labels,
        holder: _,
    } = request;
    validate::labels(&labels)?;
    let expected = expected.map(|d| Digest::parse(&d)).transpose()?;
    let algorithm = expected.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm);
    let hasher = Hasher::new(algorithm);
    hasher.update(&data);
    let digest = Digest::of(algorithm, &hasher);
    if let Some(e) = expected.filter(|e| *e != digest) {
        return Err(precondition(format!(
            "digest mismatch: expected {e}, data has {digest}"
        )));
    }
    let blobs = layout::blobs(algorithm)?;
    let size = data.len() as u64;
    let labels = labels::from_list(labels);
    let holders = BTreeSet::from([holder.to_owned()]);
    let meta = Meta {
        labels: &labels,
        holders: &holders,
    };
    if stored(&digest, Some(size))? == Stored::Intact {
        // The common case, stored by `default` and held by it alone (no
        // record: nothing collects it), is settled by that one look.
        if holds::stored(&digest)?.is_none() && holders.contains(holds::DEFAULT) {
            return Ok(digest);
        }
        if publish::hold_stored(&digest, Some(size), &meta)? {
            return Ok(digest);
        }
        // Collected since the look: stored anew below.
    }
    quota::charge(holder, size)?;
    holds::touch_references(&labels, &digest)?;
    // A temporary file beside the blob (walks skip its name); its fixed
    // name is safe under the blob's lock.
    let lock = store::lock_blob(&digest)?;
    let tmp = format!(".{}.put", digest.hex);
    let written = write_file(blobs, &tmp, &data, durability)
        .and_then(|()| publish(blobs, &tmp, &digest, size, &meta, &lock, durability));
    match written {
        Ok(true) => Ok(digest),
        // A cached copy was taken back instead.
        Ok(false) => {
            blobs.remove(&tmp)?;
            Ok(digest)
        }
        Err(e) => {
            blobs.remove(&tmp)?;
            match e {
                Error::AlreadyExists => Ok(digest),
                e => Err(e),
            }
        }
    }
}

/// Writes `data` to a new file `name` in `dir`, synced if `durability`
/// says so.
fn write_file(dir: &fs::Dir, name: &str, data: &[u8], durability: Durability) -> Result<()> {
    let fd = dir.create(name)?;
    let path = format!("{}/{name}", dir.path());
    fs::write_all(&fd, &path, data, 0)?;
    if durability == Durability::Synced {
        fd.sync_data().map_err(|e| fs_error("sync", &path, e))?;
    }
    Ok(())
}
