//! Artifact routes: `GET` and `HEAD /<kind>/<namespace>/<name>/<file>`,
//! the `latest` alias included. Every other path is a 404; nothing on disk
//! is ever served by its file name, so there are no directory listings and
//! no lock or record files to reach.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::body;
use crate::client::Client;
use kist::{Artifact, Error, Store};

/// The artifact routes over `store`.
pub fn routes(store: Store) -> Router {
    Router::new()
        .route("/{kind}/{namespace}/{name}/{file}", get(serve))
        .with_state(store)
}

/// `GET` (and, through axum, `HEAD`) of one artifact.
async fn serve(
    State(store): State<Store>,
    Path((kind, namespace, name, file)): Path<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
    client: Client,
) -> Response {
    let path = format!("{kind}/{namespace}/{name}/{file}");
    let opened = tokio::task::spawn_blocking(move || store.storer().open(&path)).await;
    let (artifact, reader) = match opened {
        Ok(Ok(opened)) => opened,
        // Malformed paths, missing artifacts and missing blobs alike.
        Ok(Err(Error::NotFound | Error::InvalidArgument(_))) => {
            return StatusCode::NOT_FOUND.into_response();
        }
        Ok(Err(e)) => {
            tracing::warn!("serving {kind}/{namespace}/{name}/{file}: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Err(e) => {
            tracing::warn!("serving {kind}/{namespace}/{name}/{file}: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let etag = format!("\"{}\"", artifact.digest);
    let response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CONTENT_TYPE, content_type(&file))
        .header(header::LAST_MODIFIED, last_modified(&artifact));
    // RFC 9110 13.1.2: If-None-Match compares weakly.
    let matches = |t: &str| {
        let t = t.trim();
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(matches))
    {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response");
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    body::ranged(response, reader, artifact.size, range, &method, &client)
}

/// The media type of an artifact, from its file name.
fn content_type(file: &str) -> &'static str {
    let types = [
        (".tar.gz", "application/gzip"),
        (".tgz", "application/gzip"),
        (".gz", "application/gzip"),
        (".tar", "application/x-tar"),
        (".zip", "application/zip"),
        (".json", "application/json"),
        (".yaml", "application/yaml"),
        (".yml", "application/yaml"),
        (".txt", "text/plain; charset=utf-8"),
    ];
    types
        .iter()
        .find(|(ext, _)| file.ends_with(ext))
        .map_or("application/octet-stream", |(_, t)| t)
}

fn last_modified(artifact: &Artifact) -> HeaderValue {
    let when = httpdate::fmt_http_date(kist::system_time(artifact.last_update));
    HeaderValue::from_str(&when).expect("HTTP dates are ASCII")
}
