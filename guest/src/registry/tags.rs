//! Tags: entries of `index.json` named `<repository>:<tag>`. On a bucket
//! the bucket's tag records are what every node reads (see
//! `registry::shared`); each node's `index.json` still gets the tags set
//! through it, for tools that read the layout.

use oci_spec::image::{Descriptor, MediaType};

use crate::content::index;
use crate::registry::{names, shared};
use crate::shared::bucket;
use crate::shared::digest::Digest;
use crate::shared::error::Result;
use crate::shared::fs;

/// The descriptor `tag` of `repository` points at.
pub fn get(repository: &str, tag: &str) -> Result<Option<Descriptor>> {
    let in_bucket = shared::tag(repository, tag)?;
    if bucket::maybe() {
        return Ok(in_bucket);
    }
    index::get(&names::tag_name(repository, tag))
}

/// The tags of `repository`, sorted, with what each points at.
fn of(repository: &str) -> Result<Vec<(String, Descriptor)>> {
    if let Some(names) = shared::tag_names(repository)? {
        // A tag removed since the listing is left out.
        let mut tags = Vec::with_capacity(names.len());
        for tag in names {
            if let Some(d) = shared::tag(repository, &tag)? {
                tags.push((tag, d));
            }
        }
        return Ok(tags);
    }
    Ok(index::with_prefix(&names::tag_name(repository, ""))?
        .into_iter()
        .filter_map(|(name, d)| Some((names::tag_of(&name, repository)?.to_owned(), d)))
        .collect())
}

/// The tags of `repository`, sorted.
pub fn list(repository: &str) -> Result<Vec<String>> {
    if let Some(names) = shared::tag_names(repository)? {
        return Ok(names);
    }
    Ok(of(repository)?.into_iter().map(|(tag, _)| tag).collect())
}

/// What a tag points at.
pub struct Entry<'a> {
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub size: u64,
    /// Whether a mirror set it: a cache entry (see `index::MIRRORED`).
    pub mirrored: bool,
}

/// Points `tags` of `repository` at `entry`, all in one update; returns
/// the digests they pointed at before, where another. The caller holds
/// `index::lock`.
pub fn set(
    locked: &crate::bindings::kist::content::locks::Guard,
    repository: &str,
    tags: &[&str],
    entry: &Entry,
) -> Result<Vec<String>> {
    let d = entry.digest;
    let digest: oci_spec::image::Digest =
        d.to_string().parse().expect("kist digests are OCI digests");
    let descriptor = Descriptor::new(MediaType::from(entry.media_type), entry.size, digest);
    let entries = tags
        .iter()
        .map(|tag| {
            let name = names::tag_name(repository, tag);
            let named = index::named(descriptor.clone(), &name, entry.mirrored);
            (name, named)
        })
        .collect();
    let mut before = index::set(locked, entries)?;
    if bucket::maybe() {
        // The bucket's tags are the ones every node saw.
        before.clear();
        for tag in tags {
            before.push(shared::tag(repository, tag)?);
            shared::set_tag(repository, tag, &descriptor)?;
        }
    }
    Ok(before
        .into_iter()
        .flatten()
        .map(|old| old.digest().to_string())
        .filter(|old| *old != d.to_string())
        .collect())
}

/// Removes the tags of `repository` that `matches` picks; returns the
/// digests they pointed at. The caller holds `index::lock`.
pub fn remove(
    locked: &crate::bindings::kist::content::locks::Guard,
    repository: &str,
    matches: impl Fn(&str, &Descriptor) -> bool,
) -> Result<Vec<String>> {
    let (gone, removed): (Vec<String>, Vec<String>) = of(repository)?
        .into_iter()
        .filter(|(tag, d)| matches(tag, d))
        .map(|(tag, d)| (tag, d.digest().to_string()))
        .unzip();
    for tag in &gone {
        shared::remove_tag(repository, tag)?;
    }
    let names = gone
        .iter()
        .map(|tag| names::tag_name(repository, tag))
        .collect();
    index::remove(locked, names)?;
    Ok(removed)
}

/// Removes the mirrors' tags whose manifest is no longer stored and that
/// `evicted` picks (by digest): a collection evicted what they cached.
pub fn forget_evicted(evicted: impl Fn(&str) -> bool) -> Result<()> {
    let stale = || -> Result<Vec<String>> {
        let mut names = Vec::new();
        for (name, d) in index::current()?.records.iter() {
            let digest = d.digest().to_string();
            if !index::mirrored(d) || !evicted(&digest) {
                continue;
            }
            let gone = match Digest::parse(&digest) {
                Ok(d) => fs::stat(&d.blob_path())?.is_none(),
                Err(_) => true,
            };
            if gone {
                names.push(name.clone());
            }
        }
        Ok(names)
    };
    if stale()?.is_empty() {
        return Ok(());
    }
    // Again under the lock: a mirror may have stored the manifest anew and
    // tagged it meanwhile (it stores before it tags, under this lock).
    let lock = index::lock()?;
    index::remove(&lock, stale()?)
}
