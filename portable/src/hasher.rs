//! `kist:content/hasher` with the `sha2` crate compiled to wasm. The state
//! it exports is sha2's serialised state, the same bytes kist's native host
//! exports, so an ingest started through one resumes through the other.

use std::cell::RefCell;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256, Sha512};

use crate::Component;
use crate::bindings::exports::kist::content::hasher::{Algorithm, Guest, GuestHasher, Hasher};
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorType};

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

    fn update_from_file(&self, file: &Descriptor, offset: u64, length: u64) -> Result<(), String> {
        let stat = file.stat().map_err(|e| e.message().to_owned())?;
        if stat.type_ != DescriptorType::RegularFile {
            return Err("not a regular file".into());
        }
        if offset.checked_add(length).is_none_or(|end| end > stat.size) {
            return Err(format!(
                "{length} bytes at {offset} are past the end of the file ({} bytes)",
                stat.size
            ));
        }
        // Read first, hash after: a failed read hashes nothing.
        let mut data = Vec::with_capacity(length as usize);
        while (data.len() as u64) < length {
            let at = offset + data.len() as u64;
            let want = (length - data.len() as u64).min(1 << 20);
            let (chunk, _) = file.read(want, at).map_err(|e| e.message().to_owned())?;
            if chunk.is_empty() {
                return Err(format!("the file ended at byte {at}"));
            }
            data.extend_from_slice(&chunk);
        }
        self.update(data);
        Ok(())
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
