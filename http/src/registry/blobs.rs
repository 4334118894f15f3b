//! `GET`, `HEAD` and `DELETE /v2/<name>/blobs/<digest>`: a blob is served
//! through a repository only if that repository holds it.

use axum::http::response::Builder;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;

use super::errors::Reply;
use super::tapped::{self, Opened};
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
    // A whole blob the node must fetch from its bucket streams as it
    // arrives; anything else is served once stored.
    let opened = if method == Method::GET && range.is_none() {
        match tapped::open(&registry.store, &name, &digest, client).await {
            Ok(Opened::Streaming(size, body)) => {
                let response = headers_of(Response::builder(), &digest)
                    .status(StatusCode::OK)
                    .header(header::CONTENT_LENGTH, size);
                return Ok(response.body(body).expect("valid response"));
            }
            Ok(Opened::Stored(size, reader)) => Ok((size, *reader)),
            Err(e) => Err(e),
        }
    } else {
        open().await
    };
    let (size, reader) = match (opened, &registry.mirror) {
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
    let response = headers_of(Response::builder(), &digest);
    Ok(body::ranged(response, reader, size, range, method, client))
}

/// The headers every blob response has.
fn headers_of(response: Builder, digest: &str) -> Builder {
    response
        .header("Docker-Content-Digest", digest)
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CONTENT_TYPE, "application/octet-stream")
}

/// `DELETE` of a blob: the repository's hold goes (202).
pub async fn delete(registry: &Registry, name: String, digest: String) -> Reply {
    let store = registry.store.clone();
    blocking::run(move || store.registry().delete_blob(&name, &digest)).await?;
    Ok(super::empty(StatusCode::ACCEPTED))
}
