//! The unix socket: created mode 0600 (or group-accessible) in a private
//! umask, a stale socket replaced only if nothing answers on it (and
//! nothing else ever replaced), every connection admitted by the
//! process's admission layer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kist_admission::{Admission, Admitted, Client, Connection};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

use crate::api::containerd::services::content::v1::content_server::ContentServer;
use crate::api::containerd::services::snapshots::v1::snapshots_server::SnapshotsServer;

/// containerd sends up to 16 MiB per message (tonic's default is 4 MiB).
const MAX_MESSAGE: usize = 16 << 20;
/// Streams one connection may have open at once: with messages of up to
/// [`MAX_MESSAGE`], what bounds the memory one connection's decoding holds.
const MAX_STREAMS: u32 = 64;

/// Where and how the socket is made.
pub struct SocketOptions {
    /// The socket's path.
    pub path: PathBuf,
    /// A group that may connect too (mode 0660), else only the owner (0600).
    pub group: Option<u32>,
}

/// A bound socket, ready to serve.
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

/// Binds the socket (within a tokio runtime): fails at once if something
/// listens on the path already, or if the path is anything but a socket.
///
/// The socket is made in a private directory (mode 0700) beside the path,
/// given its mode there, and renamed into place: nobody can connect before
/// its mode is set, whatever the umask.
pub fn bind(options: &SocketOptions) -> std::io::Result<Socket> {
    use std::os::unix::fs::FileTypeExt;
    let path: &Path = &options.path;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{}: exists and is not a socket; not replacing it",
                    path.display()
                ),
            ));
        }
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: something listens on it already", path.display()),
            ));
        }
        Ok(_) => std::fs::remove_file(path)?, // a stale socket
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let private = tempfile::Builder::new()
        .prefix(".kist-socket-")
        .tempdir_in(parent)?;
    let made = private.path().join("socket");
    let listener = UnixListener::bind(&made)?;
    let mode = if options.group.is_some() {
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(&made, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = options.group {
        rustix::fs::chown(&made, None, Some(rustix::fs::Gid::from_raw(gid)))?;
    }
    std::fs::rename(&made, path)?;
    Ok(Socket {
        listener,
        path: path.to_path_buf(),
    })
}

/// Serves containerd's Content and Snapshots services for `store` on
/// `socket` until `shutdown` resolves, then lets calls in flight finish
/// for up to `grace` (a client that keeps its connection open does not
/// hold the server past it); removes the socket afterwards.
pub async fn serve(
    store: &kist::Store,
    socket: Socket,
    admission: &Arc<Admission>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let Socket { listener, path } = socket;
    // Every local connection is a client of its own: all of them may be
    // the same user (root), and containerd keeps one open for everything.
    let admission = Arc::clone(admission);
    let numbers = AtomicU64::new(0);
    let incoming = UnixListenerStream::new(listener).filter_map(move |accepted| {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => return Some(Err(e)),
        };
        let client = Client::Local(numbers.fetch_add(1, Ordering::Relaxed));
        match admission.connect(client) {
            Ok(conn) => Some(Ok(Peer(Admitted::new(stream, Arc::new(conn))))),
            Err(refused) => {
                tracing::debug!("containerd socket: refused a connection: {refused}");
                None
            }
        }
    });
    let content = ContentServer::new(crate::content::Service::new(store))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let snapshots = SnapshotsServer::new(crate::snapshots::Service::new(store))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS)
        .add_service(content)
        .add_service(snapshots)
        .serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
    let deadline = async {
        stopped(stopping).await;
        tokio::time::sleep(grace).await;
    };
    let served = tokio::select! {
        served = server => served.map_err(std::io::Error::other),
        () = deadline => {
            tracing::warn!("containerd socket: shutdown timeout reached, cutting the calls still open");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&path);
    served
}

/// An admitted connection on the socket, as tonic serves it: its calls
/// find the connection (to admit their streams on) in their extensions.
struct Peer(Admitted<UnixStream>);

/// What a call learns of its connection.
#[derive(Clone)]
pub(crate) struct PeerInfo(pub(crate) Arc<Connection>);

impl tonic::transport::server::Connected for Peer {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        PeerInfo(Arc::clone(self.0.connection()))
    }
}

impl tokio::io::AsyncRead for Peer {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Peer {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
