//! `/v2/<name>/manifests/<reference>`: manifests are parsed and checked in
//! the component; here they are only carried, up to 4 MiB, each body
//! admitted for the memory it holds (see `kist-admission`).

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;

use super::errors::{Failure, Reply};
use super::{Registry, admit, blocking};
use crate::client::Client;

/// The largest manifest accepted (the spec's recommended minimum limit).
pub const MAX_MANIFEST: usize = 4 << 20;

/// Where a manifest is pushed: `/v2/<name>/manifests/<reference>` with
/// the `?tag=` values (OCI distribution 1.1) to point at it too.
pub struct Pushed {
    pub name: String,
    pub reference: String,
    pub tags: Vec<String>,
}

/// `PUT` of a manifest by tag or digest: 201 with `Location`,
/// `Docker-Content-Digest`, one `OCI-Tag` per `?tag=` applied (all or
/// none) and, when it has a subject, `OCI-Subject`.
pub async fn put(
    registry: &Registry,
    pushed: Pushed,
    headers: &HeaderMap,
    body: Body,
    client: &Client,
) -> Reply {
    let Pushed {
        name,
        reference,
        tags,
    } = pushed;
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("a manifest is at most {MAX_MANIFEST} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST as u64) {
        return Err(too_large());
    }
    // Held until the push is stored: the body, then the component's copy.
    let _transfer = admit(client, declared.unwrap_or(MAX_MANIFEST as u64))?;
    let limited = http_body_util::Limited::new(body, MAX_MANIFEST);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                Failure::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", e.to_string())
            }
        })?
        .to_bytes();
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let store = registry.store.clone();
    let (repo, tagged) = (name.clone(), tags.clone());
    let pushed = blocking::run(move || {
        store
            .registry()
            .put_manifest_tagged(&repo, &reference, &media_type, &bytes, &tagged)
    })
    .await?;
    let mut response = Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{name}/manifests/{}", pushed.digest),
        )
        .header("Docker-Content-Digest", &pushed.digest)
        .header(header::CONTENT_LENGTH, 0);
    for tag in &tags {
        response = response.header("OCI-Tag", tag);
    }
    if let Some(subject) = &pushed.subject {
        response = response.header("OCI-Subject", subject);
    }
    Ok(response.body(Body::empty()).expect("valid response"))
}

/// `GET` or `HEAD` of a manifest by tag or digest, with the media type it
/// was pushed with. Admitted for the largest manifest before it is read,
/// then for its size while it is sent.
pub async fn get(
    registry: &Registry,
    name: String,
    reference: String,
    method: &Method,
    client: &Client,
) -> Reply {
    let transfer = admit(client, MAX_MANIFEST as u64)?;
    let stale = match &registry.mirror {
        Some(mirror) => {
            mirror
                .manifest(&registry.server, &registry.store, &name, &reference)
                .await?
        }
        None => None,
    };
    let store = registry.store.clone();
    let manifest = blocking::run(move || store.registry().get_manifest(&name, &reference)).await?;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &manifest.media_type)
        .header("Docker-Content-Digest", &manifest.digest)
        .header(header::ETAG, format!("\"{}\"", manifest.digest))
        .header(header::CONTENT_LENGTH, manifest.bytes.len());
    if let Some(warning) = stale {
        response = response.header(header::WARNING, warning);
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        if let Some(t) = &transfer {
            t.shrink(manifest.bytes.len() as u64);
        }
        crate::body::held(manifest.bytes, transfer)
    };
    Ok(response.body(body).expect("valid response"))
}

/// `DELETE` by digest (the manifest and its tags here) or by tag (the tag
/// only): 202.
pub async fn delete(registry: &Registry, name: String, reference: String) -> Reply {
    let store = registry.store.clone();
    blocking::run(move || {
        let registry = store.registry();
        if reference.contains(':') {
            registry.delete_manifest(&name, &reference)
        } else {
            registry.delete_tag(&name, &reference)
        }
    })
    .await?;
    Ok(super::empty(StatusCode::ACCEPTED))
}
