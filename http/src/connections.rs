//! Accepting connections through the admission layer (`kist-admission`):
//! each connection and each body is admitted within per-client and total
//! budgets, timed by the bytes that cross its socket, and cut when it is
//! slower than the minimum rate; hyper's HTTP/1 server on each connection
//! with a header deadline, and a graceful shutdown with a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kist_admission::{Admission, Admitted, Client, Connection};

use crate::tls::Tls;

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// How the server treats its clients. `Config::default()` is what
/// `kist serve` uses; budgets, rates and stalls are the admission's
/// ([`kist_admission::Limits`]).
#[derive(Clone, Debug)]
pub struct Config {
    /// Longest wait for a request's headers, which also closes a
    /// keep-alive connection idle this long (default 30 s).
    pub header_timeout: Duration,
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
            header_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// A connection and who it is from, as handed to the TLS task and back.
type Accepted = (Box<dyn Io>, SocketAddr, Arc<Connection>);

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and lets requests in flight finish for up to
/// `config.shutdown_timeout` or until `force` completes (a second signal),
/// whichever comes first; what is left is cut. Every connection and body
/// goes through `admission` (shared with the process's other servers, so
/// their budgets are one).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: &Config,
    admission: &Arc<Admission>,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    // TLS handshakes run in their own tasks and come back here when done.
    let (handshaken, mut ready) = tokio::sync::mpsc::channel::<Accepted>(64);
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
            Some((io, peer, conn)) = ready.recv() => {
                serve_one(io, peer, conn, &router, config, &graceful);
                continue;
            }
            () = &mut shutdown => break,
        };
        let conn = match admission.connect(Client::from_ip(peer.ip())) {
            Ok(conn) => Arc::new(conn),
            Err(refused) => {
                tracing::debug!("refused a connection from {peer}: {refused}");
                continue; // dropped: closed at once
            }
        };
        let _ = tcp.set_nodelay(true);
        // Timed by the admission: a body that moves too slowly, or a client
        // that stops reading, is cut through its stream.
        let io = Admitted::new(tcp, Arc::clone(&conn));
        match &config.tls {
            None => serve_one(Box::new(io), peer, conn, &router, config, &graceful),
            Some(tls) => {
                let (acceptor, handshaken) = (tls.0.clone(), handshaken.clone());
                let deadline = config.header_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(deadline, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            let _ = handshaken.send((Box::new(stream), peer, conn)).await;
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

/// Serves HTTP/1 on one connection until it closes, its admission cuts
/// it, or a shutdown ends it.
fn serve_one(
    io: Box<dyn Io>,
    peer: SocketAddr,
    conn: Arc<Connection>,
    router: &Router,
    config: &Config,
    graceful: &GracefulShutdown,
) {
    let service = TowerToHyperService::new(router.clone().layer(axum::Extension(conn)));
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
