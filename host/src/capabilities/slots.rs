//! Caps on what the guests of one store can hold at once (hashers, lock
//! guards, hashing threads). Without them a hostile or buggy component
//! could exhaust the host's file descriptors or threads, which no memory
//! limit or deadline would catch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many of one kind of resource are live, out of how many allowed.
pub(crate) struct Counter {
    live: AtomicUsize,
    max: usize,
}

impl Counter {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            live: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes a place, or `None` when all are taken.
    pub(crate) fn take(self: &Arc<Self>) -> Option<Slot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

/// A place taken from a [`Counter`], given back when dropped.
pub(crate) struct Slot(Arc<Counter>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}
