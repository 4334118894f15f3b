//! The `registry` interface: the distribution spec's storage side.

use crate::Component;
use crate::bindings::exports::kist::content::ingester::Writer;
use crate::bindings::exports::kist::content::registry::{
    Descriptor, Guest, Manifest, Page, Pushed, ReferrersPage, RegistryError,
};
use crate::bindings::exports::kist::content::types::LayerTree;
use crate::bindings::kist::content::caller::Actions;
use crate::content::index;
use crate::deltas::layers;
use crate::registry::names::{self, Refused};
use crate::registry::push::Origin;
use crate::registry::{members, push, referrers, repositories, tags, uploads};
use crate::shared::digest::Digest;
use crate::shared::error::Error;
use crate::shared::scope::Caller;
use crate::shared::{fs, layout};

/// Most base layers a pack is made against: an image's layers.
const MAX_BASES: usize = 256;

impl From<Error> for RegistryError {
    fn from(e: Error) -> Self {
        RegistryError::Store(e)
    }
}

impl From<Refused> for RegistryError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Name(m) => RegistryError::NameInvalid(m),
            Refused::Tag(m) => RegistryError::ManifestInvalid(m),
            Refused::Digest(m) => RegistryError::DigestInvalid(m),
            Refused::Upload => RegistryError::BlobUploadUnknown,
        }
    }
}

/// Checks that `repository` is a valid name and that the caller may do
/// `action` (`what`, for the message) in it.
fn granted(repository: &str, action: Actions, what: &str) -> Result<(), RegistryError> {
    names::repository(repository)?;
    Ok(Caller::current().may(repository, action, what)?)
}

/// The repository name and digest of a blob request, checked, and the
/// caller's right to `action` there.
fn blob(
    repository: &str,
    digest: &str,
    action: Actions,
    what: &str,
) -> Result<(String, Digest), RegistryError> {
    granted(repository, action, what)?;
    let d = names::digest(digest)?;
    layout::ensure()?;
    Ok((names::holder(repository), d))
}

impl Guest for Component {
    fn stat_blob(repository: String, digest: String) -> Result<u64, RegistryError> {
        let (holder, d) = blob(&repository, &digest, Actions::PULL, "pulling")?;
        members::size(&d, &holder)?.ok_or(RegistryError::BlobUnknown)
    }

    fn mount_blob(repository: String, from: String, digest: String) -> Result<bool, RegistryError> {
        let (holder, d) = blob(&repository, &digest, Actions::PUSH, "pushing")?;
        names::repository(&from)?;
        if !Caller::current()
            .in_repository(&from)
            .contains(Actions::PULL)
        {
            // As for a blob `from` does not hold: the client uploads it.
            return Ok(false);
        }
        repositories::note(&repository)?;
        Ok(members::mount(&d, &holder, &names::holder(&from))?)
    }

    fn delete_blob(repository: String, digest: String) -> Result<(), RegistryError> {
        let (holder, d) = blob(&repository, &digest, Actions::DELETE, "deleting")?;
        if !members::holds(&d, &holder)? {
            return Err(RegistryError::BlobUnknown);
        }
        // A manifest deleted as a blob takes its tags with it, as a delete
        // by the manifests endpoint does: none is left naming nothing.
        let lock = index::lock()?;
        let digest = d.to_string();
        tags::remove(&lock, &repository, |_, m| m.digest().as_ref() == digest)?;
        members::release(&d, &holder)
    }

    fn open_upload(repository: String, id: String, create: bool) -> Result<Writer, RegistryError> {
        granted(&repository, Actions::PUSH, "pushing")?;
        uploads::open(&repository, &id, create)
    }

    fn upload_offset(repository: String, id: String) -> Result<u64, RegistryError> {
        granted(&repository, Actions::PUSH, "pushing")?;
        uploads::offset(&repository, &id)
    }

    fn cancel_upload(repository: String, id: String) -> Result<(), RegistryError> {
        granted(&repository, Actions::PUSH, "pushing")?;
        uploads::cancel(&repository, &id)
    }

    fn put_manifest(
        repository: String,
        reference: String,
        media_type: String,
        bytes: Vec<u8>,
        tags: Vec<String>,
    ) -> Result<Pushed, RegistryError> {
        granted(&repository, Actions::PUSH, "pushing")?;
        push::manifest(
            &repository,
            &reference,
            &media_type,
            bytes,
            &tags,
            Origin::Pushed,
        )
    }

    fn cache_manifest(
        repository: String,
        reference: String,
        media_type: String,
        bytes: Vec<u8>,
        tags: Vec<String>,
        keep_seconds: u64,
    ) -> Result<Pushed, RegistryError> {
        granted(&repository, Actions::PUSH, "pushing")?;
        let origin = Origin::Mirrored { keep: keep_seconds };
        push::manifest(&repository, &reference, &media_type, bytes, &tags, origin)
    }

    fn keep_manifest(
        repository: String,
        digest: String,
        keep_seconds: u64,
    ) -> Result<(), RegistryError> {
        let (holder, d) = blob(&repository, &digest, Actions::PUSH, "pushing")?;
        push::keep(&d, &holder, keep_seconds)
    }

    fn tree_of_layer(repository: String, digest: String) -> Result<LayerTree, RegistryError> {
        let (holder, d) = blob(&repository, &digest, Actions::PULL, "pulling")?;
        members::size(&d, &holder)?.ok_or(RegistryError::BlobUnknown)?;
        Ok(layers::tree_of(&d, "")?.0)
    }

    fn layer_pack(
        repository: String,
        digest: String,
        bases: Vec<String>,
    ) -> Result<(String, u64), RegistryError> {
        let (holder, d) = blob(&repository, &digest, Actions::PULL, "pulling")?;
        if bases.len() > MAX_BASES {
            return Err(Error::InvalidArgument(format!(
                "a pack is made against at most {MAX_BASES} base layers"
            ))
            .into());
        }
        let bases = std::iter::once(digest.as_str())
            .chain(bases.iter().map(String::as_str))
            .map(|b| {
                let b = names::digest(b)?;
                members::size(&b, &holder)?.ok_or(RegistryError::BlobUnknown)?;
                Ok(b)
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        let (pack, size) = layers::pack_of(&d, "", &bases[1..])?;
        Ok((pack.to_string(), size))
    }

    fn read_upload(
        repository: String,
        id: String,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, RegistryError> {
        granted(&repository, Actions::PUSH, "pushing")?;
        uploads::read(&repository, &id, offset, len)
    }

    fn get_manifest(repository: String, reference: String) -> Result<Manifest, RegistryError> {
        granted(&repository, Actions::PULL, "pulling")?;
        layout::ensure()?;
        let d = if reference.contains(':') {
            names::digest(&reference)?
        } else {
            names::tag(&reference)?;
            let entry =
                tags::get(&repository, &reference)?.ok_or(RegistryError::ManifestUnknown)?;
            Digest::parse(entry.digest().as_ref()).map_err(|_| RegistryError::ManifestUnknown)?
        };
        let holder = names::holder(&repository);
        if members::size(&d, &holder)?.is_none() {
            return Err(RegistryError::ManifestUnknown);
        }
        let Some(media_type) = push::media_type(&d, &holder)? else {
            // Held by the repository but not pushed as a manifest.
            return Err(RegistryError::ManifestUnknown);
        };
        let bytes = fs::read_file(&d.blob_path())?.ok_or(RegistryError::ManifestUnknown)?;
        Ok(Manifest {
            media_type: media_type.clone(),
            digest: d.to_string(),
            bytes,
        })
    }

    fn delete_manifest(repository: String, digest: String) -> Result<(), RegistryError> {
        let (holder, d) = blob(&repository, &digest, Actions::DELETE, "deleting")?;
        if !members::holds(&d, &holder)? {
            return Err(RegistryError::ManifestUnknown);
        }
        let lock = index::lock()?;
        let digest = d.to_string();
        tags::remove(&lock, &repository, |_, m| m.digest().as_ref() == digest)?;
        members::release(&d, &holder).map_err(|e| match e {
            RegistryError::BlobUnknown => RegistryError::ManifestUnknown,
            e => e,
        })
    }

    fn sync_index() -> Result<bool, RegistryError> {
        // Checked before locking: most calls find nothing to write, and a
        // store only read (a read-only mount) is never locked for it.
        if !index::pending()? {
            return Ok(false);
        }
        let lock = index::lock()?;
        Ok(index::sync(&lock)?)
    }

    fn delete_tag(repository: String, tag: String) -> Result<(), RegistryError> {
        granted(&repository, Actions::DELETE, "deleting")?;
        names::tag(&tag)?;
        layout::ensure()?;
        let lock = index::lock()?;
        let removed = tags::remove(&lock, &repository, |t, _| t == tag)?;
        if removed.is_empty() {
            return Err(RegistryError::ManifestUnknown);
        }
        let holder = names::holder(&repository);
        for d in removed {
            push::untagged_from_now(&d, &holder)?;
        }
        Ok(())
    }

    fn tags(
        repository: String,
        last: Option<String>,
        n: Option<u32>,
    ) -> Result<Page, RegistryError> {
        granted(&repository, Actions::PULL, "pulling")?;
        layout::ensure()?;
        let tags = tags::list(&repository)?;
        if tags.is_empty() && !repositories::exists(&repository)? {
            return Err(RegistryError::NameUnknown);
        }
        Ok(page(tags, last, n))
    }

    fn repositories(last: Option<String>, n: Option<u32>) -> Result<Page, RegistryError> {
        let caller = Caller::current();
        if caller.repositories.is_none() {
            caller.administer("the registry")?;
        }
        layout::ensure()?;
        let mut all = repositories::all()?;
        all.retain(|r| caller.in_repository(r).contains(Actions::PULL));
        Ok(page(all, last, n))
    }

    fn referrers(
        repository: String,
        subject: String,
        artifact_type: Option<String>,
        after: Option<String>,
        max_bytes: u64,
    ) -> Result<ReferrersPage, RegistryError> {
        let (holder, subject) = blob(&repository, &subject, Actions::PULL, "pulling")?;
        let after = after.as_deref().map(names::digest).transpose()?;
        let mut page = ReferrersPage {
            descriptors: Vec::new(),
            more: false,
        };
        let mut bytes = 0u64;
        for d in referrers::listed(&subject)? {
            if after
                .as_ref()
                .is_some_and(|a| d.to_string() <= a.to_string())
                || members::size(&d, &holder)?.is_none()
            {
                continue;
            }
            let Some(entry) = referrers::entry(&subject, &d)? else {
                continue; // removed since the listing
            };
            if artifact_type
                .as_ref()
                .is_some_and(|t| entry.artifact_type.as_ref() != Some(t))
            {
                continue;
            }
            let size = entry.index_bytes();
            if !page.descriptors.is_empty() && bytes.saturating_add(size) > max_bytes {
                page.more = true;
                break;
            }
            bytes += size;
            page.descriptors.push(Descriptor {
                media_type: entry.media_type,
                digest: d.to_string(),
                size: entry.size,
                artifact_type: entry.artifact_type,
                annotations: entry.annotations,
            });
        }
        Ok(page)
    }
}

/// The names of sorted `all` after `last`, at most `n`. `n = 0` is an
/// empty page with nothing more (the spec: no `Link` to follow).
fn page(all: Vec<String>, last: Option<String>, n: Option<u32>) -> Page {
    let after: Vec<String> = match last {
        Some(last) => all.into_iter().filter(|name| *name > last).collect(),
        None => all,
    };
    let n = n.map_or(after.len(), |n| n as usize);
    Page {
        more: n > 0 && after.len() > n,
        names: after.into_iter().take(n).collect(),
    }
}
