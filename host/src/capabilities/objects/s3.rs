//! The S3 client behind `objects` (the `s3` feature).
//!
//! object_store (the Apache Arrow crate) speaks S3: request signing,
//! retries with backoff, paged listings, multipart uploads and the
//! conditional puts (`If-None-Match: *`, `If-Match`) the component's
//! records are compare-and-swapped with. It was measured against Ceph RGW
//! and moto before it was chosen; aws-sdk-s3 does the same with three
//! times the dependencies, opendal with its own abstraction over it.
//!
//! object_store is async and the component's calls are not: the bucket
//! owns a small tokio runtime, and each call hands its future to it and
//! waits. That works from any thread, including one inside another
//! runtime's blocking pool, where `block_on` would panic.
//!
//! The component names objects by keys relative to the prefix, checked
//! here segment by segment, so nothing it sends can leave the prefix.
//! ETags are returned and taken without quotes: Ceph RGW compares
//! `If-Match` only against the bare value.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::{BlobTap, Bucket, MAX_RECORD};
use crate::bindings::kist::content::copier::CopyError;
use crate::bindings::kist::content::objects::{Listing, ObjectError, ObjectMeta, PutMode};
use crate::capabilities::copier::Source;
use crate::capabilities::hasher::Hash;
use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutOptions, PutPayload, UpdateVersion,
};

/// Size of an upload's parts (S3 wants ≥ 5 MiB but for the last).
const PART: u64 = 16 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Body chunks a download queues between the socket and the writes.
const CHUNKS_QUEUED: usize = 512;
/// Longest key or prefix, in bytes.
const MAX_KEY: usize = 1024;
/// Most objects one `list-objects` page returns.
const MAX_PAGE: u32 = 1000;
/// Threads of a bucket's runtime: the calls only wait on the network.
const RUNTIME_THREADS: usize = 2;

/// A bucket and prefix a store keeps its objects in, with the client that
/// reaches them. Cheap to clone; clones share the client and runtime.
#[derive(Clone)]
pub struct ObjectBucket {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    runtime: Arc<Runtime>,
    url: String,
}

impl std::fmt::Debug for ObjectBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials: only where the objects are.
        f.debug_struct("ObjectBucket")
            .field("url", &self.url)
            .finish()
    }
}

impl ObjectBucket {
    /// The bucket and prefix of `url` (`s3://BUCKET[/PREFIX]`), reached
    /// with the endpoint, region and credentials of the usual variables:
    /// `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, and
    /// `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint.
    ///
    /// Lists the prefix once (one request, retried as every request is):
    /// a bucket that is not there, credentials it refuses or an endpoint
    /// that does not answer fail here with `failed-precondition` and the
    /// reason, not at the store's first write.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), kist::Error> {
    /// let bucket = kist::ObjectBucket::from_env("s3://registry/kist")?;
    /// # Ok(()) }
    /// ```
    pub fn from_env(url: &str) -> crate::Result<Self> {
        Self::build(url, AmazonS3Builder::from_env())?.probed()
    }
    /// As [`from_env`](Self::from_env), with `options` (object_store's
    /// `AmazonS3ConfigKey` names: `endpoint`, `region`,
    /// `access_key_id`, `secret_access_key`, `allow_http`, …) instead of
    /// the environment.
    pub fn with_options<'a>(
        url: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> crate::Result<Self> {
        let mut builder = AmazonS3Builder::new();
        for (key, value) in options {
            let key = key
                .parse()
                .map_err(|e| crate::Error::InvalidArgument(format!("{key}: {e}")))?;
            builder = builder.with_config(key, value);
        }
        Self::build(url, builder)?.probed()
    }
    fn build(url: &str, builder: AmazonS3Builder) -> crate::Result<Self> {
        let invalid = |why: String| crate::Error::InvalidArgument(format!("{url}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("not an s3://BUCKET/PREFIX URL".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty()
            && let Err(ObjectError::InvalidKey(why)) = check_key(prefix)
        {
            return Err(invalid(why));
        }
        let store = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("kist-objects")
            .enable_all()
            .build()?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::from(prefix),
            runtime: Arc::new(Runtime(Some(runtime))),
            url: url.to_owned(),
        })
    }
    /// This bucket if one listing of the prefix works, so that a bucket
    /// that does not exist, credentials it refuses or an endpoint that
    /// does not answer stop the store from opening, with the reason,
    /// instead of failing its first write with a misleading one (a missing
    /// bucket answers a conditional PUT as if its key were missing).
    fn probed(self) -> crate::Result<Self> {
        let (store, prefix) = (Arc::clone(&self.store), self.prefix.clone());
        let listed = self.run(async move { store.list(Some(&prefix)).next().await });
        let Some(Err(e)) = listed else {
            return Ok(self);
        };
        let why = e.to_string();
        let why = match why.contains("NoSuchBucket") {
            true => "no such bucket (create it first)".to_owned(),
            false => why,
        };
        Err(crate::Error::FailedPrecondition(format!(
            "{}: the bucket cannot be listed: {why}",
            self.url
        )))
    }
    /// The `s3://` URL this bucket was made from.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Runs `work` on the bucket's runtime and waits for its result.
    fn run<F>(&self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.handle().spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv()
            .expect("the objects runtime finishes what it starts")
    }
    /// Where the component's `key` lives.
    fn location(&self, key: &str) -> Result<Path, ObjectError> {
        check_key(key)?;
        Ok(self.prefix.parts().chain(Path::from(key).parts()).collect())
    }
    /// The component's key for `location`, which lies under the prefix.
    fn key_of(&self, location: &Path) -> Option<String> {
        let parts: Vec<_> = location.prefix_match(&self.prefix)?.collect();
        Some(
            parts
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }
    fn meta(&self, meta: object_store::ObjectMeta) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            key: self.key_of(&meta.location)?,
            size: meta.size,
            etag: meta.e_tag.as_deref().map(bare).unwrap_or_default(),
            modified_seconds: u64::try_from(meta.last_modified.timestamp()).unwrap_or(0),
        })
    }
    fn put_at(&self, location: Path, data: Vec<u8>, mode: PutMode) -> Result<String, ObjectError> {
        let conditional = !matches!(mode, PutMode::Overwrite);
        let options = PutOptions::from(put_mode(mode));
        let store = Arc::clone(&self.store);
        let put = self.run(async move {
            store
                .put_opts(&location, PutPayload::from(data), options)
                .await
        });
        match put {
            Ok(done) => Ok(done.e_tag.as_deref().map(bare).unwrap_or_default()),
            // `if-match` on a key that is gone: the condition failed.
            Err(object_store::Error::NotFound { .. }) if conditional => {
                Err(ObjectError::ConditionFailed)
            }
            Err(e) => Err(failure(e)),
        }
    }
    /// Sends `length` bytes of `source` from `offset` as a multipart
    /// upload to `location`, hashing them as they are read; aborts the
    /// upload on any failure so no parts are left behind.
    fn multipart(
        &self,
        location: Path,
        source: &File,
        offset: u64,
        length: u64,
        hash: &mut Hash,
    ) -> Result<String, ObjectError> {
        let store = Arc::clone(&self.store);
        let mut upload = self
            .run(async move { store.put_multipart(&location).await })
            .map_err(failure)?;
        let mut fed = hash.clone();
        let mut in_flight = VecDeque::new();
        let mut sent = 0;
        let parts = loop {
            if in_flight.len() >= PARTS_IN_FLIGHT || (sent == length && !in_flight.is_empty()) {
                let oldest: tokio::task::JoinHandle<_> = in_flight.pop_front().expect("a part");
                match self.run(oldest) {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => break Err(failure(e)),
                    Err(e) => break Err(ObjectError::Io(format!("an upload part failed: {e}"))),
                }
            }
            if sent == length {
                break Ok(());
            }
            let size = PART.min(length - sent);
            let data = match read_exactly(source, offset + sent, size) {
                Ok(data) => data,
                Err(e) => break Err(e),
            };
            fed.update(&data);
            sent += size;
            let part = upload.put_part(PutPayload::from(data));
            in_flight.push_back(self.runtime.handle().spawn(part));
        };
        let done = match parts {
            Ok(()) => {
                let (back, done) = self.run(async move {
                    let done = upload.complete().await;
                    (upload, done)
                });
                upload = back;
                done.map_err(failure)
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(put) => {
                *hash = fed;
                Ok(put.e_tag.as_deref().map(bare).unwrap_or_default())
            }
            Err(e) => {
                // Best effort: parts left over cost space until the
                // bucket's lifecycle rules remove them.
                let _ = self.run(async move { upload.abort().await });
                Err(e)
            }
        }
    }
}

impl Bucket for ObjectBucket {
    fn head(&self, key: &str) -> Result<ObjectMeta, ObjectError> {
        let location = self.location(key)?;
        let store = Arc::clone(&self.store);
        let meta = self.run(async move { store.head(&location).await });
        self.meta(meta.map_err(failure)?)
            .ok_or_else(|| ObjectError::Io("the object store answered another key".into()))
    }
    fn get_record(&self, key: &str) -> Result<(Vec<u8>, String), ObjectError> {
        let location = self.location(key)?;
        let store = Arc::clone(&self.store);
        self.run(async move {
            let got = store.get_opts(&location, GetOptions::default()).await?;
            if got.meta.size > MAX_RECORD {
                return Ok(Err(too_large(got.meta.size)));
            }
            let etag = got.meta.e_tag.as_deref().map(bare).unwrap_or_default();
            Ok(Ok((got.bytes().await?.to_vec(), etag)))
        })
        .map_err(failure)?
    }
    fn put(&self, key: &str, data: Vec<u8>, mode: PutMode) -> Result<String, ObjectError> {
        if data.len() as u64 > MAX_RECORD {
            return Err(too_large(data.len() as u64));
        }
        let location = self.location(key)?;
        self.put_at(location, data, mode)
    }
    fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let location = self.location(key)?;
        let store = Arc::clone(&self.store);
        match self.run(async move { store.delete(&location).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failure(e)),
        }
    }
    fn list(
        &self,
        prefix: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<Listing, ObjectError> {
        let under = match prefix {
            "" => self.prefix.clone(),
            prefix => self.location(prefix)?,
        };
        let after = after.map(|a| self.location(&a)).transpose()?;
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        let store = Arc::clone(&self.store);
        // One more than asked: whether there is a next page.
        let found = self.run(async move {
            let listed = match &after {
                Some(after) => store.list_with_offset(Some(&under), after),
                None => store.list(Some(&under)),
            };
            listed.take(limit + 1).collect::<Vec<_>>().await
        });
        let mut objects = Vec::with_capacity(found.len());
        for meta in found {
            let meta = meta.map_err(failure)?;
            objects.extend(self.meta(meta));
        }
        let next = (objects.len() > limit).then(|| {
            objects.truncate(limit);
            objects.last().map(|o| o.key.clone()).unwrap_or_default()
        });
        Ok(Listing { objects, next })
    }
    /// `upload`, with the source checked and the hash taken out of its
    /// hasher: fed only if the whole upload succeeds.
    fn upload(
        &self,
        key: &str,
        source: &File,
        offset: u64,
        length: u64,
        hash: &mut Hash,
        mode: PutMode,
    ) -> Result<String, ObjectError> {
        let location = self.location(key)?;
        if offset.checked_add(length).is_none() {
            return Err(ObjectError::Io(format!(
                "offset {offset} plus {length} bytes overflows"
            )));
        }
        if length <= MAX_RECORD {
            let data = read_exactly(source, offset, length)?;
            // Hashed before the put takes the bytes, kept only if it
            // succeeds: no second copy of up to 16 MiB.
            let mut fed = hash.clone();
            fed.update(&data);
            let etag = self.put_at(location, data, mode)?;
            *hash = fed;
            return Ok(etag);
        }
        match mode {
            PutMode::IfMatch(_) => return Err(too_large(length)),
            PutMode::IfAbsent => match self.head(key) {
                Ok(_) => return Err(ObjectError::ConditionFailed),
                Err(ObjectError::NotFound) => {}
                Err(e) => return Err(e),
            },
            PutMode::Overwrite => {}
        }
        self.multipart(location, source, offset, length, hash)
    }
    /// `read`: one GET, its body coming from the runtime's threads.
    fn read(
        &self,
        key: &str,
        offset: u64,
        length: u64,
        tap: Option<Box<dyn BlobTap>>,
    ) -> Result<(Box<dyn Source>, u64), ObjectError> {
        let location = self.location(key)?;
        let Some(end) = offset.checked_add(length) else {
            return Err(ObjectError::Io(format!(
                "offset {offset} plus {length} bytes overflows"
            )));
        };
        // Without a sender (every early return) the body is empty.
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_QUEUED);
        let mut body = Body {
            rx,
            chunk: Bytes::new(),
            tap: None,
        };
        if length == 0 {
            return Ok((Box::new(body), 0));
        }
        // One GET, its range clamped by the store to the object's end. Only
        // when it fails does a HEAD tell an offset at or past the end
        // (nothing to copy) from a missing object or a broken store.
        let store = Arc::clone(&self.store);
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..end)),
            ..GetOptions::default()
        };
        let got = match self.run(async move { store.get_opts(&location, options).await }) {
            Ok(got) => got,
            Err(e) => {
                return match self.head(key) {
                    Ok(meta) if offset >= meta.size => Ok((Box::new(body), 0)),
                    Ok(_) => Err(failure(e)),
                    Err(missing) => Err(missing),
                };
            }
        };
        let expected = got.range.end - got.range.start;
        body.tap = tap.and_then(|mut t| t.begin(expected).then_some(t));
        self.runtime.handle().spawn(async move {
            let mut body = got.into_stream();
            while let Some(chunk) = body.next().await {
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok((Box::new(body), expected))
    }
}

/// A GET's body as the copier's source: the socket's chunks (~16 KiB)
/// queued by the runtime's threads while the copier writes and hashes.
struct Body {
    rx: tokio::sync::mpsc::Receiver<object_store::Result<Bytes>>,
    /// What is left of the chunk being taken.
    chunk: Bytes,
    /// Shown every chunk as it arrives, until it declines.
    tap: Option<Box<dyn BlobTap>>,
}

impl Source for Body {
    fn fill(&mut self, buffer: &mut [u8], _done: u64) -> Result<usize, CopyError> {
        let mut len = 0;
        // What the tap gets of this step, at once: one hand-over per
        // socket chunk would cost more than the copy.
        let mut tapped = Vec::new();
        while len < buffer.len() {
            if self.chunk.is_empty() {
                match self.rx.blocking_recv() {
                    Some(Ok(chunk)) => {
                        if self.tap.is_some() {
                            tapped.push(chunk.clone());
                        }
                        self.chunk = chunk;
                    }
                    Some(Err(e)) => return Err(CopyError::Io(format!("the object store: {e}"))),
                    None => break,
                }
                continue;
            }
            let n = self.chunk.len().min(buffer.len() - len);
            buffer[len..len + n].copy_from_slice(&self.chunk.split_to(n));
            len += n;
        }
        if let Some(tap) = &mut self.tap
            && !tapped.is_empty()
            && !tap.bytes(tapped)
        {
            self.tap = None;
        }
        Ok(len)
    }
}

/// The runtime, shut down without waiting when the last bucket clone
/// goes: dropping a runtime inside another one's async context panics.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("until dropped").handle()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Checks a key (or prefix) the component names: relative, whole
/// segments, a plain character set, so that it stays under the prefix and
/// means the same to every S3 implementation.
fn check_key(key: &str) -> Result<(), ObjectError> {
    let invalid = |why: &str| Err(ObjectError::InvalidKey(format!("{key:?}: {why}")));
    if key.is_empty() {
        return invalid("empty");
    }
    if key.len() > MAX_KEY {
        return invalid("longer than 1024 bytes");
    }
    for segment in key.split('/') {
        match segment {
            "" => return invalid("an empty segment (a leading, trailing or double /)"),
            "." | ".." => return invalid("a . or .. segment"),
            _ => {}
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !"-._+=:@,~".contains(*c))
        {
            return invalid(&format!("the character {c:?}"));
        }
    }
    Ok(())
}

/// An ETag without quotes or weak marker.
fn bare(etag: &str) -> String {
    etag.trim_start_matches("W/").trim_matches('"').to_owned()
}

fn put_mode(mode: PutMode) -> object_store::PutMode {
    match mode {
        PutMode::Overwrite => object_store::PutMode::Overwrite,
        PutMode::IfAbsent => object_store::PutMode::Create,
        PutMode::IfMatch(etag) => object_store::PutMode::Update(UpdateVersion {
            e_tag: Some(bare(&etag)),
            version: None,
        }),
    }
}

fn failure(e: object_store::Error) -> ObjectError {
    match e {
        object_store::Error::NotFound { .. } => ObjectError::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            ObjectError::ConditionFailed
        }
        e => ObjectError::Io(e.to_string()),
    }
}

fn too_large(size: u64) -> ObjectError {
    ObjectError::TooLarge(format!("{size} bytes; at most {MAX_RECORD}"))
}

/// Exactly `length` bytes of `file` from `offset`.
fn read_exactly(file: &File, offset: u64, length: u64) -> Result<Vec<u8>, ObjectError> {
    let mut data = vec![0; length as usize];
    file.read_exact_at(&mut data, offset).map_err(|e| {
        ObjectError::Io(format!("source: {length} bytes from offset {offset}: {e}"))
    })?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_the_prefix() {
        for bad in [
            "", "/a", "a/", "a//b", "..", "a/../b", "./a", "a/.", "a\\b", "a b", "a%2e", "a\0", "ä",
        ] {
            assert!(
                matches!(check_key(bad), Err(ObjectError::InvalidKey(_))),
                "{bad:?} accepted"
            );
        }
        assert!(check_key(&"a".repeat(1025)).is_err());
        for good in [
            "a",
            "blobs/sha256/ab",
            "tags/library+alpine/v1.2_x",
            "a..b/c-d=e:f@g,h~i",
        ] {
            assert!(check_key(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn keys_map_to_locations_under_the_prefix_and_back() {
        // Built without the listing a store's bucket gets: nothing answers.
        let nowhere = AmazonS3Builder::new()
            .with_endpoint("http://127.0.0.1:1")
            .with_region("us-east-1");
        let bucket = ObjectBucket::build("s3://bucket/stores/one", nowhere).unwrap();
        let location = bucket.location("blobs/sha256/ab").unwrap();
        assert_eq!(location.as_ref(), "stores/one/blobs/sha256/ab");
        assert_eq!(bucket.key_of(&location).as_deref(), Some("blobs/sha256/ab"));
        assert_eq!(bucket.key_of(&Path::from("stores/other/x")), None);
    }

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(bare("\"abc\""), "abc");
        assert_eq!(bare("W/\"abc\""), "abc");
        assert_eq!(bare("abc"), "abc");
    }
}
