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
        match self {
            Self::Sha256(h) => h.borrow_mut().update(&data),
            Self::Sha512(h) => h.borrow_mut().update(&data),
        }
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
