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
use tokio_stream::wrappers::ReceiverStream;

use super::range::{Wanted, wanted};
use kist::{Artifact, Error, Reader, Store};

/// Chunks in flight between a blob reader and a slow client.
const QUEUED_CHUNKS: usize = 4;

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
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, content_type(&file))
        .header(header::LAST_MODIFIED, last_modified(&artifact));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response");
    }
    let size = artifact.size;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (start, end) = match wanted(range, size) {
        Wanted::All => {
            response = response.status(StatusCode::OK);
            (0, size)
        }
        Wanted::Part { start, end } => {
            response = response.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{size}", end - 1),
            );
            (start, end)
        }
        Wanted::Unsatisfiable => {
            return response
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .expect("valid response");
        }
    };
    response = response.header(header::CONTENT_LENGTH, end - start);
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        stream(reader, start, end)
    };
    response.body(body).expect("valid response")
}

/// Bytes `start..end` of `reader`, read on a blocking thread and handed to
/// the connection as they come.
fn stream(mut reader: Reader, start: u64, end: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUED_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut at = start;
        if let Err(e) = std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        while at < end {
            let chunk = match reader.next_chunk() {
                Ok(c) if c.is_empty() => Err(std::io::Error::other("blob ended early")),
                Ok(c) => Ok(c.slice(..c.len().min((end - at) as usize))),
                Err(e) => Err(std::io::Error::from(e)),
            };
            let failed = chunk.is_err();
            at += chunk.as_ref().map_or(0, |c| c.len() as u64);
            // A closed channel means the client went away.
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
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
