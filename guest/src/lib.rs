//! The kist store component: a content store (containerd's content-store
//! contract on an OCI image layout) over the one directory the host
//! preopens. Hashing and locking are imported from the host.
//!
//! This file is the map. Each folder is one family of WIT interfaces; a
//! module named after an interface implements it, the others are its
//! parts.

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "store-component",
        generate_all,
    });
}

/// What every family uses: digests, the one error type, the filter
/// language, raw `wasi:filesystem` calls, the on-disk layout, input checks.
mod shared {
    /// The store's bucket (`objects`), if the host gives it one.
    pub mod bucket;
    /// Files parsed once per change.
    pub mod cached;
    pub mod digest;
    pub mod error;
    pub mod filters;
    pub mod fs;
    /// What a registry client may do in a repository.
    pub mod grants;
    /// Records kept as a base file and a journal of changes.
    pub mod journal;
    pub mod layout;
    /// Who a call is for, and what that allows.
    pub mod scope;
    pub mod validate;
}

/// The content store: `store` (read, label, delete, walk) and `ingester`
/// (resumable writes and small puts), and how a blob gets published.
mod content {
    /// Blobs shared through the store's bucket (several nodes).
    pub mod bucket;
    /// gzip through the host's `deflate` capability.
    pub mod gzipped;
    /// One ingest on disk: meta, data and saved hash state.
    /// The layout's `index.json`: named roots, registry tags.
    pub mod index;
    pub mod ingest;
    pub mod ingester;
    /// Label files, one per labelled blob.
    pub mod labels;
    /// `lending`: blobs lent to the host to read natively.
    pub mod lending;
    /// A blob written as a stream (archives, copied files).
    pub mod new_blob;
    /// The one step that makes a blob visible.
    pub mod publish;
    /// `put` and `put-batch`.
    pub mod put;
    /// Where damaged blobs and labels go.
    pub mod quarantine;
    /// Ingests kept in the bucket, so any node continues them.
    pub mod shared_ingest;
    pub mod store;
    /// Which blobs a caller sees: held, or reached through references.
    pub mod visible;
}

/// Artifacts (`storer`): records owned by objects, deterministic archives,
/// and extraction.
mod artifacts {
    pub mod archive;
    pub mod extract;
    /// Resolving symlinks against a tree's own links.
    pub mod links;
    /// Object and artifact records on disk.
    pub mod records;
    pub mod storer;
}

/// What the store keeps and for how long: holds on blobs, leases
/// (`leases`), settings, quotas and the collector (`retention`).
mod retention {
    /// The collection resource and eviction.
    pub mod collector;
    /// Blobs condemned in the bucket, and holds that take them back.
    pub mod condemned;
    /// Who holds each blob.
    pub mod holds;
    pub mod interface;
    pub mod leases;
    /// Holds for stores laid out before holds existed.
    pub mod migrate;
    /// What each node on a bucket keeps, told to the others.
    pub mod node_roots;
    /// Quotas checked at write time.
    pub mod quota;
    /// One pass over the store: what is live, what everything weighs.
    pub mod scan;
    /// `retention.json`: TTLs and quotas.
    pub mod settings;
    /// Collection of the bucket, across nodes.
    pub mod shared_sweep;
}

/// The OCI registry's storage side (`registry`): repositories as holders,
/// uploads, manifests, tags and referrers.
mod registry {
    pub mod interface;
    /// Parsing manifests and indexes.
    pub mod manifests;
    /// Repository membership.
    pub mod members;
    /// Names, tags, upload ids.
    pub mod names;
    /// Storing a pushed manifest.
    pub mod push;
    /// Who refers to what.
    pub mod referrers;
    /// The catalog.
    pub mod repositories;
    /// Membership and tags in the store's bucket, for every node.
    pub mod shared;
    /// Tags in `index.json`.
    pub mod tags;
    /// Uploads as ingests.
    pub mod uploads;
}

/// Snapshots (`snapshots`): containerd's snapshotter contract, and layers
/// applied into and diffed out of snapshots.
mod snapshots {
    /// Layer blobs unpacked into a snapshot.
    pub mod apply;
    /// What `fsck` checks of snapshots.
    pub mod check;
    /// A snapshot's changes as a layer blob.
    pub mod diff;
    /// A layer blob as an uncompressed tar stream.
    pub mod inflated;
    pub mod interface;
    /// Overlay and bind mounts.
    pub mod mounts;
    /// `snapshots/snapshots.json` and its journal: every snapshot's record.
    pub mod records;
    /// What keeps a snapshot, and collecting the rest.
    pub mod retention;
    /// A snapshot's directories, and the `trees` capability.
    pub mod tree;
}

/// Delta pulls (in `snapshots` and `registry`): a layer's files by
/// content, the packs of what a node lacks, and layers regenerated from
/// them.
mod deltas {
    /// Derived blobs kept as cache.
    pub mod derived;
    /// The operations the interfaces offer.
    pub mod layers;
    /// What a node lacks, in tar order.
    pub mod pack;
    /// A layer's tar regenerated and checked.
    pub mod rebuild;
    /// A stored layer split into its tree.
    pub mod split;
    /// The tree's format.
    pub mod tree;
}

/// Desired-state layers (`layers`): install, cache, restore and evict
/// layers from a desired list, downloaded through the `fetch` capability.
mod layers {
    /// Installing one layer, step by step.
    pub mod install;
    pub mod interface;
    /// The start of a run: checks, reconciliation, state changes.
    pub mod plan;
    /// `layers/layers.json`: every stored layer's record.
    pub mod records;
    /// The `run` resource.
    pub mod run;
    /// `http(s)://` and `file://` sources.
    pub mod source;
}

/// Checking and repairing a store (`fsck`).
mod check {
    pub mod fsck;
}

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

/// The component's exports.
struct Component;

// Only the wasm build exports: export names such as `kist:content/fsck@0.5.0`
// are not valid native symbol names, and the fuzz targets link this crate
// natively.
#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);
