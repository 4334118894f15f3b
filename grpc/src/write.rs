//! One `Write` stream of containerd's Content service: the rules of
//! containerd's content server, over a kist writer.
//!
//! - The first message names the ref (else `InvalidArgument`); an
//!   `expected` digest already stored is `AlreadyExists` (and containerd
//!   holds it from then on). A commit of content stored meanwhile succeeds
//!   with its digest: containerd's proxy writer learns the digest only
//!   from a successful commit.
//! - `WRITE` at an offset other than the current one is `OutOfRange`,
//!   except offset 0, which starts over; `COMMIT` may carry the last data.
//! - `total` and `expected` may come with any message; the last ones count.
//! - A message that cannot be decoded (larger than the socket takes) ends
//!   the stream with its error, as does a stream the admission cut.
//!
//! The stream is read in an async task; each message's store work runs on
//! the blocking pool, so no thread waits for a client that is slow to
//! send.

use crate::api::containerd::services::content::v1::{
    WriteAction, WriteContentRequest, WriteContentResponse,
};
use kist_admission::Transfer;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use crate::content::{ingest_status, kist_ref};
use crate::errors::status;

type Out = mpsc::Sender<Result<WriteContentResponse, Status>>;

/// Runs the stream `incoming` to its end, answering on `out`; `transfer`
/// (its admission, if any) times it and may cut it.
pub async fn session(
    store: kist::Store,
    mut incoming: Streaming<WriteContentRequest>,
    out: Out,
    transfer: Option<Transfer>,
) {
    let cut = transfer.as_ref().map(|t| t.cut().clone());
    let mut state = OffThread(None);
    loop {
        let next = match &cut {
            Some(cut) => tokio::select! {
                next = incoming.next() => next,
                () = cut.cancelled() => {
                    let _ = out.send(Err(Status::resource_exhausted(
                        "the write stream was slower than the server's minimum rate",
                    ))).await;
                    return;
                }
            },
            None => incoming.next().await,
        };
        let req = match next {
            None => return,
            Some(Err(e)) => {
                let _ = out.send(Err(e)).await;
                return;
            }
            Some(Ok(req)) => req,
        };
        if let Some(t) = &transfer {
            t.moved(req.data.len() as u64);
        }
        let (store, taken) = (store.clone(), state.0.take());
        let ran = tokio::task::spawn_blocking(move || {
            let mut session = match taken {
                Some(s) => s,
                None => Session::open(&store, &req)?,
            };
            let answer = session.handle(req)?;
            Ok((session, answer))
        })
        .await
        .unwrap_or_else(|e| Err(Status::internal(format!("store call panicked: {e}"))));
        match ran {
            Ok((session, (answer, done))) => {
                if out.send(Ok(answer)).await.is_err() || done {
                    return;
                }
                state.0 = Some(session);
            }
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        }
    }
}

/// A session held by the async task between messages, dropped on the
/// blocking pool however the task ends: dropping a writer saves its hash
/// state through the component, which may not run on a runtime thread.
struct OffThread(Option<Session>);

impl Drop for OffThread {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            tokio::task::spawn_blocking(move || drop(session));
        }
    }
}

/// The writer of one stream, and what its messages declared so far.
struct Session {
    store: kist::Store,
    /// Until the commit consumes it.
    writer: Option<kist::Writer>,
    current: kist::IngestStatus,
    total: i64,
    expected: String,
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

impl Session {
    /// Opens the writer the stream's first message names.
    fn open(store: &kist::Store, first: &WriteContentRequest) -> Result<Self, Status> {
        if first.r#ref.is_empty() {
            return Err(Status::invalid_argument(
                "the first write message must name a ref",
            ));
        }
        let expected = first.expected.clone();
        if !expected.is_empty() && store.hold(&expected).is_ok() {
            return Err(Status::already_exists(format!(
                "content {expected} already exists"
            )));
        }
        let mut writer = store
            .writer(&kist_ref(&first.r#ref), None, None)
            .map_err(status)?;
        // The writer is this stream's alone (kist locks the ref), so its
        // state changes only here: read again after each change, not per
        // message.
        let current = writer.status().map_err(status)?;
        Ok(Self {
            store: store.clone(),
            writer: Some(writer),
            current,
            total: first.total,
            expected,
        })
    }

    fn writer(&mut self) -> &mut kist::Writer {
        self.writer.as_mut().expect("a session ends at its commit")
    }

    /// Handles one message: its answer, and whether the stream is done
    /// (committed).
    fn handle(&mut self, req: WriteContentRequest) -> Result<(WriteContentResponse, bool), Status> {
        if req.total > 0 {
            self.total = req.total;
        }
        if !req.expected.is_empty() {
            self.expected = req.expected.clone();
        }
        let action = WriteAction::try_from(req.action)
            .map_err(|_| Status::invalid_argument("unknown write action"))?;
        if action != WriteAction::Stat {
            let offset = self.current.offset;
            if req.offset > 0 && req.offset as u64 != offset {
                return Err(Status::out_of_range(format!(
                    "write at {} must happen at the current offset {offset}",
                    req.offset
                )));
            }
            let truncate = req.offset == 0 && offset > 0;
            if truncate {
                self.writer().truncate(0).map_err(status)?;
            }
            if !req.data.is_empty() {
                self.writer().write_all(&req.data).map_err(status)?;
            }
            if truncate || !req.data.is_empty() {
                self.current = self.writer().status().map_err(status)?;
            }
        }
        if action != WriteAction::Commit {
            let answer = response(action, &self.current, self.total, String::new());
            return Ok((answer, false));
        }
        let digest = self.commit(req.labels)?;
        let answer = response(action, &self.current, self.current.offset as i64, digest);
        Ok((answer, true))
    }

    /// Commits with `labels`; the digest.
    fn commit(
        &mut self,
        labels: std::collections::HashMap<String, String>,
    ) -> Result<String, Status> {
        let mut labels: Vec<(String, String)> = labels.into_iter().collect();
        labels.sort();
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let size = (self.total > 0).then_some(self.total as u64);
        let expected = self.expected.clone();
        let want = (!expected.is_empty()).then_some(expected.as_str());
        let actual = match want {
            Some(d) => d.to_owned(),
            None => self.writer().digest().map_err(status)?,
        };
        // The session ends with the commit, whatever its outcome.
        let writer = self.writer.take().expect("a session ends at its commit");
        match writer.commit(size, want, &labels) {
            Ok(d) => Ok(d),
            // Stored already (by kist, or an earlier try): containerd reads
            // the digest from this answer, so it is a success, and
            // containerd holds the blob from now on.
            Err(kist::Error::AlreadyExists) => {
                self.store.hold(&actual).map_err(status)?;
                Ok(actual)
            }
            Err(e) => Err(status(e)),
        }
    }
}
