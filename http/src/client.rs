//! [`Client`]: who sent a request, as `connections::serve` tells the
//! handlers, and its place among the response bodies in flight.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::limits::{Bodies, Permit};

/// The client of a request. Outside [`serve`](crate::serve) (the router
/// mounted in another server) nothing is known and nothing is limited.
pub struct Client {
    addr: Option<SocketAddr>,
    bodies: Option<Arc<Bodies>>,
}

impl Client {
    /// A place for one more response body to this client: `Ok(None)` when
    /// nothing is limited, `Err(())` when it already has as many as
    /// allowed (answer 503).
    pub fn permit(&self) -> Result<Option<Permit>, ()> {
        match (&self.bodies, self.addr) {
            (Some(bodies), Some(addr)) => bodies.acquire(addr.ip()).map(Some).ok_or(()),
            _ => Ok(None),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            addr: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            bodies: parts.extensions.get::<Arc<Bodies>>().cloned(),
        })
    }
}
