//! A pull-through mirror (`kist serve --mirror UPSTREAM`): `/v2/` served
//! from the store, and what it lacks fetched from the upstream, verified
//! and stored by the component as if pushed (a manifest with
//! `cache-manifest`, a blob through an upload the component commits only
//! with the digest asked for).
//!
//! Better than distribution's proxy:
//! - one download per missing blob however many clients ask for it at
//!   once: every client streams from the upload as it fills (the
//!   component's `read-upload`), none waits for the end;
//! - a download cut midway resumes with a `Range` from where it stopped;
//! - one fetch per missing or stale manifest too (Docker Hub counts
//!   manifest pulls against its rate limit);
//! - a tag is revalidated after the TTL with a `HEAD` (its
//!   `Docker-Content-Digest`), and served stale, with a `Warning` header,
//!   when the upstream cannot be reached.
//!
//! The fill runs on its own, not in a client's request: a client that
//! leaves does not cut it for the others.
//!
//! What the mirror stores is a cache: its tags keep nothing, and a
//! manifest is kept for `keep` after a client last used it (renewed at
//! most every eighth of that), then evicted with what only it reaches as
//! the store's retention evicts cached content.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use kist::{Error, RegistryError, Store};
use kist_admission::Transfer;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;

use super::blocking;
use super::errors::{Failure, Reply};
use super::manifests::MAX_MANIFEST;
use super::upstream::{Failed, MANIFEST_TYPES, Upstream};
use crate::client::Client;

/// Bytes one fill step reads from the upstream, and one client read.
const CHUNK: usize = 1 << 20;
/// Chunks a fill keeps in memory for the clients following it, so those
/// that keep up never read back from the store.
const RECENT: usize = 8;
/// How often a fill another process runs is looked at.
const FOLLOW_POLL: Duration = Duration::from_millis(20);
/// What a fill holds in memory: its chunk and the recent ones.
const FILL_MEMORY: u64 = ((RECENT + 1) * CHUNK) as u64;
/// Tries in a row that bring no byte before a fill gives up.
const TRIES: u32 = 3;
/// Manifests whose last keep the mirror remembers before it forgets those
/// due again anyway.
const KEPT_REMEMBERED: usize = 4096;
/// The `Warning` of a manifest served stale.
const STALE: &str = "110 kist \"Response is Stale: the upstream could not be reached\"";

/// A mirror of one upstream registry.
pub struct Mirror {
    upstream: Upstream,
    /// How long a tag is served without asking the upstream again.
    ttl: Duration,
    /// How long a manifest is kept after a client last used it.
    keep: Duration,
    /// When each `(repository, digest)` was last kept for `keep`.
    kept: Mutex<HashMap<(String, String), Instant>>,
    /// Whether pushes, tag moves and deletes are accepted besides.
    pub allow_push: bool,
    /// When each `(repository, tag)` was last checked upstream.
    checked: Mutex<HashMap<(String, String), Instant>>,
    /// Where refreshes of each `(repository, reference)` take turns.
    gates: Mutex<HashMap<(String, String), Gate>>,
    /// Blobs being fetched, by `repository@digest`.
    fills: Mutex<HashMap<String, (watch::Receiver<Fill>, Recent)>>,
}

/// Where the refreshes of one manifest take turns.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// The last chunks a fill wrote, by offset.
type Recent = Arc<Mutex<std::collections::VecDeque<(u64, Bytes)>>>;

/// How the store has a manifest a client asked for.
enum Local {
    /// As it may be served: by digest, or a tag checked within the TTL.
    Fresh,
    /// A tag whose TTL ran out, pointing at this digest.
    Stale(String),
    /// Not at all.
    Missing,
}

/// How a blob's fill stands.
#[derive(Clone, Debug)]
enum Fill {
    /// Downloading: bytes written so far, and the whole size once the
    /// upstream said it.
    Running { written: u64, size: Option<u64> },
    /// Stored, verified: the blob.
    Done { size: u64 },
    /// Given up: why, and whether the upstream lacks the blob.
    Failed { why: String, unknown: bool },
}

impl Mirror {
    /// A mirror of `upstream` revalidating tags after `ttl` and keeping
    /// manifests for `keep` after their last use.
    pub fn new(upstream: Upstream, ttl: Duration, keep: Duration, allow_push: bool) -> Self {
        Self {
            upstream,
            ttl,
            keep,
            kept: Mutex::default(),
            gates: Mutex::default(),
            allow_push,
            checked: Mutex::default(),
            fills: Mutex::default(),
        }
    }

    /// The upstream's base URL.
    pub fn upstream(&self) -> &str {
        self.upstream.base()
    }

    /// Makes the manifest `reference` of `repository` current in the
    /// store before `client` reads it: fetched if missing, revalidated if
    /// a tag's TTL ran out. `Some(warning)` when it is served stale.
    /// `client`'s right to pull is checked (by the component) first, so
    /// nobody makes the mirror fetch what they may not read.
    pub async fn manifest(
        self: &Arc<Self>,
        server: &Store,
        client: &Store,
        repository: &str,
        reference: &str,
    ) -> Result<Option<&'static str>, Failure> {
        let key = (repository.to_owned(), reference.to_owned());
        if let Local::Fresh = self.local(server, client, &key).await? {
            return Ok(None);
        }
        // One refresh at a time per manifest: the requests that come
        // meanwhile wait for it and find the manifest fresh, so an
        // upstream that counts manifest pulls (Docker Hub's rate limit)
        // sees one.
        let gate = self.gate(&key);
        let _turn = gate.lock().await;
        let have = match self.local(server, client, &key).await? {
            Local::Fresh => return Ok(None),
            Local::Stale(digest) => Some(digest),
            Local::Missing => None,
        };
        let by_digest = reference.contains(':');
        let (this, fetching) = (self.clone(), server.clone());
        let (name, r, had) = (repository.to_owned(), reference.to_owned(), have.clone());
        let refreshed =
            tokio::task::spawn_blocking(move || this.refresh(&fetching, &name, &r, had))
                .await
                .unwrap_or_else(|e| Err(Refresh::Store(Error::Component(e.to_string()))));
        match refreshed {
            Ok(current) => {
                self.used(server, repository, &current);
                if !by_digest {
                    self.checked
                        .lock()
                        .expect("checked")
                        .insert(key, Instant::now());
                }
                Ok(None)
            }
            Err(Refresh::Store(e)) => Err(e.into()),
            Err(Refresh::Upstream(Failed::Status(404))) => Err(Failure::new(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                format!(
                    "{} has no manifest {reference} in {repository}",
                    self.upstream()
                ),
            )),
            Err(Refresh::Upstream(_)) if have.is_some() => Ok(Some(STALE)),
            Err(Refresh::Upstream(e)) => Err(unavailable(&e)),
        }
    }

    /// How the store has the manifest `(repository, reference)` for
    /// `client`; one it may serve as it is counts as used.
    async fn local(
        &self,
        server: &Store,
        client: &Store,
        (repository, reference): &(String, String),
    ) -> Result<Local, Failure> {
        let (store, name, r) = (client.clone(), repository.clone(), reference.clone());
        match blocking::run(move || store.registry().get_manifest(&name, &r)).await {
            Ok(m) => {
                let fresh = reference.contains(':')
                    || self
                        .checked
                        .lock()
                        .expect("checked")
                        .get(&(repository.clone(), reference.clone()))
                        .is_some_and(|at| at.elapsed() < self.ttl);
                if !fresh {
                    return Ok(Local::Stale(m.digest));
                }
                self.used(server, repository, &m.digest);
                Ok(Local::Fresh)
            }
            Err(f) if f.is_unknown() => Ok(Local::Missing),
            Err(f) => Err(f),
        }
    }

    /// The gate refreshes of the manifest `key` take turns at; gates no
    /// request holds are dropped.
    fn gate(&self, key: &(String, String)) -> Gate {
        let mut gates = self.gates.lock().expect("gates");
        gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        gates.entry(key.clone()).or_default().clone()
    }

    /// Notes that a client used the manifest `digest` of `repository`:
    /// it is kept for `keep` from now, written to the store at most every
    /// eighth of `keep` and off the request's path.
    fn used(&self, server: &Store, repository: &str, digest: &str) {
        let every = self.keep / 8;
        {
            let mut kept = self.kept.lock().expect("kept");
            let key = (repository.to_owned(), digest.to_owned());
            if self.keep.is_zero() || kept.get(&key).is_some_and(|at| at.elapsed() < every) {
                return;
            }
            if kept.len() >= KEPT_REMEMBERED {
                kept.retain(|_, at| at.elapsed() < every);
            }
            kept.insert(key, Instant::now());
        }
        let (server, keep) = (server.clone(), self.keep);
        let (repository, digest) = (repository.to_owned(), digest.to_owned());
        tokio::task::spawn_blocking(move || {
            match server.registry().keep_manifest(&repository, &digest, keep) {
                Ok(()) | Err(Error::Registry(RegistryError::ManifestUnknown)) => {}
                Err(e) => tracing::warn!("mirror: keeping {repository}@{digest}: {e}"),
            }
        });
    }

    /// Fetches the manifest `reference` of `repository` into the store,
    /// unless the upstream's digest for it is `have` already; the digest
    /// it has now.
    fn refresh(
        &self,
        server: &Store,
        repository: &str,
        reference: &str,
        have: Option<String>,
    ) -> Result<String, Refresh> {
        let path = |r: &str| format!("{repository}/manifests/{r}");
        let mut by = reference.to_owned();
        if have.is_some() {
            let head = self
                .upstream
                .request("HEAD", &path(reference), &MANIFEST_TYPES, 0)?;
            if let Some(digest) = head.header("docker-content-digest") {
                if have.as_deref() == Some(digest) {
                    return Ok(digest.to_owned());
                }
                by = digest.to_owned();
            }
        }
        let response = self
            .upstream
            .request("GET", &path(reference), &MANIFEST_TYPES, 0)?;
        if let Some(digest) = response.header("docker-content-digest") {
            by = digest.to_owned(); // the component checks the bytes have it
        }
        let media_type = response
            .header("content-type")
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_owned())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(response.into_reader(), MAX_MANIFEST as u64 + 1),
            &mut bytes,
        )
        .map_err(|e| Refresh::Upstream(Failed::Unreachable(e.to_string())))?;
        if bytes.len() > MAX_MANIFEST {
            return Err(Refresh::Store(Error::TooLarge(format!(
                "the upstream's manifest {reference} is over {MAX_MANIFEST} bytes"
            ))));
        }
        let tags: Vec<String> = (!reference.contains(':'))
            .then(|| reference.to_owned())
            .into_iter()
            .collect();
        let pushed = server.registry().cache_manifest(
            repository,
            &by,
            &media_type,
            &bytes,
            &tags,
            self.keep,
        )?;
        self.kept.lock().expect("kept").insert(
            (repository.to_owned(), pushed.digest.clone()),
            Instant::now(),
        );
        Ok(pushed.digest)
    }

    /// The blob `digest` of `repository`, which the store lacks: fetched
    /// once however many ask, each streaming it as it arrives. `client`
    /// may pull from `repository` (the component said so when it
    /// answered that the blob is unknown).
    pub async fn blob(
        self: &Arc<Self>,
        server: &Store,
        repository: &str,
        digest: &str,
        method: &Method,
        client: &Client,
    ) -> Reply {
        let (mut fill, recent) = self.fill(server, client, repository, digest)?;
        let size = until(&mut fill, |state| match state {
            Fill::Running { size, .. } => *size,
            Fill::Done { size } => Some(*size),
            Fill::Failed { .. } => None,
        })
        .await?;
        let response = Response::builder()
            .status(StatusCode::OK)
            .header("Docker-Content-Digest", digest)
            .header(header::ETAG, format!("\"{digest}\""))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size);
        if method == Method::HEAD {
            return Ok(response.body(Body::empty()).expect("valid response"));
        }
        let transfer = client
            .transfer(crate::body::STREAM_MEMORY)
            .map_err(super::too_many)?;
        let body = follow(
            server.clone(),
            repository.to_owned(),
            digest.to_owned(),
            (fill, recent),
            size,
            transfer,
        );
        Ok(response.body(body).expect("valid response"))
    }

    /// Waits until the blob `digest` of `repository` is stored, fetching
    /// it (for `client`) if no fill is running.
    pub async fn stored(
        self: &Arc<Self>,
        server: &Store,
        client: &Client,
        repository: &str,
        digest: &str,
    ) -> Result<(), Failure> {
        let (mut fill, _) = self.fill(server, client, repository, digest)?;
        until(&mut fill, |state| {
            matches!(state, Fill::Done { .. }).then_some(())
        })
        .await
    }

    /// The fill of `digest` into `repository`: the one running, or a new
    /// one that `client` started. A new fill is admitted as a transfer of
    /// `client` holding [`FILL_MEMORY`] (429 if it has too many), and
    /// stays counted against it until it ends, even after `client` left:
    /// no client starts fills without bound. It is timed by what the
    /// upstream sends, so one the upstream trickles is cut as a slow
    /// client would be.
    fn fill(
        self: &Arc<Self>,
        server: &Store,
        client: &Client,
        repository: &str,
        digest: &str,
    ) -> Result<(watch::Receiver<Fill>, Recent), Failure> {
        let key = format!("{repository}@{digest}");
        let mut fills = self.fills.lock().expect("fills");
        if let Some(running) = fills.get(&key) {
            return Ok(running.clone());
        }
        let pace = client.stream(FILL_MEMORY).map_err(super::too_many)?;
        let (tx, rx) = watch::channel(Fill::Running {
            written: 0,
            size: None,
        });
        let recent = Recent::default();
        fills.insert(key.clone(), (rx.clone(), recent.clone()));
        let kept = recent.clone();
        let (this, server) = (self.clone(), server.clone());
        let (repository, digest) = (repository.to_owned(), digest.to_owned());
        tokio::task::spawn_blocking(move || {
            let fill = (&tx, &kept, pace.as_ref());
            let end = match this.download(&server, &repository, &digest, fill) {
                Ok(size) => Fill::Done { size },
                Err(Refresh::Upstream(Failed::Status(404))) => Fill::Failed {
                    why: format!("{} has no blob {digest} in {repository}", this.upstream()),
                    unknown: true,
                },
                Err(e) => Fill::Failed {
                    why: e.to_string(),
                    unknown: false,
                },
            };
            if let Fill::Failed { why, .. } = &end {
                tracing::warn!("mirror: {repository}@{digest}: {why}");
            }
            // Out of the map first: whoever asks next starts afresh (or
            // finds the blob stored).
            this.fills
                .lock()
                .expect("fills")
                .remove(&format!("{repository}@{digest}"));
            let _ = tx.send(end);
        });
        Ok((rx, recent))
    }

    /// Downloads the blob into an upload of `repository` and commits it;
    /// its size. A download cut midway is asked again from where it
    /// stopped (`Range`), up to [`TRIES`] times in a row without a byte.
    fn download(
        &self,
        server: &Store,
        repository: &str,
        digest: &str,
        (progress, recent, pace): (&watch::Sender<Fill>, &Recent, Option<&Transfer>),
    ) -> Result<u64, Refresh> {
        let registry = server.registry();
        let id = upload_id(digest);
        let mut writer = loop {
            // What a crash left of an earlier fill starts over.
            let _ = registry.cancel_upload(repository, &id);
            match registry.open_upload(repository, &id, true) {
                Ok(writer) => break writer,
                // Another process on the store is filling it: this one
                // follows that fill, and takes over if it ends without
                // the blob.
                Err(Error::Unavailable) => {
                    let fill = (progress, pace);
                    if let Some(size) = self.follow_other(server, repository, digest, fill)? {
                        return Ok(size);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (mut written, mut size, mut tries) = (0u64, None::<u64>, 0);
        let mut buf = vec![0; CHUNK];
        loop {
            let path = format!("{repository}/blobs/{digest}");
            let response = match self.upstream.request("GET", &path, &[], written) {
                Ok(r) => r,
                Err(Failed::Unreachable(e)) if tries + 1 < TRIES => {
                    tries += 1;
                    tracing::warn!("mirror: {path} from {written}: {e}; trying again");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let length: Option<u64> = response
                .header("content-length")
                .and_then(|v| v.parse().ok());
            let mut skip = 0;
            match response.status() {
                206 => {
                    let total = response
                        .header("content-range")
                        .and_then(|r| r.rsplit_once('/'))
                        .and_then(|(_, t)| t.parse().ok());
                    size = size.or(total);
                }
                _ => {
                    size = size.or(length);
                    skip = written; // the range was not honoured
                }
            }
            let _ = progress.send(Fill::Running { written, size });
            let mut body = response.into_reader();
            let before = written;
            let cut = loop {
                let (n, ended) = fill_buffer(&mut body, &mut buf, pace);
                if pace.is_some_and(|p| p.cut().is_cancelled()) {
                    return Err(Refresh::Upstream(Failed::Unreachable(
                        "cut: the upstream sends slower than a client must read".to_owned(),
                    )));
                }
                if n == 0 {
                    break ended;
                }
                let dropped = skip.min(n as u64) as usize;
                skip -= dropped as u64;
                writer.write_all(&buf[dropped..n])?;
                {
                    let mut recent = recent.lock().expect("recent");
                    if recent.len() == RECENT {
                        recent.pop_front();
                    }
                    recent.push_back((written, Bytes::copy_from_slice(&buf[dropped..n])));
                }
                written += (n - dropped) as u64;
                let _ = progress.send(Fill::Running { written, size });
            };
            let complete = size.is_some_and(|s| written >= s);
            match cut {
                None if complete || size.is_none() => break,
                why => {
                    tries = if written > before { 0 } else { tries + 1 };
                    let why = why.unwrap_or_else(|| "the body ended early".to_owned());
                    if tries >= TRIES {
                        return Err(Refresh::Upstream(Failed::Unreachable(why)));
                    }
                    tracing::warn!("mirror: {path} cut at {written}: {why}; resuming with a range");
                }
            }
        }
        match writer.commit(Some(written), Some(digest), &[]) {
            Ok(_) | Err(Error::AlreadyExists) => Ok(written),
            Err(e) => {
                // Not what was asked for: nothing of it stays.
                let _ = registry.cancel_upload(repository, &id);
                Err(e.into())
            }
        }
    }

    /// Follows the fill of `digest` that another process on the store
    /// runs, telling `progress` (and `pace`) what its upload holds, until
    /// the blob is stored (its size) or the upload is gone without it
    /// (`None`). The size the clients are promised comes from the
    /// upstream (a `HEAD`).
    fn follow_other(
        &self,
        server: &Store,
        repository: &str,
        digest: &str,
        (progress, pace): (&watch::Sender<Fill>, Option<&Transfer>),
    ) -> Result<Option<u64>, Refresh> {
        let registry = server.registry();
        let head =
            self.upstream
                .request("HEAD", &format!("{repository}/blobs/{digest}"), &[], 0)?;
        let size = head.header("content-length").and_then(|v| v.parse().ok());
        let stored = || match registry.stat_blob(repository, digest) {
            Ok(size) => Ok(Some(size)),
            Err(Error::Registry(RegistryError::BlobUnknown)) => Ok(None),
            Err(e) => Err(Refresh::Store(e)),
        };
        let mut seen = 0;
        loop {
            if let Some(size) = stored()? {
                return Ok(Some(size));
            }
            match registry.upload_offset(repository, &upload_id(digest)) {
                Ok(written) => {
                    pace.inspect(|p| p.moved(written.saturating_sub(seen)));
                    seen = seen.max(written);
                    let _ = progress.send(Fill::Running { written, size });
                }
                Err(Error::Registry(RegistryError::BlobUploadUnknown)) => return stored(),
                Err(e) => return Err(e.into()),
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// Waits until `ready` picks a value from the fill's state: that value,
/// or why the fill failed (or stopped without saying).
async fn until<T>(
    fill: &mut watch::Receiver<Fill>,
    ready: impl Fn(&Fill) -> Option<T>,
) -> Result<T, Failure> {
    let state = fill
        .wait_for(|f| matches!(f, Fill::Failed { .. }) || ready(f).is_some())
        .await
        .map_err(|_| failed("the fill stopped", false))?
        .clone();
    match state {
        Fill::Failed { why, unknown } => Err(failed(&why, unknown)),
        state => Ok(ready(&state).expect("waited for it")),
    }
}

/// Reads `body` until `buf` is full or the body ends: the bytes read, and
/// why it stopped short if it broke off (`None`: full, or the end). A
/// socket hands over a few KiB per read; the store and the clients get
/// whole chunks, one component call each. Each read counts on `pace`,
/// and stops short once it is cut.
fn fill_buffer(
    body: &mut impl std::io::Read,
    buf: &mut [u8],
    pace: Option<&Transfer>,
) -> (usize, Option<String>) {
    let mut n = 0;
    while n < buf.len() {
        if pace.is_some_and(|p| p.cut().is_cancelled()) {
            return (n, Some("cut".to_owned()));
        }
        match body.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(got) => {
                n += got;
                pace.inspect(|p| p.moved(got as u64));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e.to_string())),
        }
    }
    (n, None)
}

/// The body of a blob being filled: every byte as soon as the fill has
/// written it (from the upload), then from the stored blob once it is
/// committed. Ends with an error, cutting the response, if the fill fails.
fn follow(
    server: Store,
    repository: String,
    digest: String,
    (mut fill, recent): (watch::Receiver<Fill>, Recent),
    size: u64,
    transfer: Option<kist_admission::Transfer>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    tokio::spawn(async move {
        let _transfer = transfer;
        let mut sent = 0u64;
        while sent < size {
            let state = fill.borrow_and_update().clone();
            let ready = match state {
                // The last byte only once the component checked the
                // digest: a client never gets a whole body that is not
                // the blob; a wrong one ends cut.
                Fill::Running { written, .. } => written.min(size - 1),
                Fill::Done { size } => size,
                Fill::Failed { why, .. } => {
                    let _ = tx.send(Err(std::io::Error::other(why))).await;
                    return;
                }
            };
            if sent >= ready {
                if fill.changed().await.is_err() && matches!(*fill.borrow(), Fill::Running { .. }) {
                    let _ = tx
                        .send(Err(std::io::Error::other("the fill stopped")))
                        .await;
                    return;
                }
                continue;
            }
            let want = (ready - sent).min(CHUNK as u64);
            let kept = recent
                .lock()
                .expect("recent")
                .iter()
                .find(|(at, b)| *at <= sent && sent < at + b.len() as u64)
                .map(|(at, b)| b.slice((sent - at) as usize..))
                .map(|b| b.slice(..b.len().min(want as usize)));
            let chunk = match kept {
                Some(bytes) => Ok(bytes),
                None => {
                    let (server, repository, digest) =
                        (server.clone(), repository.clone(), digest.clone());
                    let read =
                        blocking::spawn(move || read(&server, &repository, &digest, sent, want))
                            .await;
                    match read {
                        Ok(Ok(c)) if !c.is_empty() => Ok(Bytes::from(c)),
                        Ok(Ok(_)) => Err(std::io::Error::other("the blob ended early")),
                        Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    }
                }
            };
            let failed = chunk.is_err();
            sent += chunk.as_ref().map_or(0, |c| c.len() as u64);
            if tx.send(chunk).await.is_err() || failed {
                return; // the client left, or the read failed
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}

/// `len` bytes at `offset` of the blob being filled: from its upload, or
/// from the blob once committed.
fn read(
    server: &Store,
    repository: &str,
    digest: &str,
    offset: u64,
    len: u64,
) -> kist::Result<Vec<u8>> {
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    match server
        .registry()
        .read_upload(repository, &upload_id(digest), offset, len32)
    {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) | Err(Error::Registry(RegistryError::BlobUploadUnknown)) => {
            server.reader(digest)?.read_at(offset, len)
        }
        Err(e) => Err(e),
    }
}

/// The upload a fill of `digest` writes: one per blob, so a second fill of
/// it (another process's) finds the first busy instead of writing beside.
fn upload_id(digest: &str) -> String {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    format!("mirror-{algorithm}-{}", &hex[..hex.len().min(64)])
}

/// Why a refresh or fill failed: the upstream, or the store.
#[derive(Debug)]
enum Refresh {
    Upstream(Failed),
    Store(Error),
}

impl std::fmt::Display for Refresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refresh::Upstream(e) => write!(f, "{e}"),
            Refresh::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<Failed> for Refresh {
    fn from(e: Failed) -> Self {
        Refresh::Upstream(e)
    }
}

impl From<Error> for Refresh {
    fn from(e: Error) -> Self {
        Refresh::Store(e)
    }
}

/// The answer when the upstream cannot give what the store lacks.
fn unavailable(e: &Failed) -> Failure {
    Failure::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        e.to_string(),
    )
}

/// The answer to a blob whose fill failed.
fn failed(why: &str, unknown: bool) -> Failure {
    if unknown {
        Failure::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", why)
    } else {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", why)
    }
}
