//! containerd's Content service over the kist store, confined to the
//! `containerd` holder: the component shows containerd only what it holds
//! (or reaches), its own labels and its own ingests, and lets it change
//! nothing else. containerd's garbage collector deletes every blob and
//! aborts every ingest it lists and does not know; kist's other content
//! survives that because containerd never sees it. Ingests live under refs
//! prefixed `containerd/`, so its refs cannot collide with other holders'.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::containerd::services::content::v1::*;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::errors::{blocking, status};
use crate::serve::PeerInfo;
use crate::{HOLDER, timestamp};

/// Ingests of containerd live under this prefix in kist.
const REF_PREFIX: &str = "containerd/";
/// Bytes one Read response carries at most (containerd's gRPC limit is
/// 16 MiB; it asks for 32 KiB at a time anyway). Each message is copied
/// as it is encoded and buffered by HTTP/2 for a client slow to take it:
/// a small one keeps what a stalled stream holds small.
const READ_CHUNK: u64 = 256 << 10;

/// Readers kept open between Read calls: containerd reads a blob in
/// 32 KiB calls, each of which would otherwise open it again.
const OPEN_READERS: usize = 8;
/// How long an Info answered by the component may be answered again
/// without it while a kept reader of its blob is still checked: the proxy
/// asks Info before every 32 KiB Read, and each would cost a component
/// call. Another process's change to the blob's labels shows within this.
const INFO_SHOWN_FOR: Duration = Duration::from_secs(1);
/// Infos remembered at most (a few per kept reader).
const INFOS_REMEMBERED: usize = 8 * OPEN_READERS;
/// What a Read of more than one chunk holds in memory: the chunk read,
/// its encoded copy and what HTTP/2 buffers of it, with room to spare.
const READ_MEMORY: u64 = 4 * READ_CHUNK;
/// What a Write stream holds in memory: the message being decoded.
const WRITE_MEMORY: u64 = 16 << 20;

/// The service.
#[derive(Clone)]
pub struct Service {
    store: kist::Store,
    readers: Arc<Mutex<Vec<(String, kist::Reader)>>>,
    /// Infos the component answered lately, and when.
    infos: Arc<Mutex<HashMap<String, (Info, Instant)>>>,
}

impl Service {
    /// Serves the content of `store`, confined to the `containerd` holder.
    pub fn new(store: &kist::Store) -> Self {
        Self {
            store: store.confined_to(HOLDER),
            readers: Arc::default(),
            infos: Arc::default(),
        }
    }

    /// The Info of `digest` the component answered less than
    /// [`INFO_SHOWN_FOR`] ago, if a kept reader of that blob shows that
    /// nothing a caller may see changed since (its loan is not revoked,
    /// the blob not removed, its check not due).
    fn shown(&self, digest: &str) -> Option<Info> {
        let stands = self
            .readers
            .lock()
            .expect("readers lock")
            .iter()
            .any(|(d, r)| d == digest && r.check_stands());
        let infos = self.infos.lock().expect("infos lock");
        let (info, at) = infos.get(digest).filter(|_| stands)?;
        (at.elapsed() < INFO_SHOWN_FOR).then(|| info.clone())
    }

    /// Remembers the Info the component answered for `digest`; at most
    /// [`INFOS_REMEMBERED`], the ones too old to be shown again going first
    /// (only the blobs being read need them: a burst of Infos of many
    /// blobs starts over).
    fn remember(&self, digest: String, info: Info, at: Instant) {
        let mut infos = self.infos.lock().expect("infos lock");
        if infos.len() >= INFOS_REMEMBERED {
            infos.retain(|_, (_, at)| at.elapsed() < INFO_SHOWN_FOR);
        }
        if infos.len() >= INFOS_REMEMBERED {
            infos.clear();
        }
        infos.insert(digest, (info, at));
    }

    /// Forgets the Info of `digest` (this service changed or deleted it).
    fn forget(&self, digest: &str) {
        self.infos.lock().expect("infos lock").remove(digest);
    }

    /// The reader of `digest` kept from an earlier Read, if there is one.
    fn kept(&self, digest: &str) -> Option<kist::Reader> {
        let mut readers = self.readers.lock().expect("readers lock");
        let at = readers.iter().position(|(d, _)| d == digest);
        at.map(|i| readers.swap_remove(i).1)
    }

    /// Runs a short store call (an open reader's 32 KiB read) on this
    /// runtime thread, which tokio hands its other tasks away from
    /// meanwhile (`block_in_place`: wasmtime-wasi's synchronous bindings
    /// may not run on a plain runtime thread). Cheaper than the blocking
    /// pool for the thousands of small reads containerd makes.
    fn blocking_here<R>(&self, f: impl FnOnce(&Self) -> kist::Result<R>) -> Result<R, Status> {
        tokio::task::block_in_place(|| f(self)).map_err(status)
    }

    /// Keeps `reader` for the next Read of its blob (the oldest goes).
    fn keep(&self, digest: String, reader: kist::Reader) {
        let mut readers = self.readers.lock().expect("readers lock");
        if readers.len() == OPEN_READERS {
            readers.remove(0);
        }
        readers.push((digest, reader));
    }
}

fn info(i: kist::BlobInfo) -> Info {
    Info {
        digest: i.digest,
        size: i.size as i64,
        created_at: Some(timestamp(i.created_at)),
        updated_at: Some(timestamp(i.updated_at)),
        labels: i.labels.into_iter().map(|l| (l.key, l.value)).collect(),
    }
}

pub(crate) fn ingest_status(s: kist::IngestStatus) -> Status_ {
    Status_ {
        started_at: Some(timestamp(s.started_at)),
        updated_at: Some(timestamp(s.updated_at)),
        r#ref: s
            .ref_
            .strip_prefix(REF_PREFIX)
            .unwrap_or(&s.ref_)
            .to_owned(),
        offset: s.offset as i64,
        total: s.total.unwrap_or(0) as i64,
        expected: s.expected.unwrap_or_default(),
    }
}

/// containerd's status message (named `Status` in its API, like tonic's).
type Status_ = crate::api::containerd::services::content::v1::Status;

pub(crate) fn kist_ref(r: &str) -> String {
    format!("{REF_PREFIX}{r}")
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Admits a stream of a call on its connection, holding `memory` bytes;
/// `None` outside `serve` (nothing is limited). A refusal is
/// `ResourceExhausted`.
fn admit<T>(request: &Request<T>, memory: u64) -> Result<Option<kist_admission::Transfer>, Status> {
    request
        .extensions()
        .get::<PeerInfo>()
        .map(|peer| peer.0.stream(memory))
        .transpose()
        .map_err(|refused| Status::resource_exhausted(refused.to_string()))
}

#[tonic::async_trait]
impl content_server::Content for Service {
    async fn info(&self, r: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let digest = r.into_inner().digest;
        if let Some(info) = self.shown(&digest) {
            return Ok(Response::new(InfoResponse { info: Some(info) }));
        }
        let (store, d, asked) = (self.store.clone(), digest.clone(), Instant::now());
        // Under containerd's default `shared` policy an Info of a blob its
        // namespace lacks adopts that blob: containerd holds it from then on.
        let i = info(blocking(move || store.hold(&d)).await?);
        self.remember(digest, i.clone(), asked);
        Ok(Response::new(InfoResponse { info: Some(i) }))
    }

    async fn update(&self, r: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        let (store, r) = (self.store.clone(), r.into_inner());
        let given = r.info.ok_or_else(|| Status::invalid_argument("no info"))?;
        let (digest, asked) = (given.digest.clone(), Instant::now());
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let i = blocking(move || {
            let mut current = store.info(&given.digest)?;
            let mut labels: Vec<_> = given.labels.into_iter().collect();
            labels.sort();
            current.labels = labels
                .into_iter()
                .map(|(key, value)| kist::Label { key, value })
                .collect();
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            store.update(&current, &paths)
        })
        .await?;
        // What an Info answered before the update showed is stale.
        let i = info(i);
        self.remember(digest, i.clone(), asked);
        Ok(Response::new(UpdateResponse { info: Some(i) }))
    }

    type ListStream = Stream_<ListContentResponse>;

    async fn list(
        &self,
        r: Request<ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let (store, filters) = (self.store.clone(), r.into_inner().filters);
        let infos = blocking(move || {
            let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
            store.walk(&filters)?.collect::<kist::Result<Vec<_>>>()
        })
        .await?;
        let batches: Vec<_> = infos
            .chunks(100)
            .map(|c| {
                Ok(ListContentResponse {
                    info: c.iter().cloned().map(info).collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn delete(&self, r: Request<DeleteContentRequest>) -> Result<Response<()>, Status> {
        let (store, d) = (self.store.clone(), r.into_inner().digest);
        let deleted = blocking({
            let d = d.clone();
            move || store.delete(&d)
        })
        .await;
        self.forget(&d);
        deleted?;
        Ok(Response::new(()))
    }

    type ReadStream = Stream_<ReadContentResponse>;

    async fn read(
        &self,
        r: Request<ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let transfer = admit(&r, READ_MEMORY)?;
        let r = r.into_inner();
        let mut reader = match self.kept(&r.digest) {
            Some(reader) => reader,
            None => self.blocking_here(|service| service.store.reader(&r.digest))?,
        };
        let size = reader.size();
        let start = u64::try_from(r.offset).map_err(|_| Status::out_of_range("negative offset"))?;
        if start > size {
            return Err(Status::out_of_range(format!(
                "offset {start} is past the end ({size})"
            )));
        }
        let end = if r.size <= 0 {
            size
        } else {
            size.min(start.saturating_add(r.size as u64))
        };
        if end - start <= READ_CHUNK {
            // containerd reads 32 KiB at a time: one chunk, answered here
            // without a trip through another thread, and, when the read
            // needs no component call (a lent blob whose check is not
            // due: nearly every one), without handing this thread over.
            let read = match reader.read_at_lent(start, end - start) {
                Some(read) => read.map_err(status),
                None => self.blocking_here(|_| reader.read_at(start, end - start)),
            };
            let data = read?;
            self.keep(r.digest, reader);
            let message = ReadContentResponse {
                offset: start as i64,
                data,
            };
            return Ok(Response::new(Box::pin(tokio_stream::once(Ok(message)))));
        }
        // A chunk is read (on the blocking pool) only when the client has
        // taken the one before: nothing is read ahead for a client that
        // does not read, and no thread waits for it.
        struct Next {
            reader: Option<kist::Reader>,
            at: u64,
            transfer: Option<kist_admission::Transfer>,
        }
        let (service, digest) = (self.clone(), r.digest);
        let first = Next {
            reader: Some(reader),
            at: start,
            transfer,
        };
        let chunks = futures_util::stream::unfold(first, move |mut next| {
            let (service, digest) = (service.clone(), digest.clone());
            async move {
                let mut reader = next.reader.take()?;
                if next.at >= end {
                    service.keep(digest, reader);
                    return None;
                }
                let (at, len) = (next.at, READ_CHUNK.min(end - next.at));
                let (reader, data) = tokio::task::spawn_blocking(move || {
                    let data = reader.read_at(at, len);
                    (reader, data)
                })
                .await
                .ok()?;
                let message = match data {
                    Ok(data) => data,
                    Err(e) => return Some((Err(status(e)), next)),
                };
                if let Some(t) = &next.transfer {
                    t.moved(len);
                }
                next.reader = Some(reader);
                next.at += len;
                let message = ReadContentResponse {
                    offset: at as i64,
                    data: message,
                };
                Some((Ok(message), next))
            }
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn status(&self, r: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (store, reference) = (self.store.clone(), kist_ref(&r.into_inner().r#ref));
        let s = blocking(move || store.status(&reference)).await?;
        Ok(Response::new(StatusResponse {
            status: Some(ingest_status(s)),
        }))
    }

    async fn list_statuses(
        &self,
        r: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let (store, filters) = (self.store.clone(), r.into_inner().filters);
        let statuses = blocking(move || {
            let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
            store.list_statuses(&filters)
        })
        .await?;
        Ok(Response::new(ListStatusesResponse {
            statuses: statuses.into_iter().map(ingest_status).collect(),
        }))
    }

    type WriteStream = Stream_<WriteContentResponse>;

    async fn write(
        &self,
        r: Request<Streaming<WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let transfer = admit(&r, WRITE_MEMORY)?;
        let (out_tx, out_rx) = mpsc::channel(4);
        let store = self.store.clone();
        tokio::spawn(crate::write::session(
            store,
            r.into_inner(),
            out_tx,
            transfer,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn abort(&self, r: Request<AbortRequest>) -> Result<Response<()>, Status> {
        let (store, reference) = (self.store.clone(), kist_ref(&r.into_inner().r#ref));
        blocking(move || store.abort(&reference)).await?;
        Ok(Response::new(()))
    }
}
