//! Blob uploads (`/v2/<name>/blobs/uploads/...`): each upload is a kist
//! ingest, so it survives a server restart or a kill -9 and any `kist
//! serve` on the same store continues it at its offset. Ids are random
//! (128 bits) and carry no state: nothing to sign, nothing lost across
//! replicas.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::errors::{Failure, Reply};
use super::{Query, Registry, blocking, upload_body};

/// The `Location` of upload `id` in `name`.
fn location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// The `Range` header of an upload at `offset` (`0-0` when empty, as
/// clients expect).
fn range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// A 202 or 204 naming upload `id` at `offset`.
fn progress(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, location(name, id))
        .header(header::RANGE, range(offset))
        .header("Docker-Upload-UUID", id)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

/// The 201 of a blob now stored in `name`.
fn created(name: &str, digest: &str) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header("Docker-Content-Digest", digest)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

/// A new random upload id.
fn new_id() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("random id: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `POST /v2/<name>/blobs/uploads/`: a mount (`?mount=&from=`, 201, or an
/// upload when the source does not hold the blob), a monolithic upload
/// (`?digest=`, 201; the upload is dropped if the bytes are not that
/// digest's: the client never learnt its address) or a new upload (202).
pub async fn start(
    registry: &Registry,
    name: String,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    if let Some(digest) = query.get("mount") {
        let store = registry.store.clone();
        let (to, from, d) = (
            name.clone(),
            query.get("from").unwrap_or_default(),
            digest.clone(),
        );
        // No `from`: nothing to mount from; an upload follows.
        let mounted = !from.is_empty()
            && blocking::run(move || store.registry().mount_blob(&to, &from, &d)).await?;
        if mounted {
            return Ok(created(&name, &digest));
        }
    }
    let id = new_id()?;
    let store = registry.store.clone();
    let (repo, upload) = (name.clone(), id.clone());
    let writer = blocking::run(move || store.registry().open_upload(&repo, &upload, true)).await?;
    let Some(digest) = query.get("digest") else {
        return Ok(progress(StatusCode::ACCEPTED, &name, &id, 0));
    };
    let finished = finish(&name, &id, writer, headers, body, digest).await;
    if finished.is_err() {
        let store = registry.store.clone();
        let _ = blocking::run(move || store.registry().cancel_upload(&name, &id)).await;
    }
    finished
}

/// A `Content-Range` of a chunk: `<start>-<end>`, inclusive (with or
/// without a `bytes ` unit); `None` if it is not one, or ends before it
/// starts.
fn chunk_range(value: &HeaderValue) -> Option<(u64, u64)> {
    let value = value.to_str().ok()?.trim();
    let value = value.strip_prefix("bytes ").unwrap_or(value);
    let (start, end) = value.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= end).then_some((start, end))
}

/// A 416 for a chunk that does not fit upload `id` of `name` at `offset`.
fn misplaced(name: &str, id: &str, offset: u64, why: String) -> Failure {
    Failure::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
        why,
    )
    .with_header(header::LOCATION, location(name, id))
    .with_header(header::RANGE, range(offset))
}

/// Appends a chunk to upload `id` of `name`. With `Content-Range`, the
/// chunk must start at the upload's offset, its length match any
/// `Content-Length`, and the body be exactly that long: otherwise 416,
/// with the upload as it was (a body of another length is cut back off),
/// so the client can `GET` the offset and resume. Without it, the body
/// is appended as it comes.
async fn append_chunk(
    name: &str,
    id: &str,
    mut writer: kist::Writer,
    headers: &HeaderMap,
    body: Body,
) -> Result<kist::Writer, Failure> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(upload_body::append(writer, body).await?.0);
    };
    let (mut writer, offset) = blocking::run(move || {
        let offset = writer.status()?.offset;
        Ok((writer, offset))
    })
    .await?;
    let Some((start, end)) = chunk_range(value) else {
        return Err(misplaced(
            name,
            id,
            offset,
            format!("Content-Range {value:?} is not <start>-<end>"),
        ));
    };
    let length = end - start + 1;
    if start != offset {
        return Err(misplaced(
            name,
            id,
            offset,
            format!("a chunk must start at the upload's offset {offset}"),
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n != length) {
        return Err(misplaced(
            name,
            id,
            offset,
            format!(
                "Content-Length {} is not the {length} bytes of Content-Range {start}-{end}",
                declared.unwrap_or_default()
            ),
        ));
    }
    let (w, appended) = upload_body::append(writer, body).await?;
    writer = w;
    if appended != length {
        blocking::run(move || writer.truncate(offset)).await?;
        return Err(misplaced(
            name,
            id,
            offset,
            format!("the body had {appended} bytes; Content-Range {start}-{end} says {length}"),
        ));
    }
    Ok(writer)
}

/// `PATCH` of an upload: appends the body, a chunk checked against its
/// `Content-Range` if it has one (see `append_chunk`).
pub async fn patch(
    registry: &Registry,
    name: String,
    id: String,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    let writer = open(registry, &name, &id).await?;
    let mut writer = append_chunk(&name, &id, writer, headers, body).await?;
    let offset = blocking::run(move || Ok(writer.status()?.offset)).await?;
    Ok(progress(StatusCode::ACCEPTED, &name, &id, offset))
}

/// `PUT` of an upload with `?digest=` and an optional last chunk (checked
/// against its `Content-Range` as a `PATCH` is): 201, or 400
/// `DIGEST_INVALID` when the bytes have another digest (the upload is
/// kept).
pub async fn put(
    registry: &Registry,
    name: String,
    id: String,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    let Some(digest) = query.get("digest") else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "a PUT that completes an upload needs ?digest=",
        ));
    };
    let writer = open(registry, &name, &id).await?;
    finish(&name, &id, writer, headers, body, digest).await
}

/// Appends the last chunk and commits upload `id` of `name` as `digest`.
async fn finish(
    name: &str,
    id: &str,
    writer: kist::Writer,
    headers: &HeaderMap,
    body: Body,
    digest: String,
) -> Reply {
    let writer = append_chunk(name, id, writer, headers, body).await?;
    let expected = digest.clone();
    // Already stored and held by this repository: the push is done too.
    blocking::run(move || match writer.commit(None, Some(&expected), &[]) {
        Ok(_) | Err(kist::Error::AlreadyExists) => Ok(()),
        Err(kist::Error::InvalidArgument(m)) => {
            Err(kist::Error::Registry(kist::RegistryError::DigestInvalid(m)))
        }
        Err(e) => Err(e),
    })
    .await?;
    Ok(created(name, &digest))
}

/// `GET` of an upload: 204 with its `Range`.
pub async fn status(registry: &Registry, name: String, id: String) -> Reply {
    let store = registry.store.clone();
    let (repo, upload) = (name.clone(), id.clone());
    let offset = blocking::run(move || store.registry().upload_offset(&repo, &upload)).await?;
    Ok(progress(StatusCode::NO_CONTENT, &name, &id, offset))
}

/// `DELETE` of an upload: 204.
pub async fn cancel(registry: &Registry, name: String, id: String) -> Reply {
    let store = registry.store.clone();
    blocking::run(move || store.registry().cancel_upload(&name, &id)).await?;
    Ok(super::empty(StatusCode::NO_CONTENT))
}

/// Opens the existing upload `id` of `name` at its offset.
async fn open(registry: &Registry, name: &str, id: &str) -> Result<kist::Writer, Failure> {
    let store = registry.store.clone();
    let (name, id) = (name.to_owned(), id.to_owned());
    blocking::run(move || store.registry().open_upload(&name, &id, false)).await
}
