//! `kist:content/patch`: per-file binary deltas with zstd (the C library,
//! which wasmtime's cache already links), the base loaded as a raw-content
//! dictionary: what `zstd --patch-from` does for files of this size.

use crate::bindings::kist::content::patch::{Host, PatchError};

use super::CapabilitiesView;

/// Largest base, target or result the host works on: bigger files travel
/// whole.
const MAX_INPUT: usize = 64 << 20;

impl Host for CapabilitiesView<'_> {
    fn make(
        &mut self,
        base: Vec<u8>,
        target: Vec<u8>,
        level: u8,
    ) -> wasmtime::Result<Result<Vec<u8>, PatchError>> {
        if base.len() > MAX_INPUT || target.len() > MAX_INPUT {
            return Ok(Err(too_large()));
        }
        let level = i32::from(level.clamp(1, 19));
        let made = zstd::bulk::Compressor::with_dictionary(level, &base)
            .and_then(|mut c| c.compress(&target));
        Ok(made.map_err(|e| PatchError::Unsupported(format!("zstd: {e}"))))
    }

    fn apply(
        &mut self,
        base: Vec<u8>,
        delta: Vec<u8>,
        max_size: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, PatchError>> {
        if base.len() > MAX_INPUT {
            return Ok(Err(too_large()));
        }
        let capacity = usize::try_from(max_size)
            .unwrap_or(usize::MAX)
            .min(MAX_INPUT);
        let applied = zstd::bulk::Decompressor::with_dictionary(&base)
            .and_then(|mut d| d.decompress(&delta, capacity));
        Ok(applied.map_err(|e| PatchError::Malformed(format!("zstd: {e}"))))
    }
}

fn too_large() -> PatchError {
    PatchError::Unsupported(format!("deltas are made of files up to {MAX_INPUT} bytes"))
}
