//! The registry's records in the store's bucket, which every node on it
//! reads: what each repository holds and where its tags point. A node
//! keeps serving from its own directory what it has; what it lacks it
//! looks up here (and fetches the blob), so a push through one node is
//! pulled through another.
//!
//! - `repos/<repository>/_blobs/<alg>/<hex>`: the repository holds the
//!   blob; the record is the labels it holds it with (a manifest's media
//!   type and references). Repository name components never start with
//!   `_`, so no repository's keys run into another's.
//! - `repos/<repository>/_tags/<tag>`: the descriptor the tag points at.
//!   Each write replaces the whole record (S3 puts are atomic), so racing
//!   tag updates leave one of them, the same for every reader.
//!
//! Without a bucket nothing here is written or found.

use oci_spec::image::Descriptor;

use crate::content::labels::Labels;
use crate::retention::holds::REGISTRY;
use crate::shared::bucket;
use crate::shared::digest::{self, Digest};
use crate::shared::error::{Result, corrupt};

fn members(repository: &str) -> String {
    format!("repos/{repository}/_blobs")
}

fn member_key(repository: &str, d: &Digest) -> String {
    format!(
        "{}/{}/{}",
        members(repository),
        digest::name(d.algorithm),
        d.hex
    )
}

fn tags(repository: &str) -> String {
    format!("repos/{repository}/_tags")
}

fn tag_key(repository: &str, tag: &str) -> String {
    format!("{}/{tag}", tags(repository))
}

/// Notes that the repository of the registry holder `holder` holds `d`
/// with `labels` (a hold of another holder is not the registry's: nothing
/// is written). A record there already is kept unless `labels` say more.
pub fn note_member(holder: &str, d: &Digest, labels: &Labels) -> Result<()> {
    let Some(repository) = holder.strip_prefix(REGISTRY) else {
        return Ok(());
    };
    let bytes = serde_json::to_vec(labels).expect("labels serialise");
    let key = member_key(repository, d);
    if labels.is_empty() {
        bucket::put_new(&key, &bytes)
    } else {
        bucket::put(&key, &bytes)
    }
}

/// The labels the repository of `holder` holds `d` with, if the bucket
/// says it holds it.
pub fn member(holder: &str, d: &Digest) -> Result<Option<Labels>> {
    let Some(repository) = holder.strip_prefix(REGISTRY) else {
        return Ok(None);
    };
    json(&member_key(repository, d))
}

/// Notes that the repository of `holder` no longer holds `d`.
pub fn forget_member(holder: &str, d: &Digest) -> Result<()> {
    match holder.strip_prefix(REGISTRY) {
        Some(repository) => bucket::delete(&member_key(repository, d)),
        None => Ok(()),
    }
}

/// Points `tag` of `repository` at `descriptor`.
pub fn set_tag(repository: &str, tag: &str, descriptor: &Descriptor) -> Result<()> {
    let bytes = serde_json::to_vec(descriptor).expect("descriptors serialise");
    bucket::put(&tag_key(repository, tag), &bytes)
}

/// Removes `tag` of `repository`.
pub fn remove_tag(repository: &str, tag: &str) -> Result<()> {
    bucket::delete(&tag_key(repository, tag))
}

/// Where `tag` of `repository` points; `None` if the bucket has no such
/// tag (or there is no bucket).
pub fn tag(repository: &str, tag: &str) -> Result<Option<Descriptor>> {
    json(&tag_key(repository, tag))
}

/// The JSON record `key`, if there is one.
fn json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>> {
    let Some(bytes) = bucket::get(key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(key, e))
}

/// The tags of `repository` in the bucket, sorted; `None` without a
/// bucket.
pub fn tag_names(repository: &str) -> Result<Option<Vec<String>>> {
    let prefix = tags(repository);
    let keys = bucket::keys(&prefix)?;
    if !bucket::maybe() {
        return Ok(None);
    }
    let start = prefix.len() + 1;
    Ok(Some(
        keys.into_iter().map(|k| k[start..].to_owned()).collect(),
    ))
}
