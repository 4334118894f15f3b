//! `fetch` in pure wasm: the portable capabilities reach no network (a
//! host that wants downloads supplies kist's native `fetch`), so every
//! request is refused as not allowed, naming why.

use crate::Component;
use crate::bindings::exports::kist::content::fetch::{Download, FetchError, Guest, GuestDownload};

/// Never made: `get` always refuses.
pub struct NoDownload;

impl Guest for Component {
    type Download = NoDownload;

    fn get(url: String, _offset: u64) -> Result<Download, FetchError> {
        Err(FetchError::NotAllowed(format!(
            "{url}: the portable capabilities reach no network"
        )))
    }
}

impl GuestDownload for NoDownload {
    fn size(&self) -> Option<u64> {
        None
    }

    fn start(&self) -> u64 {
        0
    }

    fn read(&self, _max: u32) -> Result<Vec<u8>, FetchError> {
        Ok(Vec::new())
    }
}
