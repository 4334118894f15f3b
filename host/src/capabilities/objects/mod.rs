//! `kist:content/objects`: one bucket of an S3-compatible object store,
//! under one prefix, for a store kept in object storage.
//!
//! The S3 client (`s3`) comes with the `s3` feature, off by default: an
//! embedding built without it links no HTTP client, and every call
//! answers `unsupported`.

use std::fs::File;
use std::sync::Arc;

use wasmtime::component::Resource;
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::Descriptor;

use super::CapabilitiesView;
use super::copier::{self, Source};
use super::hasher::{Hash, HashState};
use crate::bindings::kist::content::copier::CopyError;
use crate::bindings::kist::content::objects::{Host, Listing, ObjectError, ObjectMeta, PutMode};

#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "s3")]
pub use s3::ObjectBucket;
#[cfg(not(feature = "s3"))]
mod without_s3;
#[cfg(not(feature = "s3"))]
pub use without_s3::ObjectBucket;

/// Where a download's bytes go as well, as they arrive: a server that
/// streams a blob to its client while the node fetches it from the
/// bucket. The embedder sets one for one call
/// ([`Registry::stat_blob_tapped`](crate::Registry::stat_blob_tapped)); the
/// first download from offset 0 in that call takes it. The tap sees the
/// bytes before the component has checked them: whoever serves them
/// holds back the end until the call says they are the blob.
pub trait BlobTap: Send {
    /// The download began and brings `size` bytes; false stops the tap.
    fn begin(&mut self, size: u64) -> bool;
    /// The next bytes, in order, as the socket gave them (a few MiB per
    /// call); false stops the tap (and the download goes on without it).
    fn bytes(&mut self, chunks: Vec<bytes::Bytes>) -> bool;
}

/// Largest body `put` takes and `get-record` returns, and the size up to
/// which `upload` sends one PUT.
const MAX_RECORD: u64 = 16 << 20;

/// What `objects` asks of a bucket, key by key; `upload` gets the file
/// checked and the hash taken out of the guest's hasher, and `download`
/// writes what `read` gives through the copier.
trait Bucket {
    fn head(&self, key: &str) -> Result<ObjectMeta, ObjectError>;
    fn get_record(&self, key: &str) -> Result<(Vec<u8>, String), ObjectError>;
    fn put(&self, key: &str, data: Vec<u8>, mode: PutMode) -> Result<String, ObjectError>;
    fn delete(&self, key: &str) -> Result<(), ObjectError>;
    fn list(&self, prefix: &str, after: Option<String>, limit: u32)
    -> Result<Listing, ObjectError>;
    fn upload(
        &self,
        key: &str,
        source: &File,
        offset: u64,
        length: u64,
        hash: &mut Hash,
        mode: PutMode,
    ) -> Result<String, ObjectError>;
    /// Up to `length` bytes of `key` from `offset`, as a source the
    /// copier writes and hashes (each chunk shown to `tap` too), and how
    /// many it will give.
    fn read(
        &self,
        key: &str,
        offset: u64,
        length: u64,
        tap: Option<Box<dyn BlobTap>>,
    ) -> Result<(Box<dyn Source>, u64), ObjectError>;
}

/// The file behind a descriptor, as `copier` checks it.
fn file(descriptor: &Descriptor, mode: OpenMode, role: &str) -> Result<Arc<File>, ObjectError> {
    copier::file(descriptor, mode, role).map_err(|e| copy_failure(e, role))
}

/// A copier failure on the local file `role` as the object call's.
fn copy_failure(e: CopyError, role: &str) -> ObjectError {
    match e {
        CopyError::BadDescriptor(m) => ObjectError::BadDescriptor(m),
        CopyError::NoSpace => ObjectError::Io(format!("{role}: no space")),
        CopyError::Io(m) => ObjectError::Io(m),
    }
}

impl CapabilitiesView<'_> {
    fn bucket(&self) -> Result<&ObjectBucket, ObjectError> {
        self.ctx.objects.as_ref().ok_or(ObjectError::Unsupported)
    }

    /// Runs `transfer` with the hash of `hasher` taken out and put back
    /// after; a transfer feeds it only once it has succeeded.
    fn with_hash<T>(
        &mut self,
        hasher: &Resource<HashState>,
        transfer: impl FnOnce(&ObjectBucket, &mut Hash) -> Result<T, ObjectError>,
    ) -> wasmtime::Result<Result<T, ObjectError>> {
        let bucket = match self.bucket() {
            Ok(bucket) => bucket.clone(),
            Err(e) => return Ok(Err(e)),
        };
        let state = self.table.get_mut(hasher)?;
        let mut hash = state.take();
        let done = transfer(&bucket, &mut hash);
        state.put(hash);
        Ok(done)
    }
}

impl Host for CapabilitiesView<'_> {
    fn max_record(&mut self) -> wasmtime::Result<u64> {
        Ok(MAX_RECORD)
    }

    fn head(&mut self, key: String) -> wasmtime::Result<Result<ObjectMeta, ObjectError>> {
        Ok(self.bucket().and_then(|b| b.head(&key)))
    }

    fn get_record(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<(Vec<u8>, String), ObjectError>> {
        Ok(self.bucket().and_then(|b| b.get_record(&key)))
    }

    fn put(
        &mut self,
        key: String,
        data: Vec<u8>,
        mode: PutMode,
    ) -> wasmtime::Result<Result<String, ObjectError>> {
        Ok(self.bucket().and_then(|b| b.put(&key, data, mode)))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), ObjectError>> {
        Ok(self.bucket().and_then(|b| b.delete(&key)))
    }

    fn list_objects(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Listing, ObjectError>> {
        Ok(self.bucket().and_then(|b| b.list(&prefix, after, limit)))
    }

    fn upload(
        &mut self,
        key: String,
        source: Resource<Descriptor>,
        source_offset: u64,
        length: u64,
        hasher: Resource<HashState>,
        mode: PutMode,
    ) -> wasmtime::Result<Result<String, ObjectError>> {
        let source = match file(self.table.get(&source)?, OpenMode::READ, "source") {
            Ok(source) => source,
            Err(e) => return Ok(Err(e)),
        };
        self.with_hash(&hasher, |bucket, hash| {
            bucket.upload(&key, &source, source_offset, length, hash, mode)
        })
    }

    fn download(
        &mut self,
        key: String,
        offset: u64,
        length: u64,
        target: Resource<Descriptor>,
        target_offset: u64,
        hasher: Resource<HashState>,
    ) -> wasmtime::Result<Result<u64, ObjectError>> {
        let target = match file(self.table.get(&target)?, OpenMode::WRITE, "target") {
            Ok(target) => target,
            Err(e) => return Ok(Err(e)),
        };
        let tap = if offset == 0 { self.tap.take() } else { None };
        let read = self.bucket().and_then(|b| {
            if target_offset.checked_add(length).is_none() {
                return Err(ObjectError::Io(format!(
                    "offset {target_offset} plus {length} bytes overflows"
                )));
            }
            b.read(&key, offset, length, tap)
        });
        let (mut body, expected) = match read {
            Ok(read) => read,
            Err(e) => return Ok(Err(e)),
        };
        // Written as `copier` writes (direct where the filesystem takes
        // it, hashed on another core) while the body is still arriving.
        self.transfer_hashed(
            &mut *body,
            &target,
            target_offset,
            expected,
            &hasher,
            |copied| match copied {
                Ok(n) if n == expected => Ok(n),
                Ok(n) => Err(ObjectError::Io(format!(
                    "the object store sent {n} of {expected} bytes"
                ))),
                Err(e) => Err(copy_failure(e, "target")),
            },
        )
    }
}
