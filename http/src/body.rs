//! Response bodies, each admitted as a transfer that holds what the server
//! buffers for it until it ends. A blob streams without tying a thread to
//! the client: each chunk is read on tokio's blocking pool and handed
//! over, and no thread waits while the client is slow to take it (every
//! route that sends blob bytes, artifacts and the registry's blobs,
//! streams this way). Bytes already in memory (a manifest, a listing) are
//! sent from it in slices.

use axum::body::Body;
use axum::http::{Method, StatusCode, header, response::Builder};
use axum::response::{IntoResponse, Response};
use kist::Reader;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::Client;
use crate::range::{Wanted, wanted};
use kist_admission::Transfer;

/// Bytes a blob's body may hold (two 1 MiB chunks read ahead and the one
/// being sent): what its transfer is admitted with.
pub const STREAM_MEMORY: u64 = 4 << 20;

/// The response to a `GET` or `HEAD` of `reader`'s `size` bytes with the
/// request's `range`: 200, 206 with `Content-Range`, or 416 with
/// `Content-Range: bytes */size` and no body; `response` has the other
/// headers. A body the admission refuses gets 503.
pub fn ranged(
    mut response: Builder,
    reader: Reader,
    size: u64,
    range: Option<&str>,
    method: &Method,
    client: &Client,
) -> Response {
    response = response.header(header::ACCEPT_RANGES, "bytes");
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
    if method == Method::HEAD {
        return response.body(Body::empty()).expect("valid response");
    }
    let transfer = match client.transfer(STREAM_MEMORY) {
        Ok(t) => t,
        Err(refused) => return crate::busy(refused),
    };
    response
        .body(stream(reader, start, end, transfer))
        .expect("valid response")
        .into_response()
}

/// `bytes` as a body sent in slices; `transfer` (what admitted it) is
/// held until the body ends, however it ends.
pub fn held(bytes: Vec<u8>, transfer: Option<Transfer>) -> Body {
    const SLICE: usize = 64 << 10;
    let bytes = axum::body::Bytes::from(bytes);
    let slices: Vec<Result<axum::body::Bytes, std::io::Error>> = (0..bytes.len())
        .step_by(SLICE)
        .map(|at| Ok(bytes.slice(at..bytes.len().min(at + SLICE))))
        .collect();
    let stream = tokio_stream::iter(slices).map(move |slice| {
        let _held = &transfer;
        slice
    });
    Body::from_stream(stream)
}

/// Bytes `start..end` of `reader` as a body; `transfer` (its admission)
/// is held until the body ends, however it ends.
pub fn stream(mut reader: Reader, start: u64, end: u64, transfer: Option<Transfer>) -> Body {
    // Two 1 MiB chunks read ahead (each a `pread` of the blob's lent
    // file), so reading overlaps sending; with the one hyper is writing,
    // a stalled client holds 3 MiB, within what its transfer reserved
    // (defects::stalled_downloads_do_not_freeze_serve).
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    // A seek only moves the reader's position: no I/O here.
    let _ = std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(start));
    tokio::spawn(async move {
        let _transfer = transfer;
        let mut reader = Some(reader);
        let mut at = start;
        while at < end {
            let mut r = reader.take().expect("reader is back");
            let read = tokio::task::spawn_blocking(move || {
                let chunk = r.next_chunk().map_err(std::io::Error::from);
                (r, chunk)
            })
            .await;
            let Ok((r, chunk)) = read else {
                return; // the read panicked; the body ends short
            };
            reader = Some(r);
            let chunk = match chunk {
                Ok(c) if c.is_empty() => Err(std::io::Error::other("blob ended early")),
                Ok(c) => Ok(c.slice(..c.len().min((end - at) as usize))),
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            at += chunk.as_ref().map_or(0, |c| c.len() as u64);
            // A closed channel means the client went away.
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}
