//! [`Client`]: the connection a request came on, as `connections::serve`
//! tells the handlers, and the admission of its bodies.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use kist_admission::{Connection, Refused, Transfer};

/// The client of a request. Outside [`serve`](crate::serve) (the router
/// mounted in another server) nothing is known and nothing is limited.
pub struct Client {
    conn: Option<Arc<Connection>>,
}

impl Client {
    /// Admits a body on this client's connection that holds `memory`
    /// bytes of the server's memory; `Ok(None)` when nothing is limited.
    /// The transfer is the connection's (HTTP/1 serves one request at a
    /// time): it is timed by what crosses the socket, and cut with it.
    pub fn transfer(&self, memory: u64) -> Result<Option<Transfer>, Refused> {
        self.conn.as_ref().map(|c| c.transfer(memory)).transpose()
    }

    /// Admits work this client started that runs apart from its request
    /// (a mirror's fill) and holds `memory` bytes: counted against the
    /// client until the [`Transfer`] is dropped, timed by what is reported
    /// with [`Transfer::moved`]; `Ok(None)` when nothing is limited.
    pub fn stream(&self, memory: u64) -> Result<Option<Transfer>, Refused> {
        self.conn.as_ref().map(|c| c.stream(memory)).transpose()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            conn: parts.extensions.get::<Arc<Connection>>().cloned(),
        })
    }
}
