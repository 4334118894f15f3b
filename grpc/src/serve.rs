//! The unix socket: created mode 0600 (or group-accessible), a stale one
//! replaced only if nothing answers on it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::api::containerd::services::content::v1::content_server::ContentServer;
use crate::api::containerd::services::snapshots::v1::snapshots_server::SnapshotsServer;

/// containerd sends up to 16 MiB per message (tonic's default is 4 MiB).
const MAX_MESSAGE: usize = 16 << 20;

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
/// listens on the path already.
pub fn bind(options: &SocketOptions) -> std::io::Result<Socket> {
    let path: &Path = &options.path;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: something listens on it already", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    let mode = if options.group.is_some() {
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = options.group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))?;
    }
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let Socket { listener, path } = socket;
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
        .add_service(content)
        .add_service(snapshots)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stopped(stopping.clone()));
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
