//! `deflate` in pure wasm: the `kist-gzip` encoder kist's native host
//! runs, compiled to wasm, so an archive has the same bytes (and digest)
//! whichever host made it; here it runs in the calling thread.

use std::cell::RefCell;

use crate::Component;
use crate::bindings::exports::kist::content::deflate::{Guest, GuestGzipEncoder, GzipEncoder};

impl Guest for Component {
    type GzipEncoder = Gzip;
}

/// A gzip member being compressed.
pub struct Gzip(RefCell<kist_gzip::Encoder>);

impl GuestGzipEncoder for Gzip {
    fn new(level: u8) -> Self {
        Self(RefCell::new(kist_gzip::Encoder::new(level)))
    }

    fn write(&self, data: Vec<u8>) -> Vec<u8> {
        self.0.borrow_mut().write(&data)
    }

    fn finish(this: GzipEncoder) -> Vec<u8> {
        this.into_inner::<Gzip>().0.into_inner().finish()
    }
}
