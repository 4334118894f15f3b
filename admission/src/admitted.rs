//! A connection's byte stream as the server uses it once admitted: its
//! bytes counted on the connection's meter, and every read and write
//! failing once the connection is cut, so the server drops it whatever it
//! was waiting for (a client that does not read, or does not send).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::{Connection, Metered};

/// An admitted connection's stream; it holds the connection's place until
/// it is dropped.
pub struct Admitted<T> {
    inner: Metered<T>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    connection: Arc<Connection>,
}

impl<T> Admitted<T> {
    /// `inner`, the stream of `connection`.
    pub fn new(inner: T, connection: Arc<Connection>) -> Self {
        Self {
            inner: Metered::new(inner, Arc::clone(connection.meter())),
            cut: Box::pin(connection.cut().clone().cancelled_owned()),
            connection,
        }
    }

    /// The connection it belongs to (to admit transfers on).
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// An error once the connection is cut (and a wake-up when it is).
    fn check(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        self.cut.as_mut().poll(cx).is_ready().then(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "cut by the server's admission control",
            )
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Admitted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Admitted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
