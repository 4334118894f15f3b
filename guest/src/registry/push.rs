//! A manifest push: checked, stored with the labels that make it keep
//! what it references, held by its repository, and tagged.

use crate::bindings::exports::kist::content::ingester::{Durability, PutRequest};
use crate::bindings::exports::kist::content::registry::{Pushed, RegistryError};
use crate::bindings::exports::kist::content::types::Label;
use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::content::labels::{self, Labels};
use crate::content::{index, put, store};
use crate::registry::manifests::{self, Parsed};
use crate::registry::referrers::{self, Entry};
use crate::registry::{members, names, repositories, tags};
use crate::retention::{holds, settings};
use crate::shared::digest::Digest;
use crate::shared::fs::Durability as FsDurability;
use crate::shared::layout;
use crate::shared::scope::Caller;

/// The label that keeps the media type a manifest was pushed with.
pub const MEDIA_TYPE_LABEL: &str = "kist.registry/media-type";
/// The prefix of the labels through which a manifest keeps what it
/// references (containerd's).
const REF_LABEL: &str = "containerd.io/gc.ref.content.";

/// Stores the manifest `bytes` pushed to `repository` as `reference`, and
/// points `more_tags` at it. A manifest a mirror `fetched` need not have
/// what it references in the repository yet.
pub fn manifest(
    repository: &str,
    reference: &str,
    content_type: &str,
    bytes: Vec<u8>,
    more_tags: &[String],
    fetched: bool,
) -> Result<Pushed, RegistryError> {
    names::repository(repository)?;
    let by_digest = if reference.contains(':') {
        Some(names::digest(reference)?)
    } else {
        names::tag(reference)?;
        None
    };
    for tag in more_tags {
        names::tag(tag)?;
    }
    let mut tags: Vec<&str> = by_digest
        .is_none()
        .then_some(reference)
        .into_iter()
        .chain(more_tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let parsed = manifests::parse(content_type, &bytes)?;
    let algorithm = by_digest
        .as_ref()
        .map_or(Algorithm::Sha256, |d| d.algorithm);
    let hasher = Hasher::new(algorithm);
    hasher.update(&bytes);
    let digest = Digest::of(algorithm, &hasher);
    if let Some(given) = by_digest.as_ref().filter(|d| **d != digest) {
        return Err(RegistryError::DigestInvalid(format!(
            "pushed as {given}, the manifest is {digest}"
        )));
    }
    layout::ensure()?;
    repositories::note(repository)?;
    let holder = names::holder(repository);
    for (_, d, size) in parsed.references.iter().filter(|_| !fetched) {
        members::require(d, *size, &holder, &digest)?;
    }
    let size = bytes.len() as u64;
    let labels = labels_of(&parsed);
    if let Some(subject) = &parsed.subject {
        let lock = store::lock_blob(&digest)?;
        let entry = Entry {
            media_type: parsed.media_type.clone(),
            size,
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed.annotations.clone(),
        };
        referrers::record(subject, &digest, &entry, &lock)?;
    }
    put::put(
        PutRequest {
            data: bytes,
            expected: Some(digest.to_string()),
            labels: labels
                .iter()
                .map(|(key, value)| Label {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            holder: Some(holder.clone()),
        },
        Durability::Synced,
        &Caller::internal(&holder),
    )?;
    {
        let lock = store::lock_blob(&digest)?;
        // The repository held the bytes before (pushed as a blob): its
        // labels lack the manifest's.
        let mut file = labels::load(&digest)?;
        let (mut current, _) = file.of(&holder);
        if labels.iter().any(|(k, v)| current.get(k) != Some(v)) {
            current.extend(labels);
            file.set(&holder, current);
            labels::save(&digest, &file, FsDurability::Synced)?;
        }
        start_untagged_grace(&digest, &holder, &lock)?;
    }
    if !tags.is_empty() {
        let lock = index::lock()?;
        let before = tags::set(&lock, repository, &tags, &digest, &parsed.media_type, size)?;
        for before in before {
            untagged_from_now(&before, &holder)?;
        }
    }
    Ok(Pushed {
        digest: digest.to_string(),
        subject: parsed.subject.map(|d| d.to_string()),
    })
}

/// The media type the manifest `d` was pushed with, as the repository
/// whose holder is `holder` labelled it, else as another repository did
/// (a manifest mounted from there). Only repositories' labels count: no
/// other holder can make a blob a manifest.
pub fn media_type(d: &Digest, holder: &str) -> Result<Option<String>, RegistryError> {
    let file = labels::load(d)?;
    let (own, _) = file.of(holder);
    Ok(own
        .get(MEDIA_TYPE_LABEL)
        .or_else(|| file.find(MEDIA_TYPE_LABEL, |h| h.starts_with(holds::REGISTRY)))
        .cloned())
}

/// The labels a manifest is stored with.
fn labels_of(parsed: &Parsed) -> Labels {
    let mut labels: Labels = parsed
        .references
        .iter()
        .map(|(key, d, _)| (format!("{REF_LABEL}{key}"), d.to_string()))
        .collect();
    labels.insert(MEDIA_TYPE_LABEL.to_owned(), parsed.media_type.clone());
    labels
}

/// Starts the untagged grace of the manifest `digest` (a tag just left
/// it) in the repository whose holder is `holder`.
pub fn untagged_from_now(digest: &str, holder: &str) -> Result<(), RegistryError> {
    let Ok(d) = Digest::parse(digest) else {
        return Ok(()); // an entry another tool wrote
    };
    let lock = store::lock_blob(&d)?;
    if members::size(&d, holder)?.is_some() {
        start_untagged_grace(&d, holder, &lock)?;
    }
    Ok(())
}

/// Makes `holder`'s hold on the manifest `d` a root for the untagged
/// grace from now. The caller holds `d`'s lock.
fn start_untagged_grace(
    d: &Digest,
    holder: &str,
    lock: &crate::bindings::kist::content::locks::Guard,
) -> Result<(), RegistryError> {
    let untagged = settings::current()?.untagged_grace;
    Ok(holds::set_until(
        d,
        holder,
        holds::later(holds::now(), untagged),
        lock,
    )?)
}
