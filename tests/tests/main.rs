//! kist's integration tests, all through the real component in the real
//! host, as one binary: wasmtime is linked once, not once per suite.
//!
//! Each file here is a suite; `cargo test <suite>::` runs one of them
//! (`./test.sh storer::`), `cargo test <suite>::<test>` one test.

mod boundaries;
mod cli;
mod concurrency;
mod conformance;
mod conformance_on_bucket;
mod containerd_content;
mod containerd_plugin;
mod crash;
mod defects;
mod deltas;
mod disk_full;
mod fsck;
mod hostile;
mod hosts;
mod layers;
mod model;
mod objects;
mod page_cache;
mod portable;
mod registry;
mod registry_access;
mod registry_clients;
mod registry_collect_across_nodes;
mod registry_mirror;
mod registry_nodes;
mod registry_tokens;
mod registry_uploads_across_nodes;
mod retention;
mod sandbox;
mod serve;
mod shared_blobs;
mod snapshot_layers;
mod snapshots;
mod storer;
