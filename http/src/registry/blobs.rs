//! `GET`, `HEAD` and `DELETE /v2/<name>/blobs/<digest>`: a blob is served
//! through a repository only if that repository holds it.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;

use super::errors::Reply;
use super::{Registry, blocking};
use crate::body;
use crate::client::Client;

/// `GET` or `HEAD` of a blob, with `Range`.
pub async fn get(
    registry: &Registry,
    name: String,
    digest: String,
    method: &Method,
    headers: &HeaderMap,
    client: &Client,
) -> Reply {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let open = || {
        let (store, name, wanted) = (registry.store.clone(), name.clone(), digest.clone());
        blocking::run(move || {
            let size = store.registry().stat_blob(&name, &wanted)?;
            Ok((size, store.reader(&wanted)?))
        })
    };
    let (size, reader) = match (open().await, &registry.mirror) {
        (Ok(opened), _) => opened,
        // Not stored, and the client may pull (else the component said
        // `denied`): the mirror fetches it. A whole blob streams as it
        // arrives; a range is served once it is in.
        (Err(unknown), Some(mirror)) if unknown.is_unknown() => {
            let server = &registry.server;
            if range.is_none() {
                return mirror.blob(server, &name, &digest, method, client).await;
            }
            mirror.stored(server, client, &name, &digest).await?;
            open().await?
        }
        (Err(failure), _) => return Err(failure),
    };
    let response = Response::builder()
        .header("Docker-Content-Digest", &digest)
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CONTENT_TYPE, "application/octet-stream");
    Ok(body::ranged(response, reader, size, range, method, client))
}

/// `DELETE` of a blob: the repository's hold goes (202).
pub async fn delete(registry: &Registry, name: String, digest: String) -> Reply {
    let store = registry.store.clone();
    blocking::run(move || store.registry().delete_blob(&name, &digest)).await?;
    Ok(super::empty(StatusCode::ACCEPTED))
}
