//! How many response bodies are in flight, per client address and in all:
//! a body that streams to a slow client holds a store reader (an instance
//! of the component) until it ends, so their number is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The bodies in flight.
pub struct Bodies {
    max: usize,
    per_client: usize,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One body in flight; dropping it (when the body ends, however) frees
/// its place.
pub struct Permit {
    bodies: Arc<Bodies>,
    client: IpAddr,
}

impl Bodies {
    /// At most `max` bodies in all and `per_client` for one address.
    pub fn new(max: usize, per_client: usize) -> Self {
        Self {
            max,
            per_client,
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    /// A place for one more body to `client`; `None` when it or the server
    /// has as many as allowed.
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Option<Permit> {
        let mut counts = self.counts.lock().expect("body counts lock");
        let (total, per) = &mut *counts;
        let mine = per.entry(client).or_default();
        if *total >= self.max || *mine >= self.per_client {
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Permit {
            bodies: Arc::clone(self),
            client,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.bodies.counts.lock().expect("body counts lock");
        let (total, per) = &mut *counts;
        *total -= 1;
        if let Some(mine) = per.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                per.remove(&self.client);
            }
        }
    }
}
