//! One `Write` stream of containerd's Content service, run on a blocking
//! thread: the rules of containerd's content server, over a kist writer.
//!
//! - The first message names the ref (else `InvalidArgument`); an
//!   `expected` digest already stored is `AlreadyExists` (and containerd
//!   holds it from then on). A commit of content stored meanwhile succeeds
//!   with its digest: containerd's proxy writer learns the digest only
//!   from a successful commit.
//! - `WRITE` at an offset other than the current one is `OutOfRange`,
//!   except offset 0, which starts over; `COMMIT` may carry the last data.
//! - `total` and `expected` may come with any message; the last ones count.

use crate::api::containerd::services::content::v1::{
    WriteAction, WriteContentRequest, WriteContentResponse,
};
use tokio::sync::mpsc;
use tonic::Status;

use crate::content::{ingest_status, kist_ref};
use crate::errors::status;

type Out = mpsc::Sender<Result<WriteContentResponse, Status>>;

/// Runs the stream `rx` to its end, answering on `tx`.
pub fn session(store: &kist::Store, mut rx: mpsc::Receiver<WriteContentRequest>, tx: Out) {
    if let Err(e) = run(store, &mut rx, &tx) {
        let _ = tx.blocking_send(Err(e));
    }
}

fn response(
    action: WriteAction,
    s: &kist::IngestStatus,
    total: i64,
    digest: String,
) -> WriteContentResponse {
    let s = ingest_status(s.clone());
    WriteContentResponse {
        action: action as i32,
        started_at: s.started_at,
        updated_at: s.updated_at,
        offset: s.offset,
        total,
        digest,
    }
}

fn run(
    store: &kist::Store,
    rx: &mut mpsc::Receiver<WriteContentRequest>,
    tx: &Out,
) -> Result<(), Status> {
    let Some(first) = rx.blocking_recv() else {
        return Ok(());
    };
    if first.r#ref.is_empty() {
        return Err(Status::invalid_argument(
            "the first write message must name a ref",
        ));
    }
    let (mut total, mut expected) = (first.total, first.expected.clone());
    if !expected.is_empty() && store.hold(&expected).is_ok() {
        return Err(Status::already_exists(format!(
            "content {expected} already exists"
        )));
    }
    let mut writer = store
        .writer(&kist_ref(&first.r#ref), None, None)
        .map_err(status)?;
    // The writer is this stream's alone (kist locks the ref), so its state
    // changes only here: read again after each change, not per message.
    let mut current = writer.status().map_err(status)?;
    let mut next = Some(first);
    while let Some(req) = next.take().or_else(|| rx.blocking_recv()) {
        if req.total > 0 {
            total = req.total;
        }
        if !req.expected.is_empty() {
            expected = req.expected.clone();
        }
        let action = WriteAction::try_from(req.action)
            .map_err(|_| Status::invalid_argument("unknown write action"))?;
        if action != WriteAction::Stat {
            let offset = current.offset;
            if req.offset > 0 && req.offset as u64 != offset {
                return Err(Status::out_of_range(format!(
                    "write at {} must happen at the current offset {offset}",
                    req.offset
                )));
            }
            let truncate = req.offset == 0 && offset > 0;
            if truncate {
                writer.truncate(0).map_err(status)?;
            }
            if !req.data.is_empty() {
                writer.write_all(&req.data).map_err(status)?;
            }
            if truncate || !req.data.is_empty() {
                current = writer.status().map_err(status)?;
            }
        }
        if action == WriteAction::Commit {
            let mut labels: Vec<(String, String)> = req.labels.into_iter().collect();
            labels.sort();
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let size = (total > 0).then_some(total as u64);
            let want = (!expected.is_empty()).then_some(expected.as_str());
            let actual = match want {
                Some(d) => d.to_owned(),
                None => writer.digest().map_err(status)?,
            };
            let digest = match writer.commit(size, want, &labels) {
                Ok(d) => d,
                // Stored already (by kist, or an earlier try): containerd
                // reads the digest from this answer, so it is a success,
                // and containerd holds the blob from now on.
                Err(kist::Error::AlreadyExists) => {
                    store.hold(&actual).map_err(status)?;
                    actual
                }
                Err(e) => return Err(status(e)),
            };
            let _ = tx.blocking_send(Ok(response(
                action,
                &current,
                current.offset as i64,
                digest,
            )));
            return Ok(());
        }
        if tx
            .blocking_send(Ok(response(action, &current, total, String::new())))
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}
