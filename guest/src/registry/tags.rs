//! Tags: entries of `index.json` named `<repository>:<tag>`.

use oci_spec::image::{Descriptor, MediaType};

use crate::content::index;
use crate::registry::names;
use crate::shared::digest::Digest;
use crate::shared::error::Result;

/// The descriptor `tag` of `repository` points at.
pub fn get(repository: &str, tag: &str) -> Result<Option<Descriptor>> {
    let name = names::tag_name(repository, tag);
    Ok(index::current()?
        .manifests()
        .iter()
        .find(|d| index::ref_name(d) == Some(name.as_str()))
        .cloned())
}

/// The tags of `repository`, sorted.
pub fn list(repository: &str) -> Result<Vec<String>> {
    let mut tags: Vec<String> = index::current()?
        .manifests()
        .iter()
        .filter_map(|d| names::tag_of(index::ref_name(d)?, repository))
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// Points `tag` of `repository` at the manifest `d`; returns the digest it
/// pointed at before, if another. The caller holds `index::lock`.
pub fn set(
    locked: &crate::bindings::kist::content::locks::Guard,
    repository: &str,
    tag: &str,
    d: &Digest,
    media_type: &str,
    size: u64,
) -> Result<Option<String>> {
    let name = names::tag_name(repository, tag);
    let digest: oci_spec::image::Digest =
        d.to_string().parse().expect("kist digests are OCI digests");
    let entry = index::named(
        Descriptor::new(MediaType::from(media_type), size, digest),
        &name,
    );
    index::update(locked, |manifests| {
        let at = manifests
            .iter()
            .position(|m| index::ref_name(m) == Some(name.as_str()));
        match at {
            Some(i) => {
                let old = manifests[i].digest().to_string();
                let changed = manifests[i] != entry;
                manifests[i] = entry;
                ((old != d.to_string()).then_some(old), changed)
            }
            None => {
                manifests.push(entry);
                (None, true)
            }
        }
    })
}

/// Removes the tags of `repository` that `matches` picks; returns the
/// digests they pointed at. The caller holds `index::lock`.
pub fn remove(
    locked: &crate::bindings::kist::content::locks::Guard,
    repository: &str,
    matches: impl Fn(&str, &Descriptor) -> bool,
) -> Result<Vec<String>> {
    index::update(locked, |manifests| {
        let mut removed = Vec::new();
        manifests.retain(|m| {
            let tag = index::ref_name(m).and_then(|n| names::tag_of(n, repository));
            match tag {
                Some(tag) if matches(tag, m) => {
                    removed.push(m.digest().to_string());
                    false
                }
                _ => true,
            }
        });
        let changed = !removed.is_empty();
        (removed, changed)
    })
}
