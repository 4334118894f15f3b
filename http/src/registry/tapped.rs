//! A blob served while its node fetches it from the store's bucket: the
//! component's `stat-blob` downloads it (checked, into the node's
//! directory) and the download's bytes stream to the client as they
//! arrive, instead of after the whole is written, synced and read back.
//!
//! The bytes reach the client before the component has checked them, so
//! the last chunk is held back until the call has succeeded: a client
//! never gets a whole body that is not the blob; a wrong one ends cut.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use kist::{Reader, Store};
use kist_admission::Transfer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::errors::Failure;
use crate::client::Client;

/// Hand-overs queued between the download and the client, each one step
/// of the download (up to 4 MiB): enough that neither waits on the other.
const QUEUED: usize = 4;

/// Socket chunks handed to the response at once.
const CHUNKS_OUT: usize = 16;

/// What one streaming response holds at most: the queued steps, the one
/// held back and the one being sent (whose chunks go out `CHUNKS_OUT` at
/// a time). The client's transfer is admitted
/// for this much.
const MEMORY: u64 = (QUEUED as u64 + 2) * (4 << 20);

/// How long the download waits for a client to take a chunk before it
/// goes on without that client (whose response is then cut). The
/// admission layer cuts a client that stops reading well before.
const STALL: Duration = Duration::from_secs(60);

/// What the fetching call sends the response.
enum Tapped {
    /// A download began, of this many bytes.
    Size(u64),
    /// Its next bytes.
    Bytes(Vec<Bytes>),
    /// The call ended: the blob's size and a reader (it was stored, or
    /// is now), or why not.
    Done(kist::Result<(u64, Box<Reader>)>),
}

/// Hands the download's bytes to the response, on the blocking thread
/// the call runs on.
struct Channel {
    tx: mpsc::Sender<Tapped>,
    runtime: tokio::runtime::Handle,
}

impl Channel {
    fn send(&self, t: Tapped) -> bool {
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(STALL, self.tx.send(t)));
        matches!(sent, Ok(Ok(())))
    }
}

impl kist::BlobTap for Channel {
    fn begin(&mut self, size: u64) -> bool {
        self.send(Tapped::Size(size))
    }

    fn bytes(&mut self, chunks: Vec<Bytes>) -> bool {
        self.send(Tapped::Bytes(chunks))
    }
}

/// How a blob is served: stored (or fetched whole), or streaming as the
/// node fetches it.
pub enum Opened {
    /// Stored on the node (perhaps fetched whole): its size and a reader.
    Stored(u64, Box<Reader>),
    /// Being fetched: its size and the body that streams it.
    Streaming(u64, Body),
}

/// `stat-blob` of `digest` in `repository` with a tap: if the node has to
/// fetch the blob, its body streams as it arrives (admitted as a transfer
/// of `client`, or 429 while the fetch goes on without it), else the
/// stored blob's size and reader.
pub async fn open(
    store: &Store,
    repository: &str,
    digest: &str,
    client: &Client,
) -> Result<Opened, Failure> {
    let (tx, mut rx) = mpsc::channel(QUEUED);
    let tap = Channel {
        tx: tx.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let (store, repository, digest) = (store.clone(), repository.to_owned(), digest.to_owned());
    tokio::task::spawn_blocking(move || {
        let opened = store
            .registry()
            .stat_blob_tapped(&repository, &digest, Box::new(tap))
            .and_then(|size| Ok((size, Box::new(store.reader(&digest)?))));
        let _ = tx.blocking_send(Tapped::Done(opened));
    });
    match rx.recv().await {
        Some(Tapped::Done(opened)) => {
            let (size, reader) = opened.map_err(Failure::from)?;
            Ok(Opened::Stored(size, reader))
        }
        Some(Tapped::Size(size)) => {
            let transfer = client.transfer(MEMORY).map_err(super::too_many)?;
            Ok(Opened::Streaming(size, body(rx, transfer)))
        }
        Some(Tapped::Bytes(_)) | None => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "the blob's fetch stopped",
        )),
    }
}

/// The body of a blob being fetched: each step's bytes once the next
/// step has come, the last once the call succeeded; an error (cutting
/// the response) if it failed.
fn body(mut rx: mpsc::Receiver<Tapped>, transfer: Option<Transfer>) -> Body {
    // A few socket chunks at a time: what the client has not taken stays
    // in the steps counted in MEMORY, and a client that stops reading
    // stops the transfer (and is cut by the admission layer).
    let (tx, out) = mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_OUT);
    tokio::spawn(async move {
        let _transfer = transfer;
        let mut held = Vec::new();
        let send = |chunks: Vec<Bytes>| {
            let tx = tx.clone();
            async move {
                for chunk in chunks {
                    tx.send(Ok(chunk)).await?;
                }
                Ok::<_, mpsc::error::SendError<_>>(())
            }
        };
        let end = loop {
            match rx.recv().await {
                Some(Tapped::Bytes(chunks)) => {
                    let ready = std::mem::replace(&mut held, chunks);
                    if send(ready).await.is_err() {
                        return; // the client left
                    }
                }
                Some(Tapped::Done(Ok(_))) => break Ok(std::mem::take(&mut held)),
                Some(Tapped::Done(Err(e))) => break Err(std::io::Error::other(e.to_string())),
                Some(Tapped::Size(_)) => {}
                None => break Err(std::io::Error::other("the fetch stopped")),
            }
        };
        let _ = match end {
            Ok(last) => send(last).await,
            Err(e) => tx.send(Err(e)).await,
        };
    });
    Body::from_stream(ReceiverStream::new(out))
}
