//! The `ingester` interface: resumable, exclusive, verified writes.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::Component;
use crate::bindings::exports::kist::content::ingester::{
    Durability, Guest, GuestWriter, PutRequest, Writer, WriterOptions,
};
use crate::bindings::exports::kist::content::types::{IngestStatus as Status, Label};
use crate::bindings::kist::content::copier::{self, CopyError};
use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::kist::content::locks::{self, Guard};
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorType, NewTimestamp};
use crate::content::ingest::{self, Meta};
use crate::content::labels;
use crate::content::labels::Labels;
use crate::content::publish::{self, Stored, publish, stored};
use crate::content::put;
use crate::content::shared_ingest;
use crate::content::store;
use crate::retention::{holds, leases, quota};
use crate::shared::digest::Digest;
use crate::shared::error::{self, Error, Result, fs as fs_error, precondition};
use crate::shared::filters::Filters;
use crate::shared::fs;
use crate::shared::layout;
use crate::shared::scope::Caller;
use crate::shared::validate;

/// Bytes written between two saved hash states while a writer is open
/// (a writer also saves one when dropped), bounding what a resume after a
/// crash must hash again.
const CHECKPOINT_EVERY: u64 = 256 << 20;

impl Guest for Component {
    type Writer = IngestWriter;

    fn open_writer(r: String, options: WriterOptions) -> Result<Writer> {
        let caller = Caller::current();
        validate::reference(&r)?;
        validate::labels(&options.labels)?;
        let declared = Declared {
            total: options.expected_size,
            expected: options.expected.as_deref().map(Digest::parse).transpose()?,
            labels: labels::from_list(options.labels),
            holder: caller.holder_for(options.holder)?,
        };
        layout::ensure()?;
        if let Some(d) = &declared.expected
            && stored(d, declared.total)? == Stored::Intact
        {
            // Stored already, perhaps cached: held for this writer's
            // holder, and nothing needs sending (unless a collection
            // removed it since the look: then it is written as new).
            let holders = BTreeSet::from([declared.holder.clone()]);
            let meta = publish::Meta {
                labels: &declared.labels,
                holders: &holders,
            };
            if publish::hold_stored(d, declared.total, &meta)? {
                leases::note_content(&declared.holder, d)?;
                return Err(Error::AlreadyExists);
            }
        }
        let dir = ingest::dir_of(&r);
        let guard = locks::try_lock(&dir).map_err(|e| error::lock(&dir, e))?;
        // A dir without data is what a crash right after a commit's
        // rename leaves: the content is stored, the ingest is spent.
        let local = match (Meta::load(&dir)?, ingest::open_data(&dir)?) {
            (Some(meta), Some(data)) => Some((meta, data)),
            (spent, _) => {
                if spent.is_some() {
                    ingest::remove(&dir)?;
                }
                None
            }
        };
        let may = |meta: &Meta| resumable_by(&caller, meta, &r);
        let (meta, data) = match shared_ingest::reconcile(&dir, &r, local, may)? {
            Some((meta, data)) => {
                may(&meta)?;
                (reconcile(&dir, meta, &r, &declared)?, data)
            }
            None => {
                let meta = new_meta(&r, &declared);
                // A declared size is reserved before anything is created.
                quota::charge(&declared.holder, meta.total.unwrap_or(0))?;
                ingest::create(&dir, &meta)?;
                shared_ingest::begin(&dir, &meta)?;
                let data = ingest::open_data(&dir)?
                    .ok_or_else(|| Error::Io(format!("{dir}/data vanished")))?;
                (meta, data)
            }
        };
        for id in leases::ingest_leases(&meta) {
            leases::hold_ingest(id, &r)?;
        }
        let writer = IngestWriter::resume(r, dir, meta, data, guard)?;
        writer.reserve()?;
        Ok(Writer::new(writer))
    }

    fn put(request: PutRequest) -> Result<String> {
        put::put(request, Durability::Synced, &Caller::current())
    }

    fn put_batch(requests: Vec<PutRequest>, durability: Durability) -> Result<Vec<Result<String>>> {
        put::put_batch(requests, durability, &Caller::current())
    }

    fn status(r: String) -> Result<Status> {
        let caller = Caller::current();
        validate::reference(&r)?;
        layout::ensure()?;
        let dir = ingest::dir_of(&r);
        let local = match Meta::load(&dir)? {
            Some(meta) => Some((ingest::status_on_disk(&dir, &meta)?, meta)),
            None => None,
        };
        // The bucket's record, where another node moved the ingest on.
        let (status, meta) = match shared_ingest::status(&dir, &r, local.is_some())? {
            Some(elsewhere) => elsewhere,
            None => local.ok_or(Error::NotFound)?,
        };
        if !caller.owns(&Vec::from_iter(meta.holders())) {
            return Err(Error::NotFound);
        }
        Ok(status)
    }

    fn list_statuses(filters: Vec<String>) -> Result<Vec<Status>> {
        let caller = Caller::current();
        let filters = Filters::parse(&filters)?;
        layout::ensure()?;
        let mut out = Vec::new();
        for (name, _) in fs::list_dir(layout::INGEST)?.unwrap_or_default() {
            if !crate::shared::digest::is_hex_of(Algorithm::Sha256, &name) {
                continue; // a `.new` dir being created, or a stray file
            }
            let dir = format!("{}/{name}", layout::INGEST);
            // An ingest aborted or committed while listing is skipped.
            let Some(meta) = Meta::load(&dir)? else {
                continue;
            };
            if !caller.owns(&Vec::from_iter(meta.holders())) {
                continue;
            }
            let status = ingest::status_on_disk(&dir, &meta)?;
            if filters.matches(&status) {
                out.push(status);
            }
        }
        out.sort_by(|a, b| a.ref_.cmp(&b.ref_));
        Ok(out)
    }

    fn abort(r: String) -> Result<()> {
        let caller = Caller::current();
        validate::reference(&r)?;
        layout::ensure()?;
        let dir = ingest::dir_of(&r);
        let _guard = locks::try_lock(&dir).map_err(|e| error::lock(&dir, e))?;
        // Only the directory must exist: an ingest whose metadata is
        // damaged can still be aborted (by an unconfined caller: whose it
        // is cannot be told).
        if fs::stat(&dir)?.is_none() {
            // Perhaps begun on another node.
            let meta = shared_ingest::exists(&r)?.ok_or(Error::NotFound)?;
            if !caller.owns(&Vec::from_iter(meta.holders())) {
                return Err(Error::NotFound);
            }
            return shared_ingest::finish(&r);
        }
        if caller.confined {
            let meta = Meta::load(&dir).ok().flatten().ok_or(Error::NotFound)?;
            if !caller.owns(&Vec::from_iter(meta.holders())) {
                return Err(Error::NotFound);
            }
        }
        ingest::remove(&dir)?;
        shared_ingest::finish(&r)
    }
}

/// Refuses `caller` the ingest `r` of `meta` unless it holds it.
fn resumable_by(caller: &Caller, meta: &Meta, r: &str) -> Result<()> {
    if caller.owns(&Vec::from_iter(meta.holders())) {
        return Ok(());
    }
    Err(Error::Denied(format!(
        "ingest {r:?} is another holder's; a caller confined to {:?} may not resume it",
        caller.holder
    )))
}

/// What a caller declares when it opens an ingest.
struct Declared {
    total: Option<u64>,
    expected: Option<Digest>,
    labels: Labels,
    holder: String,
}

fn new_meta(r: &str, declared: &Declared) -> Meta {
    let now = fs::now();
    Meta {
        reference: r.to_owned(),
        total: declared.total,
        expected: declared.expected.as_ref().map(Digest::to_string),
        started: (now.seconds, now.nanoseconds),
        labels: declared.labels.clone(),
        holders: BTreeSet::from([declared.holder.clone()]),
    }
}

/// Checks what a resuming caller declares against what the ingest
/// recorded; a newly declared value is recorded, a different one refused.
/// Labels and the holder are added to the recorded ones.
fn reconcile(dir: &str, mut meta: Meta, r: &str, declared: &Declared) -> Result<Meta> {
    let (total, expected) = (declared.total, declared.expected.as_ref());
    if meta.reference != r {
        return Err(error::corrupt(
            dir,
            format!("holds ref {:?}, not {r:?}", meta.reference),
        ));
    }
    let expected = expected.map(Digest::to_string);
    let mut changed = false;
    for (declared, recorded, what) in [
        (
            total.map(|t| t.to_string()),
            meta.total.map(|t| t.to_string()),
            "size",
        ),
        (expected.clone(), meta.expected.clone(), "digest"),
    ] {
        match (declared, recorded) {
            (Some(d), Some(r)) if d != r => {
                return Err(precondition(format!(
                    "ingest {:?} was opened with {what} {r}, not {d}; abort it to start over",
                    meta.reference
                )));
            }
            (Some(_), None) => changed = true,
            _ => {}
        }
    }
    for (k, v) in &declared.labels {
        if meta.labels.get(k) != Some(v) {
            meta.labels.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let mut holders = meta.holders();
    if holders.insert(declared.holder.clone()) {
        meta.holders = holders;
        changed = true;
    }
    if changed {
        meta.total = meta.total.or(total);
        meta.expected = meta.expected.or(expected);
        meta.save(dir)?;
    }
    Ok(meta)
}

/// The exclusive writer of one ingest.
pub struct IngestWriter(RefCell<State>);

struct State {
    dir: String,
    meta: Meta,
    data: Descriptor,
    algorithm: Algorithm,
    hasher: Hasher,
    offset: u64,
    /// Offset of the last saved hash state.
    checkpoint: u64,
    /// Set once committed: nothing is left to save on drop.
    done: bool,
    /// Whether this writer changed the data: only then has a drop
    /// anything to send to the bucket (and a writer dropped unused does
    /// no I/O at all, wherever the embedder drops it).
    changed: bool,
    /// Whether the declared size was charged against the quotas at open,
    /// so writes need not be.
    reserved: bool,
    _guard: Guard,
}

impl IngestWriter {
    fn resume(r: String, dir: String, meta: Meta, data: Descriptor, guard: Guard) -> Result<Self> {
        debug_assert_eq!(meta.reference, r);
        let offset = fs::fstat(&data, &dir)?.size;
        let algorithm = meta.algorithm();
        let hasher = ingest::resume_hash(&dir, &data, algorithm, offset)?;
        Ok(Self(RefCell::new(State {
            dir,
            meta,
            data,
            algorithm,
            hasher,
            offset,
            checkpoint: offset,
            done: false,
            changed: false,
            reserved: false,
            _guard: guard,
        })))
    }

    /// Charges what is left of a declared size against the quotas (for a
    /// new ingest it was charged before it was created).
    fn reserve(&self) -> Result<()> {
        let mut s = self.0.borrow_mut();
        let Some(total) = s.meta.total else {
            return Ok(());
        };
        if s.offset > 0 {
            quota::charge(&s.holder(), total.saturating_sub(s.offset))?;
        }
        s.reserved = true;
        Ok(())
    }
}

impl State {
    /// The holder writes are charged to.
    fn holder(&self) -> String {
        self.meta
            .holders()
            .pop_first()
            .expect("one holder at least")
    }

    /// Appends what `put` writes at the offset (it returns how much),
    /// charging `charge` bytes first unless the declared size was
    /// reserved. All or nothing: after a failure the data file is cut back
    /// to the offset, so its size stays what the hash state describes.
    fn append(&mut self, charge: u64, put: impl FnOnce(&Self) -> Result<u64>) -> Result<u64> {
        if !self.reserved {
            quota::charge(&self.holder(), charge)?;
        }
        let written = match put(self) {
            Ok(n) => n,
            Err(e) => {
                let _ = self.data.set_size(self.offset);
                return Err(e);
            }
        };
        self.offset += written;
        self.changed = true;
        // The bytes are written: a failed checkpoint must not fail the write
        // (the caller would send them again). It only means a resume after
        // a crash re-hashes more.
        if self.offset - self.checkpoint >= CHECKPOINT_EVERY {
            let _ = self.checkpoint();
        }
        Ok(written)
    }

    fn checkpoint(&mut self) -> Result<()> {
        ingest::sync_data(&self.dir, &self.data)?;
        ingest::save_hash_state(&self.dir, self.offset, &self.hasher)?;
        self.checkpoint = self.offset;
        Ok(())
    }

    /// Checks the data against every declared size and digest; returns the
    /// digest to publish it under.
    fn verify(&self, size: Option<u64>, expected: Option<Digest>) -> Result<Digest> {
        for declared in [size, self.meta.total].into_iter().flatten() {
            if declared != self.offset {
                return Err(precondition(format!(
                    "size mismatch: expected {declared} bytes, ingest has {}",
                    self.offset
                )));
            }
        }
        let recorded = self
            .meta
            .expected
            .as_deref()
            .map(Digest::parse)
            .transpose()?;
        let computed = Digest::of(self.algorithm, &self.hasher);
        let mut publish = computed.clone();
        for declared in [expected, recorded].into_iter().flatten() {
            let actual = if declared.algorithm == self.algorithm {
                computed.clone()
            } else {
                ingest::rehash(&self.dir, &self.data, declared.algorithm, self.offset)?
            };
            if actual != declared {
                return Err(precondition(format!(
                    "digest mismatch: expected {declared}, ingest has {actual}"
                )));
            }
            publish = declared;
        }
        Ok(publish)
    }

    fn publish(&mut self, digest: &Digest, labels: &Labels) -> Result<()> {
        // A lease that ended while the data was written holds nothing: a
        // blob published for it would be held by no one it names.
        for id in leases::ingest_leases(&self.meta) {
            if !leases::holds(id)? {
                return Err(precondition(format!(
                    "lease {id:?} expired or was deleted while the ingest was written; \
                     its blob would be kept by nothing: abort the ingest, or write it again \
                     under a live lease"
                )));
            }
        }
        holds::touch_references(labels, digest)?;
        let data_path = format!("{}/data", self.dir);
        ingest::sync_data(&self.dir, &self.data)?;
        // The blob's created-at is its commit time.
        self.data
            .set_times(NewTimestamp::NoChange, NewTimestamp::Now)
            .map_err(|e| fs_error("touch", &data_path, e))?;
        let lock = store::lock_blob(digest)?;
        let dir = fs::Dir::open(&self.dir)?;
        let holders = self.meta.holders();
        let meta = publish::Meta {
            labels,
            holders: &holders,
        };
        let published = publish(
            &dir,
            "data",
            digest,
            self.offset,
            &meta,
            &lock,
            Durability::Synced,
        )
        .and_then(|new| match new {
            true => layout::blobs(digest.algorithm)?.sync(),
            false => Ok(()),
        });
        if matches!(published, Ok(()) | Err(Error::AlreadyExists)) {
            // Published, or stored already: either way the ingest is spent,
            // and a lease that held it holds the blob now.
            self.done = true;
            drop(lock);
            for id in leases::ingest_leases(&self.meta) {
                leases::committed(id, &self.meta.reference, digest)?;
            }
            ingest::remove(&self.dir)?;
            // Best effort: the blob is stored. A record left behind only
            // lets another node resume an upload its client has finished.
            let _ = shared_ingest::finish(&self.meta.reference);
        }
        published
    }
}

impl GuestWriter for IngestWriter {
    fn write(&self, data: Vec<u8>) -> Result<()> {
        let mut s = self.0.borrow_mut();
        s.append(data.len() as u64, |s| {
            // One crossing: the host writes the bytes and hashes them.
            copier::write_hashed(&s.data, s.offset, &data, &s.hasher)
                .map_err(|e| copy_error(&s.dir, e))?;
            Ok(data.len() as u64)
        })
        .map(drop)
    }

    fn write_from(&self, source: &Descriptor, source_offset: u64, length: u64) -> Result<u64> {
        let stat = source
            .stat()
            .map_err(|e| fs_error("stat", "the lent source", e))?;
        if stat.type_ != DescriptorType::RegularFile {
            return Err(error::invalid(
                "the source of write-from is not a regular file",
            ));
        }
        // Charged for what the source holds, not for a longer length asked.
        let length = length.min(stat.size.saturating_sub(source_offset));
        let mut s = self.0.borrow_mut();
        s.append(length, |s| {
            copier::copy_hashed(source, source_offset, &s.data, s.offset, length, &s.hasher)
                .map_err(|e| copy_error(&s.dir, e))
        })
    }

    fn status(&self) -> Result<Status> {
        let s = self.0.borrow();
        let modified = fs::fstat(&s.data, &s.dir)?.data_modification_timestamp;
        Ok(s.meta.status(s.offset, modified))
    }

    fn digest(&self) -> String {
        let s = self.0.borrow();
        Digest::of(s.algorithm, &s.hasher).to_string()
    }

    fn truncate(&self, size: u64) -> Result<()> {
        let mut s = self.0.borrow_mut();
        if size > s.offset {
            return Err(Error::OutOfRange);
        }
        s.data
            .set_size(size)
            .map_err(|e| fs_error("truncate", &s.dir, e))?;
        // The bytes before `size` are unchanged: a hash state saved at or
        // before it still holds. Then none is kept (one saved past `size`
        // would describe bytes that are gone); the next checkpoint, or
        // dropping the writer, saves one at the new offset.
        s.hasher = if size == 0 {
            Hasher::new(s.algorithm)
        } else {
            ingest::resume_hash(&s.dir, &s.data, s.algorithm, size)?
        };
        fs::remove_file(&format!("{}/hashstate", s.dir))?;
        shared_ingest::truncated(&s.dir, size)?;
        s.offset = size;
        s.changed = true;
        s.checkpoint = 0;
        Ok(())
    }

    fn commit(
        this: Writer,
        size: Option<u64>,
        expected: Option<String>,
        labels: Vec<Label>,
    ) -> Result<String> {
        validate::labels(&labels)?;
        let expected = expected.map(|d| Digest::parse(&d)).transpose()?;
        let writer: IngestWriter = this.into_inner();
        let mut s = writer.0.borrow_mut();
        let digest = s.verify(size, expected)?;
        let mut all = s.meta.labels.clone();
        all.extend(labels::from_list(labels));
        s.publish(&digest, &all)?;
        Ok(digest.to_string())
    }
}

impl Drop for IngestWriter {
    fn drop(&mut self) {
        let s = self.0.get_mut();
        if s.done {
            return;
        }
        if s.offset != s.checkpoint {
            // Best effort: without a saved state the next resume re-hashes.
            let _ = s.checkpoint();
        }
        if !s.changed {
            return;
        }
        // Best effort too: bytes the bucket lacks are only this node's,
        // and a node resuming elsewhere reports the bucket's offset.
        let so_far = Digest::of(s.algorithm, &s.hasher);
        let _ = shared_ingest::checkpoint(&s.dir, &s.meta, &s.data, s.offset, &so_far);
    }
}

/// A failed copy as the writer's error.
fn copy_error(dir: &str, e: CopyError) -> Error {
    match e {
        CopyError::BadDescriptor(m) => error::invalid(m),
        CopyError::NoSpace => Error::NoSpace(format!("the filesystem is full (write {dir}/data)")),
        CopyError::Io(m) => Error::Io(format!("copy to {dir}/data: {m}")),
    }
}
