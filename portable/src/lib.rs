//! kist's `caller`, `copier`, `deflate`, `fetch`, `hasher`, `inflate`, `lender`, `locks`, `objects`, `space` and `trees` capabilities in pure wasm (world
//! `portable-capabilities`), for hosts that do not supply them natively.
//! Plugged into the store component it yields `kist-portable.wasm`, whose
//! only imports are standard WASI 0.2.
//!
//! Modules are named after the WIT interfaces they export.

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "portable-capabilities",
        generate_all,
    });
}

mod caller;
mod copier;
mod deflate;
mod fetch;
mod hasher;
mod inflate;
mod lender;
mod locks;
mod objects;
mod patch;
mod space;
mod trees;

/// The component's exports.
struct Component;

bindings::export!(Component with_types_in bindings);
