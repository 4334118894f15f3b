//! Tags: entries of `index.json` named `<repository>:<tag>`.

use oci_spec::image::{Descriptor, MediaType};

use crate::content::index;
use crate::registry::names;
use crate::shared::digest::Digest;
use crate::shared::error::Result;

/// The descriptor `tag` of `repository` points at.
pub fn get(repository: &str, tag: &str) -> Result<Option<Descriptor>> {
    index::get(&names::tag_name(repository, tag))
}

/// The tags of `repository`, sorted, with what each points at.
fn of(repository: &str) -> Result<Vec<(String, Descriptor)>> {
    Ok(index::with_prefix(&names::tag_name(repository, ""))?
        .into_iter()
        .filter_map(|(name, d)| Some((names::tag_of(&name, repository)?.to_owned(), d)))
        .collect())
}

/// The tags of `repository`, sorted.
pub fn list(repository: &str) -> Result<Vec<String>> {
    Ok(of(repository)?.into_iter().map(|(tag, _)| tag).collect())
}

/// Points `tags` of `repository` at the manifest `d`, all in one update;
/// returns the digests they pointed at before, where another. The caller
/// holds `index::lock`.
pub fn set(
    locked: &crate::bindings::kist::content::locks::Guard,
    repository: &str,
    tags: &[&str],
    d: &Digest,
    media_type: &str,
    size: u64,
) -> Result<Vec<String>> {
    let digest: oci_spec::image::Digest =
        d.to_string().parse().expect("kist digests are OCI digests");
    let descriptor = Descriptor::new(MediaType::from(media_type), size, digest);
    let entries = tags
        .iter()
        .map(|tag| {
            let name = names::tag_name(repository, tag);
            let entry = index::named(descriptor.clone(), &name);
            (name, entry)
        })
        .collect();
    let before = index::set(locked, entries)?;
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
    let (names, removed) = of(repository)?
        .into_iter()
        .filter(|(tag, d)| matches(tag, d))
        .map(|(tag, d)| (names::tag_name(repository, &tag), d.digest().to_string()))
        .unzip();
    index::remove(locked, names)?;
    Ok(removed)
}
