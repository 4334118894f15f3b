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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            bodies_per_client: 64,
            bodies: 1024,
            shutdown_timeout: Duration::from_secs(10),
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
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        // No read timeout here: hyper keeps a read pending during a whole
        // response to notice a client hanging up, which must not count as
        // a stall.
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(config.stall_timeout));
        let service = TowerToHyperService::new(with_client(router.clone(), peer, &bodies));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .serve_connection(TokioIo::new(Box::pin(io)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
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

/// `router` with what its handlers learn about the connection: the
/// client's address and the server's body limits.
fn with_client(router: Router, peer: SocketAddr, bodies: &Arc<Bodies>) -> Router {
    router
        .layer(axum::Extension(ConnectInfo(peer)))
        .layer(axum::Extension(Arc::clone(bodies)))
}
