//! containerd's content testsuite (content/testsuite) cases, in Rust, run
//! with the `containerd-client` crate against `kist serve --containerd`'s
//! socket: what containerd's proxy content store does over gRPC.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{
    AbortRequest, InfoRequest, ReadContentRequest, StatusRequest, UpdateRequest, WriteAction,
    WriteContentRequest, WriteContentResponse,
};
use kist_tests::containerd::KistSocket;
use kist_tests::{Harness, bytes, open_embedded, sha256};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

/// One Write stream: messages in, answers out, as containerd's proxy
/// writer drives it (it sends the offset it last heard with every write
/// and the commit).
struct Writer {
    tx: mpsc::Sender<WriteContentRequest>,
    rx: tonic::Streaming<WriteContentResponse>,
    offset: i64,
}

impl Writer {
    /// Opens a writer, retrying while the ref is still locked by a stream
    /// that is closing, as containerd's `content.OpenWriter` does.
    async fn open(
        client: &mut ContentClient<Channel>,
        reference: &str,
        total: i64,
        expected: &str,
    ) -> Result<(Self, WriteContentResponse), tonic::Status> {
        let start = Instant::now();
        loop {
            match Self::try_open(client, reference, total, expected).await {
                Err(e)
                    if e.code() == Code::Unavailable
                        && start.elapsed() < Duration::from_secs(5) =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_open(
        client: &mut ContentClient<Channel>,
        reference: &str,
        total: i64,
        expected: &str,
    ) -> Result<(Self, WriteContentResponse), tonic::Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.into(),
            total,
            expected: expected.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut rx = client.write(ReceiverStream::new(rx)).await?.into_inner();
        let first = rx.next().await.expect("an answer")?;
        let offset = first.offset;
        Ok((Self { tx, rx, offset }, first))
    }

    async fn send(
        &mut self,
        req: WriteContentRequest,
    ) -> Result<WriteContentResponse, tonic::Status> {
        self.tx.send(req).await.unwrap();
        let answer = self
            .rx
            .next()
            .await
            .unwrap_or_else(|| Err(tonic::Status::unknown("stream ended")))?;
        self.offset = answer.offset;
        Ok(answer)
    }

    async fn write(
        &mut self,
        offset: i64,
        data: &[u8],
    ) -> Result<WriteContentResponse, tonic::Status> {
        self.send(WriteContentRequest {
            action: WriteAction::Write as i32,
            offset,
            data: data.to_vec(),
            ..Default::default()
        })
        .await
    }

    async fn commit(
        &mut self,
        total: i64,
        expected: &str,
        labels: HashMap<String, String>,
    ) -> Result<WriteContentResponse, tonic::Status> {
        self.send(WriteContentRequest {
            action: WriteAction::Commit as i32,
            offset: self.offset,
            total,
            expected: expected.into(),
            labels,
            ..Default::default()
        })
        .await
    }
}

/// What Info says of `digest`.
async fn info(
    client: &mut ContentClient<Channel>,
    digest: &str,
) -> containerd_client::services::v1::Info {
    let request = InfoRequest {
        digest: digest.into(),
    };
    client
        .info(request)
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
}

async fn read_all(client: &mut ContentClient<Channel>, digest: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = client
        .read(ReadContentRequest {
            digest: digest.into(),
            offset: 0,
            size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(chunk) = stream.next().await {
        out.extend(chunk.unwrap().data);
    }
    out
}

/// Runs `case` against a fresh socket.
fn run<F: std::future::Future<Output = ()>>(case: impl FnOnce(ContentClient<Channel>) -> F) {
    let h = Harness::new(open_embedded);
    let socket = KistSocket::start(&h);
    on_socket(&socket, |channel| {
        case(ContentClient::new(channel).max_decoding_message_size(16 << 20))
    });
}

/// Runs `case` with a channel to `socket` on a runtime of its own, closed
/// when it returns (the library's calls may not run inside it: a case
/// that needs them makes them on another thread).
pub(crate) fn on_socket<F: std::future::Future<Output = ()>>(
    socket: &KistSocket,
    case: impl FnOnce(Channel) -> F,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = containerd_client::connect(&socket.socket).await.unwrap();
        case(channel).await;
    });
}

#[test]
fn writer() {
    run(|mut c| async move {
        let data = bytes(3 << 20, 1);
        let d = sha256(&data);
        let (mut w, first) = Writer::open(&mut c, "ns/1/writer", data.len() as i64, "")
            .await
            .unwrap();
        assert_eq!(first.offset, 0);
        let mut at = 0;
        for chunk in data.chunks(1 << 20) {
            let r = w.write(at, chunk).await.unwrap();
            at += chunk.len() as i64;
            assert_eq!(r.offset, at);
        }
        let done = w
            .commit(data.len() as i64, &d, HashMap::new())
            .await
            .unwrap();
        assert_eq!(
            (done.digest.as_str(), done.offset),
            (d.as_str(), data.len() as i64)
        );
        let info = info(&mut c, &d).await;
        assert_eq!(info.size, data.len() as i64);
        assert_eq!(read_all(&mut c, &d).await, data);
        // Read at an offset, a size, and past the end.
        let part = c
            .read(ReadContentRequest {
                digest: d.clone(),
                offset: 100,
                size: 10,
            })
            .await
            .unwrap()
            .into_inner();
        let part: Vec<u8> = part
            .map(|r| r.unwrap().data)
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(part, &data[100..110]);
        let past = c
            .read(ReadContentRequest {
                digest: d,
                offset: 1 << 30,
                size: 0,
            })
            .await;
        assert_eq!(past.err().map(|e| e.code()), Some(Code::OutOfRange));
    });
}

#[test]
fn update_status() {
    run(|mut c| async move {
        let (mut w, first) = Writer::open(&mut c, "ns/1/status", 100, "").await.unwrap();
        let started = first.started_at;
        std::thread::sleep(Duration::from_millis(20));
        w.write(0, &[1; 50]).await.unwrap();
        let s = c
            .status(StatusRequest {
                r#ref: "ns/1/status".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!((s.offset, s.r#ref.as_str()), (50, "ns/1/status"));
        assert_eq!(s.started_at, started);
        assert!(
            s.updated_at.unwrap().nanos != started.unwrap().nanos,
            "updated moves"
        );
    });
}

#[test]
fn commit_exists() {
    run(|mut c| async move {
        let data = b"exists".to_vec();
        let d = sha256(&data);
        let (mut w, _) = Writer::open(&mut c, "ns/1/a", 0, "").await.unwrap();
        w.write(0, &data).await.unwrap();
        w.commit(data.len() as i64, &d, HashMap::new())
            .await
            .unwrap();
        // A writer declaring it: AlreadyExists at once.
        let again = Writer::open(&mut c, "ns/1/b", data.len() as i64, &d).await;
        assert_eq!(again.err().map(|e| e.code()), Some(Code::AlreadyExists));
        // One that did not declare it: the commit succeeds with its digest.
        let (mut w, _) = Writer::open(&mut c, "ns/1/c", 0, "").await.unwrap();
        w.write(0, &data).await.unwrap();
        assert_eq!(
            w.commit(data.len() as i64, "", HashMap::new())
                .await
                .unwrap()
                .digest,
            d
        );
    });
}

/// The resume cases: a writer that stops, then a new one on the same ref
/// that continues from the offset (or starts over at 0, or after abort).
#[test]
fn resume() {
    run(|mut c| async move {
        let data = bytes(2 << 20, 9);
        let d = sha256(&data);
        let half = data.len() / 2;
        // Continue from the offset (Resume*Copy*, ReaderAt, Seeker).
        {
            let (mut w, _) = Writer::open(&mut c, "ns/1/r", data.len() as i64, &d)
                .await
                .unwrap();
            w.write(0, &data[..half]).await.unwrap();
        }
        let (mut w, first) = Writer::open(&mut c, "ns/1/r", data.len() as i64, &d)
            .await
            .unwrap();
        assert_eq!(first.offset, half as i64, "resumes at the offset");
        // Writing at another offset than the current one is refused.
        let bad = w.write(7, b"x").await;
        assert_eq!(bad.err().map(|e| e.code()), Some(Code::OutOfRange));
        let (mut w, _) = Writer::open(&mut c, "ns/1/r", data.len() as i64, &d)
            .await
            .unwrap();
        w.write(half as i64, &data[half..]).await.unwrap();
        assert_eq!(
            w.commit(data.len() as i64, &d, HashMap::new())
                .await
                .unwrap()
                .digest,
            d
        );
        // Truncate: offset 0 starts over (ResumeTruncate).
        let other = bytes(1 << 20, 10);
        let od = sha256(&other);
        {
            let (mut w, _) = Writer::open(&mut c, "ns/1/t", 0, "").await.unwrap();
            w.write(0, &bytes(4096, 77)).await.unwrap();
        }
        let (mut w, first) = Writer::open(&mut c, "ns/1/t", 0, "").await.unwrap();
        assert_eq!(first.offset, 4096);
        assert_eq!(
            w.write(0, &other).await.unwrap().offset,
            other.len() as i64,
            "offset 0 truncates"
        );
        assert_eq!(
            w.commit(other.len() as i64, &od, HashMap::new())
                .await
                .unwrap()
                .digest,
            od
        );
        // Abort: the ingest is gone and a new writer starts at 0 (ResumeAbort).
        {
            let (mut w, _) = Writer::open(&mut c, "ns/1/x", 0, "").await.unwrap();
            w.write(0, b"partial").await.unwrap();
        }
        // The closed stream may still hold the ref for a moment.
        let start = Instant::now();
        while let Err(e) = c
            .abort(AbortRequest {
                r#ref: "ns/1/x".into(),
            })
            .await
        {
            assert!(
                e.code() == Code::Unavailable && start.elapsed() < Duration::from_secs(5),
                "{e}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let gone = c
            .status(StatusRequest {
                r#ref: "ns/1/x".into(),
            })
            .await;
        assert_eq!(gone.err().map(|e| e.code()), Some(Code::NotFound));
        let (_, first) = Writer::open(&mut c, "ns/1/x", 0, "").await.unwrap();
        assert_eq!(first.offset, 0);
        // Ambiguous: a second writer on a ref in use is refused (ResumeAmbiguous).
        let (_held, _) = Writer::open(&mut c, "ns/1/busy", 0, "").await.unwrap();
        let second = Writer::open(&mut c, "ns/1/busy", 0, "").await;
        assert_eq!(second.err().map(|e| e.code()), Some(Code::Unavailable));
    });
}

#[test]
fn small_blob() {
    run(|mut c| async move {
        let d = sha256(b"A");
        let (mut w, _) = Writer::open(&mut c, "ns/1/small", 1, &d).await.unwrap();
        // The data comes with the commit, as containerd's WriteBlob sends it.
        let done = w
            .send(WriteContentRequest {
                action: WriteAction::Commit as i32,
                offset: 0,
                data: b"A".to_vec(),
                total: 1,
                expected: d.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(done.digest, d);
        assert_eq!(read_all(&mut c, &d).await, b"A");
    });
}

#[test]
fn labels() {
    run(|mut c| async move {
        let data = b"labelled".to_vec();
        let d = sha256(&data);
        let labels = HashMap::from([("name".to_owned(), "one".to_owned())]);
        let (mut w, _) = Writer::open(&mut c, "ns/1/l", 0, "").await.unwrap();
        w.write(0, &data).await.unwrap();
        w.commit(data.len() as i64, &d, labels.clone())
            .await
            .unwrap();
        let info = info(&mut c, &d).await;
        assert_eq!(info.labels, labels);
        let mut changed = info.clone();
        changed.labels = HashMap::from([
            ("name".to_owned(), "two".to_owned()),
            ("extra".to_owned(), "x".to_owned()),
        ]);
        let updated = c
            .update(UpdateRequest {
                info: Some(changed),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels.name".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .info
            .unwrap();
        assert_eq!(
            updated.labels,
            HashMap::from([("name".to_owned(), "two".to_owned())])
        );
    });
}

#[test]
fn commit_error_state() {
    run(|mut c| async move {
        let data = b"right bytes".to_vec();
        let d = sha256(&data);
        let (mut w, _) = Writer::open(&mut c, "ns/1/e", 0, "").await.unwrap();
        w.write(0, &data).await.unwrap();
        let wrong = w
            .commit(data.len() as i64, &sha256(b"other"), HashMap::new())
            .await;
        assert_eq!(
            wrong.err().map(|e| e.code()),
            Some(Code::FailedPrecondition)
        );
        let wrong_size = Writer::open(&mut c, "ns/1/e", 0, "")
            .await
            .unwrap()
            .0
            .commit(3, "", HashMap::new())
            .await;
        assert_eq!(
            wrong_size.err().map(|e| e.code()),
            Some(Code::FailedPrecondition)
        );
        // The ingest is kept: a right commit still works.
        let (mut w, first) = Writer::open(&mut c, "ns/1/e", 0, "").await.unwrap();
        assert_eq!(first.offset, data.len() as i64);
        assert_eq!(
            w.commit(data.len() as i64, &d, HashMap::new())
                .await
                .unwrap()
                .digest,
            d
        );
        // A first message without a ref is refused.
        let (tx, rx) = mpsc::channel(1);
        tx.send(WriteContentRequest::default()).await.unwrap();
        let mut out = c.write(ReceiverStream::new(rx)).await.unwrap().into_inner();
        assert_eq!(
            out.next().await.unwrap().err().map(|e| e.code()),
            Some(Code::InvalidArgument)
        );
    });
}
