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

/// Where a manifest comes from.
#[derive(Clone, Copy)]
pub enum Origin {
    /// A client pushed it: what it references must be in the repository
    /// already, and it is kept by itself for the untagged grace.
    Pushed,
    /// A pull-through mirror fetched it: what it references comes later,
    /// its tags are cache entries, and it is kept by itself for `keep`
    /// seconds (see [`keep`]).
    Mirrored { keep: u64 },
}

/// Stores the manifest `bytes` that came to `repository` as `reference`
/// from `origin`, and points `more_tags` at it.
pub fn manifest(
    repository: &str,
    reference: &str,
    content_type: &str,
    bytes: Vec<u8>,
    more_tags: &[String],
    origin: Origin,
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
    let kept_until = match origin {
        Origin::Pushed => {
            for (_, d, size) in &parsed.references {
                members::require(d, *size, &holder, &digest)?;
            }
            holds::later(holds::now(), settings::current()?.untagged_grace)
        }
        Origin::Mirrored { keep } => {
            let until = holds::later(holds::now(), keep);
            for (_, d, _) in &parsed.references {
                members::revive(d, &holder, until)?;
            }
            until
        }
    };
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
        holds::set_until(&digest, &holder, kept_until, &lock)?;
    }
    if !tags.is_empty() {
        let lock = index::lock()?;
        let mirrored = matches!(origin, Origin::Mirrored { .. });
        if mirrored {
            // A mirror never moves a tag pushed here (`--mirror-allow-push`):
            // what was pushed locally is not the upstream's to replace.
            let mut mirrorable = Vec::with_capacity(tags.len());
            for tag in tags {
                if tags::get(repository, tag)?.is_none_or(|e| index::mirrored(&e)) {
                    mirrorable.push(tag);
                }
            }
            tags = mirrorable;
        }
        let entry = tags::Entry {
            digest: &digest,
            media_type: &parsed.media_type,
            size,
            mirrored,
        };
        let before = tags::set(&lock, repository, &tags, &entry)?;
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
    if members::held_here(&d, holder)?.is_some() {
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

/// Keeps the manifest `d`, which the repository whose holder is `holder`
/// holds, by itself for `seconds` from now unless it already is for
/// longer: a mirror's client used it.
pub fn keep(d: &Digest, holder: &str, seconds: u64) -> Result<(), RegistryError> {
    let lock = store::lock_blob(d)?;
    if members::held_here(d, holder)?.is_none() {
        return Err(RegistryError::ManifestUnknown);
    }
    let until = holds::later(holds::now(), seconds);
    if holds::load(d)?
        .until
        .get(holder)
        .is_some_and(|u| *u < until)
    {
        holds::set_until(d, holder, until, &lock)?;
    }
    Ok(())
}
