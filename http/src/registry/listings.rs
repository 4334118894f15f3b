//! Tags, the catalog and referrers: sorted pages with `n` and `last` and
//! a `Link` to the next page, and the referrers index.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use kist::Page;
use serde_json::{Map, Value, json};

use super::errors::{Failure, Reply};
use super::{Query, Registry, blocking};

/// `n` and `last` of a listing request; `n` must be a number.
fn paging(query: &Query) -> Result<(Option<u32>, Option<String>), Failure> {
    let n = match query.get("n") {
        None => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "n must be a number",
            )
        })?),
    };
    Ok((n, query.get("last")))
}

/// A JSON 200 of `doc` with `found`'s names under `key`, and a `Link` to
/// the page after its last name when there are more.
fn page(
    mut doc: Map<String, Value>,
    key: &str,
    found: Page,
    path: &str,
    n: Option<u32>,
) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json");
    if let (true, Some(last)) = (found.more, found.names.last()) {
        let n = n.map(|n| format!("n={n}&")).unwrap_or_default();
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
        response = response.header(
            header::LINK,
            format!("<{path}?{n}last={last}>; rel=\"next\""),
        );
    }
    doc.insert(key.to_owned(), json!(found.names));
    response
        .body(Body::from(Value::Object(doc).to_string()))
        .expect("valid response")
}

/// `GET /v2/<name>/tags/list`.
pub async fn tags(registry: &Registry, name: String, query: &Query) -> Reply {
    let (n, last) = paging(query)?;
    let store = registry.store.clone();
    let repo = name.clone();
    let found = blocking::run(move || store.registry().tags(&repo, last.as_deref(), n)).await?;
    let path = format!("/v2/{name}/tags/list");
    let doc = Map::from_iter([("name".to_owned(), json!(name))]);
    Ok(page(doc, "tags", found, &path, n))
}

/// `GET /v2/_catalog`.
pub async fn catalog(registry: &Registry, query: &Query) -> Reply {
    let (n, last) = paging(query)?;
    let store = registry.store.clone();
    let found = blocking::run(move || store.registry().repositories(last.as_deref(), n)).await?;
    Ok(page(Map::new(), "repositories", found, "/v2/_catalog", n))
}

/// `GET /v2/<name>/referrers/<digest>`: always an image index (never
/// 404), filtered by `artifactType` when asked (`OCI-Filters-Applied`).
pub async fn referrers(registry: &Registry, name: String, digest: String, query: &Query) -> Reply {
    let artifact_type = query.get("artifactType");
    let store = registry.store.clone();
    let filter = artifact_type.clone();
    let found = blocking::run(move || {
        store
            .registry()
            .referrers(&name, &digest, filter.as_deref())
    })
    .await?;
    let manifests: Vec<Value> = found
        .into_iter()
        .map(|d| {
            let mut m = Map::new();
            m.insert("mediaType".into(), json!(d.media_type));
            m.insert("digest".into(), json!(d.digest));
            m.insert("size".into(), json!(d.size));
            if let Some(t) = d.artifact_type {
                m.insert("artifactType".into(), json!(t));
            }
            if !d.annotations.is_empty() {
                let a: Map<String, Value> = d
                    .annotations
                    .into_iter()
                    .map(|(k, v)| (k, json!(v)))
                    .collect();
                m.insert("annotations".into(), Value::Object(a));
            }
            Value::Object(m)
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let mut response = Response::builder().status(StatusCode::OK).header(
        header::CONTENT_TYPE,
        "application/vnd.oci.image.index.v1+json",
    );
    if artifact_type.is_some() {
        response = response.header("OCI-Filters-Applied", "artifactType");
    }
    Ok(response
        .body(Body::from(index.to_string()))
        .expect("valid response"))
}
