//! The store's bucket (`objects`), when the host gives it one: whether
//! there is one, and its calls with the answers every user of it reads
//! alike (`not-found` as `None`, failures as the caller's error). Without
//! a bucket every call here answers as if the bucket were empty and takes
//! nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::bindings::kist::content::objects::{self, ObjectError, ObjectMeta, PutMode};
use crate::shared::error::{Error, Result};

/// Set once the host answered `unsupported`: it has no bucket for this
/// store, and will not have one for this instance's life.
static NO_BUCKET: AtomicBool = AtomicBool::new(false);

/// Most keys one listing call returns.
const PAGE: u32 = 1000;

/// Whether the store may have a bucket (true until the host said it has
/// none).
pub fn maybe() -> bool {
    !NO_BUCKET.load(Ordering::Relaxed)
}

/// Whether the store has a bucket, asking the host if no call has told
/// yet (one HEAD on a bucket store, nothing after the host said it has
/// none).
pub fn present() -> Result<bool> {
    head("nodes")?;
    Ok(maybe())
}

/// Runs the object call `call` on `key`: `None` without a bucket (or for
/// `not-found`), else its answer, its failure as the caller's error.
pub fn call<T>(key: &str, call: impl FnOnce() -> Result<T, ObjectError>) -> Result<Option<T>> {
    if !maybe() {
        return Ok(None);
    }
    match call() {
        Ok(t) => Ok(Some(t)),
        Err(ObjectError::NotFound) => Ok(None),
        Err(ObjectError::Unsupported) => {
            NO_BUCKET.store(true, Ordering::Relaxed);
            Ok(None)
        }
        Err(e) => Err(error(key, e)),
    }
}

/// The size of the object `key`.
pub fn size(key: &str) -> Result<Option<u64>> {
    Ok(head(key)?.map(|m| m.size))
}

/// What the bucket says of the object `key`: size, ETag, when written.
pub fn head(key: &str) -> Result<Option<ObjectMeta>> {
    call(key, || objects::head(key))
}

/// The small object `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    call(key, || objects::get_record(key).map(|(bytes, _)| bytes))
}

/// The small object `key` with its ETag (what `PutMode::IfMatch` takes).
pub fn get_tagged(key: &str) -> Result<Option<(Vec<u8>, String)>> {
    call(key, || objects::get_record(key))
}

/// Writes the small object `key`, replacing what it held.
pub fn put(key: &str, bytes: &[u8]) -> Result<()> {
    put_as(key, bytes, &PutMode::Overwrite).map(drop)
}

/// Writes the small object `key` if `mode` allows; its new ETag (`None`
/// without a bucket). A failed condition is `unavailable`.
pub fn put_as(key: &str, bytes: &[u8], mode: &PutMode) -> Result<Option<String>> {
    call(key, || objects::put(key, bytes, mode))
}

/// Writes the small object `key` unless it exists.
pub fn put_new(key: &str, bytes: &[u8]) -> Result<()> {
    match call(key, || objects::put(key, bytes, &PutMode::IfAbsent)) {
        Err(Error::Unavailable) => Ok(()),
        other => other.map(drop),
    }
}

/// Removes the object `key` (nothing if it is absent).
pub fn delete(key: &str) -> Result<()> {
    call(key, || objects::delete(key)).map(drop)
}

/// The keys under `prefix`, in order, every page.
pub fn keys(prefix: &str) -> Result<Vec<String>> {
    Ok(objects(prefix)?.into_iter().map(|o| o.key).collect())
}

/// The objects under `prefix`, in key order, every page.
pub fn objects(prefix: &str) -> Result<Vec<ObjectMeta>> {
    let mut objects = Vec::new();
    let mut after = None;
    loop {
        let Some(page) = call(prefix, || {
            objects::list_objects(prefix, after.as_deref(), PAGE)
        })?
        else {
            return Ok(objects);
        };
        objects.extend(page.objects);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(objects),
        }
    }
}

/// An object call's failure on `key` as the caller's error: a failed
/// condition is `unavailable` (someone else wrote it: look again).
pub fn error(key: &str, e: ObjectError) -> Error {
    match e {
        ObjectError::NotFound => Error::NotFound,
        ObjectError::ConditionFailed => Error::Unavailable,
        ObjectError::Unsupported => Error::Io(format!("{key}: the store has no bucket")),
        ObjectError::InvalidKey(m)
        | ObjectError::TooLarge(m)
        | ObjectError::BadDescriptor(m)
        | ObjectError::Io(m) => Error::Io(format!("bucket {key}: {m}")),
    }
}
