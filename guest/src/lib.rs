//! The kist store component: a content store (containerd's content-store
//! contract on an OCI image layout) over the one directory the host
//! preopens. Hashing and locking are imported from the host.
//!
//! Modules named after WIT interfaces implement them (`store`,
//! `ingester`, `fsck`, `storer`); the others are the pieces they share.

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "store-component",
        generate_all,
    });
}

mod archive;
mod artifacts;
mod digest;
mod error;
mod extract;
mod filters;
mod fs;
mod fsck;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod ingest;
mod ingester;
mod labels;
mod layout;
mod new_blob;
mod publish;
mod put;
mod store;
mod storer;
mod validate;

/// The component's exports.
struct Component;

// Only the wasm build exports: export names such as `kist:content/fsck@0.1.0`
// are not valid native symbol names, and the fuzz targets link this crate
// natively.
#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);
