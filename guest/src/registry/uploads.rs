//! Uploads: ingests named `registry-upload/<repository>/<id>`, written
//! by whichever process the client reaches, committed as blobs the
//! repository holds.

use crate::Component;
use crate::bindings::exports::kist::content::ingester::{Guest as Ingester, Writer, WriterOptions};
use crate::bindings::exports::kist::content::registry::RegistryError;
use crate::content::ingest;
use crate::registry::{names, repositories};
use crate::shared::error::Error;
use crate::shared::fs;
use crate::shared::scope::Caller;

fn unknown(e: Error) -> RegistryError {
    match e {
        Error::NotFound => RegistryError::BlobUploadUnknown,
        e => e.into(),
    }
}

/// Opens the upload `id` of `repository`, a new one if `create`.
pub fn open(repository: &str, id: &str, create: bool) -> Result<Writer, RegistryError> {
    names::repository(repository)?;
    names::upload_id(id)?;
    let reference = names::upload_ref(repository, id);
    if create {
        crate::shared::layout::ensure()?;
        repositories::note(repository)?;
    } else {
        as_repository(repository, || {
            <Component as Ingester>::status(reference.clone())
        })
        .map_err(unknown)?;
    }
    let options = WriterOptions {
        expected_size: None,
        expected: None,
        labels: Vec::new(),
        holder: Some(names::holder(repository)),
    };
    as_repository(repository, || {
        <Component as Ingester>::open_writer(reference, options)
    })
    .map_err(RegistryError::from)
}

/// Runs `f`, an ingester call on an upload of `repository`, as the
/// repository's holder: its uploads are that holder's ingests, whoever
/// the client is (the registry checked the client's grants).
fn as_repository<R>(repository: &str, f: impl FnOnce() -> R) -> R {
    Caller::internal(&names::holder(repository)).acting(f)
}

/// The offset of the upload `id` of `repository`.
pub fn offset(repository: &str, id: &str) -> Result<u64, RegistryError> {
    names::repository(repository)?;
    names::upload_id(id)?;
    let reference = names::upload_ref(repository, id);
    let status = as_repository(repository, || <Component as Ingester>::status(reference))
        .map_err(unknown)?;
    Ok(status.offset)
}

/// Most bytes one [`read`] returns.
const MAX_READ: u32 = 4 << 20;

/// Up to `len` bytes at `offset` of the upload `id` of `repository`, as
/// written so far.
pub fn read(repository: &str, id: &str, offset: u64, len: u32) -> Result<Vec<u8>, RegistryError> {
    names::repository(repository)?;
    names::upload_id(id)?;
    let dir = ingest::dir_of(&names::upload_ref(repository, id));
    let data = ingest::open_data(&dir)?.ok_or(RegistryError::BlobUploadUnknown)?;
    let written = fs::fstat(&data, &dir)?.size;
    let len = u64::from(len.min(MAX_READ)).min(written.saturating_sub(offset));
    Ok(fs::read_at(&data, &format!("{dir}/data"), offset, len)?)
}

/// Cancels the upload `id` of `repository`.
pub fn cancel(repository: &str, id: &str) -> Result<(), RegistryError> {
    names::repository(repository)?;
    names::upload_id(id)?;
    let reference = names::upload_ref(repository, id);
    as_repository(repository, || <Component as Ingester>::abort(reference)).map_err(unknown)
}
