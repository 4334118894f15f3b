//! Accepting connections and keeping slow or stalled clients from holding
//! the server: hyper's HTTP/1 server on each connection with a header
//! deadline, reads and writes that must make progress, and a graceful
//! shutdown with a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_io_timeout::TimeoutStream;

use crate::limits::Bodies;
use crate::tls::Tls;

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// How the server treats its clients. `Config::default()` is what
/// `kist serve` uses.
#[derive(Clone, Debug)]
pub struct Config {
    /// A client that accepts no bytes of a response for this long is
    /// disconnected (default 30 s).
    pub stall_timeout: Duration,
    /// Longest wait for a request's headers, which also closes a
    /// keep-alive connection idle this long (default 30 s). Handlers
    /// that read request bodies bound each read themselves.
    pub header_timeout: Duration,
    /// Response bodies one client address may have in flight; more get
    /// `503 Service Unavailable` at once (default 64).
    pub bodies_per_client: usize,
    /// Response bodies in flight in all (default 1024).
    pub bodies: usize,
    /// How long a shutdown waits for requests in flight before it cuts
    /// them (default 10 s).
    pub shutdown_timeout: Duration,
    /// Serve HTTPS with this certificate (default: plain HTTP). A TLS
    /// handshake must finish within `header_timeout`.
    pub tls: Option<Tls>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            bodies_per_client: 64,
            bodies: 1024,
            shutdown_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and lets requests in flight finish for up to
/// `config.shutdown_timeout` or until `force` completes (a second signal),
/// whichever comes first; what is left is cut.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: &Config,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let bodies = Arc::new(Bodies::new(config.bodies, config.bodies_per_client));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    // TLS handshakes run in their own tasks and come back here when done.
    let (handshaken, mut ready) = tokio::sync::mpsc::channel::<(Box<dyn Io>, SocketAddr)>(64);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors, a connection reset before accept: the
                // listener itself is fine.
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some((io, peer)) = ready.recv() => {
                serve_one(io, peer, &router, config, &bodies, &graceful);
                continue;
            }
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        // No read timeout here: hyper keeps a read pending during a whole
        // response to notice a client hanging up, which must not count as
        // a stall.
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(config.stall_timeout));
        let io = Box::pin(io);
        match &config.tls {
            None => serve_one(Box::new(io), peer, &router, config, &bodies, &graceful),
            Some(tls) => {
                let (acceptor, handshaken) = (tls.0.clone(), handshaken.clone());
                let deadline = config.header_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(deadline, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            let _ = handshaken.send((Box::new(stream), peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(config.shutdown_timeout) => {
            tracing::warn!("shutdown timeout reached: cutting the requests still running");
        }
        () = force => tracing::warn!("second signal: cutting the requests still running"),
    }
    Ok(())
}

/// Serves HTTP/1 on one connection until it closes or a shutdown ends it.
fn serve_one(
    io: Box<dyn Io>,
    peer: SocketAddr,
    router: &Router,
    config: &Config,
    bodies: &Arc<Bodies>,
    graceful: &GracefulShutdown,
) {
    let service = TowerToHyperService::new(with_client(router.clone(), peer, bodies));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .serve_connection(TokioIo::new(io), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection from {peer}: {e}");
        }
    });
}

/// `router` with what its handlers learn about the connection: the
/// client's address and the server's body limits.
fn with_client(router: Router, peer: SocketAddr, bodies: &Arc<Bodies>) -> Router {
    router
        .layer(axum::Extension(ConnectInfo(peer)))
        .layer(axum::Extension(Arc::clone(bodies)))
}
