//! `kist:content/hasher`: sha256 and sha512 with the `sha2` crate, which
//! picks SHA-NI (or other CPU extensions) at run time.

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256, Sha512};
use wasmtime::component::Resource;

use super::CapabilitiesView;
use crate::bindings::kist::content::hasher::{Algorithm, Host, HostHasher};

/// A running hash, held in the resource table for the guest.
#[derive(Clone)]
pub enum HashState {
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-512.
    Sha512(Sha512),
}

impl HashState {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn sum(&self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.clone().finalize().to_vec(),
            Self::Sha512(h) => h.clone().finalize().to_vec(),
        }
    }

    fn export(&self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.serialize().to_vec(),
            Self::Sha512(h) => h.serialize().to_vec(),
        }
    }

    fn restore(algorithm: Algorithm, state: &[u8]) -> Option<Self> {
        fn de<H: SerializableState>(state: &[u8]) -> Option<H> {
            H::deserialize(state.try_into().ok()?).ok()
        }
        Some(match algorithm {
            Algorithm::Sha256 => Self::Sha256(de(state)?),
            Algorithm::Sha512 => Self::Sha512(de(state)?),
        })
    }
}

impl Host for CapabilitiesView<'_> {}

impl HostHasher for CapabilitiesView<'_> {
    fn new(&mut self, algorithm: Algorithm) -> wasmtime::Result<Resource<HashState>> {
        Ok(self.table.push(HashState::new(algorithm))?)
    }

    fn restore(
        &mut self,
        algorithm: Algorithm,
        state: Vec<u8>,
    ) -> wasmtime::Result<Option<Resource<HashState>>> {
        HashState::restore(algorithm, &state)
            .map(|h| self.table.push(h))
            .transpose()
            .map_err(Into::into)
    }

    fn update(&mut self, this: Resource<HashState>, data: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&this)?.update(&data);
        Ok(())
    }

    fn sum(&mut self, this: Resource<HashState>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&this)?.sum())
    }

    fn export_state(&mut self, this: Resource<HashState>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&this)?.export())
    }

    fn drop(&mut self, this: Resource<HashState>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
