//! `kist:content/hasher` with the `sha2` crate compiled to wasm. The state
//! it exports is sha2's serialised state, the same bytes kist's native host
//! exports, so an ingest started through one resumes through the other.

use std::cell::RefCell;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256, Sha512};

use crate::Component;
use crate::bindings::exports::kist::content::hasher::{Algorithm, Guest, GuestHasher, Hasher};

impl Guest for Component {
    type Hasher = Hash;
}

/// A running hash.
pub enum Hash {
    Sha256(RefCell<Sha256>),
    Sha512(RefCell<Sha512>),
}

impl Hash {
    /// Feeds `data` to the hash.
    pub fn feed(&self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.borrow_mut().update(data),
            Self::Sha512(h) => h.borrow_mut().update(data),
        }
    }

    /// A copy of the state, for [`Hash::reset_to`].
    pub fn snapshot(&self) -> Self {
        match self {
            Self::Sha256(h) => Self::Sha256(h.clone()),
            Self::Sha512(h) => Self::Sha512(h.clone()),
        }
    }

    /// Makes the state `earlier` again (a failed copy hashed part of its
    /// bytes).
    pub fn reset_to(&self, earlier: Self) {
        match (self, earlier) {
            (Self::Sha256(h), Self::Sha256(e)) => *h.borrow_mut() = e.into_inner(),
            (Self::Sha512(h), Self::Sha512(e)) => *h.borrow_mut() = e.into_inner(),
            _ => unreachable!("a snapshot has its hasher's algorithm"),
        }
    }
}

impl GuestHasher for Hash {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(RefCell::default()),
            Algorithm::Sha512 => Self::Sha512(RefCell::default()),
        }
    }

    fn restore(algorithm: Algorithm, state: Vec<u8>) -> Option<Hasher> {
        fn de<H: SerializableState>(state: &[u8]) -> Option<RefCell<H>> {
            H::deserialize(state.try_into().ok()?)
                .ok()
                .map(RefCell::new)
        }
        let hash = match algorithm {
            Algorithm::Sha256 => Self::Sha256(de(&state)?),
            Algorithm::Sha512 => Self::Sha512(de(&state)?),
        };
        Some(Hasher::new(hash))
    }

    fn update(&self, data: Vec<u8>) {
        self.feed(&data);
    }

    fn sum(&self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.borrow().clone().finalize().to_vec(),
            Self::Sha512(h) => h.borrow().clone().finalize().to_vec(),
        }
    }

    fn export_state(&self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.borrow().serialize().to_vec(),
            Self::Sha512(h) => h.borrow().serialize().to_vec(),
        }
    }
}
