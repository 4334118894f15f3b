//! The `storer` interface: artifacts owned by objects, their retention,
//! archives and extraction. Records are in `artifacts.rs`; bytes are
//! blobs.

use crate::Component;
use crate::artifacts::archive;
use crate::artifacts::extract;
use crate::artifacts::records::{self, FileRecord, ObjectRecord, Place, to_artifact};
use crate::bindings::exports::kist::content::storer::{
    ArchiveOptions, Artifact, ArtifactLock, ExtractOptions, Guest, GuestArtifactLock, Object,
    RetentionPolicy, Source,
};
use crate::bindings::exports::kist::content::types::Label;
use crate::bindings::kist::content::hasher::Hasher;
use crate::bindings::kist::content::locks::Guard;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, OpenFlags, PathFlags,
};
use crate::content::labels;
use crate::content::new_blob::{DescriptorReader, NewBlob, from_io};
use crate::content::store;
use crate::retention::holds;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, fs as fs_error, invalid, precondition};
use crate::shared::filters::{Fields, Filters, label_field};
use crate::shared::fs;
use crate::shared::layout;
use crate::shared::scope::Caller;
use crate::shared::validate;

/// How long operations wait for an object's artifact lock.
const LOCK_WAIT_MS: u32 = 10_000;
/// Longest revision, in bytes.
const MAX_REVISION: usize = 1024;

/// A held artifact lock.
pub struct HeldLock {
    _guard: Guard,
}

impl GuestArtifactLock for HeldLock {}

impl Guest for Component {
    type ArtifactLock = HeldLock;

    fn reconcile_artifact(
        object: Object,
        revision: String,
        filename: String,
        source: Source<'_>,
        metadata: Vec<Label>,
    ) -> Result<Artifact> {
        Caller::current().administer("artifacts")?;
        let place = Place::of(&object)?;
        records::filename(&filename)?;
        validate::labels(&metadata)?;
        if revision.is_empty() || revision.len() > MAX_REVISION || revision.contains('\0') {
            return Err(invalid(format!(
                "revision must be 1 to {MAX_REVISION} bytes without NUL"
            )));
        }
        layout::ensure()?;
        let _lock = place.lock(LOCK_WAIT_MS)?;
        let loaded = place.load_owned(&object)?;
        let first = loaded.is_none();
        let mut owner = loaded.unwrap_or(ObjectRecord {
            kind: object.kind,
            namespace: object.namespace,
            name: object.name,
            uid: object.uid,
            current: None,
        });
        let files = place.files()?;
        if let Some(current) = owner.current.as_ref().filter(|c| **c == filename)
            && let Some(record) = files.get(current)
            && record.revision == revision
            && verifies(record)?
        {
            return Ok(to_artifact(&place, &owner, &filename, record.clone()));
        }
        let holder = records::holder(&place, &filename);
        let (digest, size) = build(source, &holder)?;
        let record = FileRecord {
            revision,
            digest: digest.to_string(),
            size,
            updated: records::now(),
            seq: files.values().map(|r| r.seq + 1).max().unwrap_or(0),
            metadata: labels::from_list(metadata),
        };
        // The file first: a crash before the object names it as current
        // leaves an older-looking artifact, never a dangling alias. A new
        // object's record (its uid, its directories) comes before both.
        if first {
            place.save(&owner)?;
        }
        place.save_file(&filename, &record)?;
        owner.current = Some(filename.clone());
        place.save(&owner)?;
        if let Some(old) = files.get(&filename).filter(|o| o.digest != record.digest) {
            release(&old.digest, &holder)?;
        }
        Ok(to_artifact(&place, &owner, &filename, record))
    }

    fn reconcile_storage(object: Object, policy: RetentionPolicy) -> Result<Vec<Artifact>> {
        Caller::current().administer("artifacts")?;
        let place = Place::of(&object)?;
        layout::ensure()?;
        let _lock = place.lock(LOCK_WAIT_MS)?;
        let Some(mut owner) = place.load_owned(&object)? else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        let mut others = Vec::new();
        let mut current_kept = false;
        for (file, record) in place.files()? {
            if owner.current.as_ref() != Some(&file) {
                others.push((file, record));
            } else if verifies(&record)? {
                current_kept = true;
            } else {
                removed.push((file, record));
            }
        }
        // Newest first; the recording order breaks ties between equal
        // times, so no two artifacts are ever confused.
        others.sort_by_key(|(_, r)| std::cmp::Reverse((r.updated, r.seq)));
        let room = (policy.max_count.max(1) as usize).saturating_sub(usize::from(current_kept));
        let now = records::now();
        let mut kept = 0;
        for (file, record) in others {
            let age = (now.0.saturating_sub(record.updated.0), now.1);
            let expired = policy
                .ttl_seconds
                .is_some_and(|ttl| age.0 > ttl || (age.0 == ttl && now.1 > record.updated.1));
            // Expired artifacts are removed without using up the count;
            // only an artifact that would be kept is re-hashed, and one
            // that no longer verifies leaves its place to the next.
            if expired || kept == room || !verifies(&record)? {
                removed.push((file, record));
            } else {
                kept += 1;
            }
        }
        if !current_kept && owner.current.take().is_some() {
            place.save(&owner)?;
        }
        forget(&place, &owner, removed)
    }

    fn remove_object(object: Object) -> Result<Vec<Artifact>> {
        Caller::current().administer("artifacts")?;
        let place = Place::of(&object)?;
        layout::ensure()?;
        let _lock = place.lock(LOCK_WAIT_MS)?;
        let owner = place.load_owned(&object)?.ok_or(Error::NotFound)?;
        let files: Vec<_> = place.files()?.into_iter().collect();
        place.remove()?;
        // Records are gone, so no file is listed twice; forget frees blobs.
        forget(&place, &owner, files)
    }

    fn archive(dir: &Descriptor, options: ArchiveOptions) -> Result<(String, u64)> {
        Caller::current().administer("artifacts")?;
        let mut out = NewBlob::create()?;
        archive::write(dir, &options, &mut out)?;
        let (digest, size) = out.publish(holds::DEFAULT)?;
        Ok((digest.to_string(), size))
    }

    fn get(path: String) -> Result<Option<Artifact>> {
        Caller::current().administer("artifacts")?;
        layout::ensure()?;
        let Some((place, owner, file)) = records::resolve(&path)? else {
            return Ok(None);
        };
        Ok(place
            .file(&file)?
            .map(|r| to_artifact(&place, &owner, &file, r)))
    }

    fn verify(path: String) -> Result<Artifact> {
        Caller::current().administer("artifacts")?;
        let artifact = Self::get(path)?.ok_or(Error::NotFound)?;
        let d = Digest::parse(&artifact.digest)?;
        match digest_of_blob(&d)? {
            None => Err(Error::NotFound),
            Some(actual) if actual == d => Ok(artifact),
            Some(actual) => Err(precondition(format!(
                "{}: recorded digest {d}, the bytes hash to {actual}",
                artifact.path
            ))),
        }
    }

    fn list(filters: Vec<String>) -> Result<Vec<Artifact>> {
        Caller::current().administer("artifacts")?;
        let filters = Filters::parse(&filters)?;
        layout::ensure()?;
        let mut out = Vec::new();
        for (place, owner) in records::objects()? {
            for (file, record) in place.files()? {
                let artifact = to_artifact(&place, &owner, &file, record);
                if filters.matches(&artifact) {
                    out.push(artifact);
                }
            }
        }
        Ok(out)
    }

    fn extract(
        path: String,
        sub_path: String,
        destination: &Descriptor,
        options: ExtractOptions,
    ) -> Result<u64> {
        Caller::current().administer("artifacts")?;
        let artifact = Self::get(path)?.ok_or(Error::NotFound)?;
        let d = Digest::parse(&artifact.digest)?;
        extract::extract(&d, &sub_path, destination, &options)
    }

    fn lock(object: Object, timeout_ms: u32) -> Result<ArtifactLock> {
        Caller::current().administer("artifacts")?;
        let place = Place::of(&object)?;
        layout::ensure()?;
        Ok(ArtifactLock::new(HeldLock {
            _guard: place.lock(timeout_ms)?,
        }))
    }
}

/// Stores the bytes of `source` as a blob that `holder` holds; returns
/// its digest and size.
fn build(source: Source<'_>, holder: &str) -> Result<(Digest, u64)> {
    match source {
        Source::Directory((dir, options)) => {
            let mut out = NewBlob::create()?;
            archive::write(dir, &options, &mut out)?;
            out.publish(holder)
        }
        Source::File((dir, name)) => {
            let fd = dir
                .open_at(
                    PathFlags::empty(),
                    &name,
                    OpenFlags::empty(),
                    DescriptorFlags::READ,
                )
                .map_err(|e| fs_error("open", &name, e))?;
            let stat = fd.stat().map_err(|e| fs_error("stat", &name, e))?;
            if stat.type_ != DescriptorType::RegularFile {
                return Err(invalid(format!("{name}: not a regular file")));
            }
            let mut out = NewBlob::create()?;
            let mut reader = DescriptorReader {
                fd: &fd,
                path: name.clone(),
                at: 0,
                size: stat.size,
            };
            std::io::copy(&mut reader, &mut out).map_err(|e| from_io(e, &name))?;
            out.publish(holder)
        }
        Source::Blob(digest) => {
            let d = Digest::parse(&digest)?;
            let lock = store::lock_blob(&d)?;
            let size = fs::stat(&d.blob_path())?.ok_or(Error::NotFound)?.size;
            holds::add(&d, holder, &lock)?;
            Ok((d, size))
        }
    }
}

/// Forgets the artifacts `files` of an object (their records are removed
/// here if still present) and releases their blobs: what nothing else
/// holds goes at the next collection.
fn forget(
    place: &Place,
    owner: &ObjectRecord,
    files: Vec<(String, FileRecord)>,
) -> Result<Vec<Artifact>> {
    let mut out = Vec::new();
    for (file, record) in files {
        place.remove_file(&file)?;
        release(&record.digest, &records::holder(place, &file))?;
        out.push(to_artifact(place, owner, &file, record));
    }
    Ok(out)
}

/// Drops `holder`'s hold on the blob `digest`, if it has one.
fn release(digest: &str, holder: &str) -> Result<()> {
    let d = Digest::parse(digest)?;
    let lock = store::lock_blob(&d)?;
    match store::release(&d, holder, &lock) {
        Ok(_) | Err(Error::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the blob of `record` is there and hashes to its digest.
fn verifies(record: &FileRecord) -> Result<bool> {
    let d = Digest::parse(&record.digest)?;
    Ok(digest_of_blob(&d)? == Some(d))
}

/// What the blob stored as `d` hashes to; `None` if it is not stored.
fn digest_of_blob(d: &Digest) -> Result<Option<Digest>> {
    let path = d.blob_path();
    let Some(fd) = fs::open_existing(&path, DescriptorFlags::READ)? else {
        return Ok(None);
    };
    let size = fs::fstat(&fd, &path)?.size;
    let hasher = Hasher::new(d.algorithm);
    fs::for_each_chunk(&fd, &path, 0, size, |chunk| hasher.update(chunk))?;
    Ok(Some(Digest::of(d.algorithm, &hasher)))
}

impl Fields for Artifact {
    fn field(&self, path: &[String]) -> Option<String> {
        let one = |v: &str| (path.len() == 1).then(|| v.to_owned());
        match path.first().map(String::as_str)? {
            "kind" => one(&self.object.kind),
            "namespace" => one(&self.object.namespace),
            "name" => one(&self.object.name),
            "uid" => one(&self.object.uid),
            "path" => one(&self.path),
            "revision" => one(&self.revision),
            "digest" => one(&self.digest),
            "size" => one(&self.size.to_string()),
            "metadata" => label_field(&self.metadata, path),
            _ => None,
        }
    }
}
