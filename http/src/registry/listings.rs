//! Tags, the catalog and referrers: sorted pages with `n` and `last` and
//! a `Link` to the next page; a referrers index is paged by its size.
//! Every page is admitted for the memory it holds while it is sent.

use axum::http::{StatusCode, header};
use axum::response::Response;
use kist::Page;
use serde_json::{Map, Value, json};

use super::errors::{Failure, Reply};
use super::{Query, Registry, admit, blocking};
use crate::client::Client;

/// Most names one tags or catalog page lists (a larger `n`, or none,
/// gets this many and a `Link` to the rest).
const MAX_NAMES: u32 = 10_000;
/// What a page of names may hold in memory: 10,000 names of at most 256
/// bytes, as JSON.
const NAMES_MEMORY: u64 = 3 << 20;
/// Most bytes of one referrers index page (more come behind a `Link`).
const REFERRERS_PAGE: u64 = 4 << 20;

/// `n` and `last` of a listing request; `n` must be a number, and is cut
/// to [`MAX_NAMES`].
fn paging(query: &Query) -> Result<(u32, Option<String>), Failure> {
    let n = match query.get("n") {
        None => MAX_NAMES,
        Some(n) => n
            .parse::<u64>()
            .map_err(|_| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    format!("n must be a number, not {n:?}"),
                )
            })?
            .min(u64::from(MAX_NAMES)) as u32,
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
    n: u32,
    transfer: Option<kist_admission::Transfer>,
) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json");
    if let (true, Some(last)) = (found.more, found.names.last()) {
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
        response = response.header(
            header::LINK,
            format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        );
    }
    doc.insert(key.to_owned(), json!(found.names));
    let body = Value::Object(doc).to_string().into_bytes();
    response
        .body(crate::body::held(body, transfer))
        .expect("valid response")
}

/// `GET /v2/<name>/tags/list`.
pub async fn tags(registry: &Registry, name: String, query: &Query, client: &Client) -> Reply {
    let (n, last) = paging(query)?;
    let transfer = admit(client, NAMES_MEMORY)?;
    let store = registry.store.clone();
    let repo = name.clone();
    let found =
        blocking::run(move || store.registry().tags(&repo, last.as_deref(), Some(n))).await?;
    let path = format!("/v2/{name}/tags/list");
    let doc = Map::from_iter([("name".to_owned(), json!(name))]);
    Ok(page(doc, "tags", found, &path, n, transfer))
}

/// `GET /v2/_catalog`.
pub async fn catalog(registry: &Registry, query: &Query, client: &Client) -> Reply {
    let (n, last) = paging(query)?;
    let transfer = admit(client, NAMES_MEMORY)?;
    let store = registry.store.clone();
    let found =
        blocking::run(move || store.registry().repositories(last.as_deref(), Some(n))).await?;
    Ok(page(
        Map::new(),
        "repositories",
        found,
        "/v2/_catalog",
        n,
        transfer,
    ))
}

/// `GET /v2/<name>/referrers/<digest>`: always an image index (never
/// 404), filtered by `artifactType` when asked (`OCI-Filters-Applied`),
/// of at most [`REFERRERS_PAGE`] bytes with a `Link` to the next page.
pub async fn referrers(
    registry: &Registry,
    name: String,
    digest: String,
    query: &Query,
    client: &Client,
) -> Reply {
    let artifact_type = query.get("artifactType");
    // The page as the component lists it, and as JSON.
    let transfer = admit(client, 2 * REFERRERS_PAGE)?;
    let store = registry.store.clone();
    let (filter, after) = (artifact_type.clone(), query.get("last"));
    let (repo, subject) = (name.clone(), digest.clone());
    let found = blocking::run(move || {
        store.registry().referrers(
            &repo,
            &subject,
            filter.as_deref(),
            after.as_deref(),
            REFERRERS_PAGE,
        )
    })
    .await?;
    let next = found.descriptors.last().filter(|_| found.more).map(|d| {
        let mut next = format!("/v2/{name}/referrers/{digest}?last={}", d.digest);
        if let Some(t) = &artifact_type {
            let t: String = form_urlencoded::byte_serialize(t.as_bytes()).collect();
            next.push_str(&format!("&artifactType={t}"));
        }
        format!("<{next}>; rel=\"next\"")
    });
    let manifests: Vec<Value> = found
        .descriptors
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
    if let Some(next) = next {
        response = response.header(header::LINK, next);
    }
    let body = index.to_string().into_bytes();
    if let Some(t) = &transfer {
        t.shrink(body.len() as u64);
    }
    Ok(response
        .body(crate::body::held(body, transfer))
        .expect("valid response"))
}
