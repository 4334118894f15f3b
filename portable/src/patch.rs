//! `patch` in pure wasm: no zstd encoder builds for wasm here, so neither
//! call is supported; a store on the portable capabilities sends whole
//! files in its delta packs.

use crate::Component;
use crate::bindings::exports::kist::content::patch::{Guest, PatchError};

impl Guest for Component {
    fn make(_base: Vec<u8>, _target: Vec<u8>, _level: u8) -> Result<Vec<u8>, PatchError> {
        Err(unsupported())
    }

    fn apply(_base: Vec<u8>, _delta: Vec<u8>, _max_size: u64) -> Result<Vec<u8>, PatchError> {
        Err(unsupported())
    }
}

fn unsupported() -> PatchError {
    PatchError::Unsupported("the portable capabilities make and apply no zstd deltas".into())
}
