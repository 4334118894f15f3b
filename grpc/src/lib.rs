//! containerd's Content and Snapshots services over a kist store, served on
//! a unix socket as containerd proxy plugins:
//!
//! ```toml
//! version = 2
//! disabled_plugins = ["io.containerd.content.v1.content"]
//! [proxy_plugins.kist]
//!   type = "content"
//!   address = "/run/kist/containerd.sock"
//! [proxy_plugins.kistsnap]
//!   type = "snapshot"
//!   address = "/run/kist/containerd.sock"
//! ```
//!
//! Every call goes through the store component (the library's pool of
//! instances) on a handle confined to the holder `containerd`
//! ([`kist::Store::confined_to`]): the component holds what containerd
//! writes for it and shows and changes nothing else (containerd's garbage
//! collector deletes whatever it lists and does not know). This crate only
//! translates; it decides nothing about who sees what.

#![deny(missing_docs)]

mod content;
mod errors;
mod register;
mod serve;
mod snapshots;
mod write;

pub use register::{ImageRecord, register};
pub use serve::{Socket, SocketOptions, bind, serve};

/// The holder of everything that arrives through the socket.
pub const HOLDER: &str = "containerd";

/// The label with which containerd names a snapshot's chain id (its
/// remote-snapshot path: a `Prepare` with it finds a committed snapshot).
pub const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// containerd's API as generated from `proto/`: messages and servers,
/// in modules that mirror the protobuf packages (the generated code refers
/// to other packages through `super::`).
#[allow(missing_docs, clippy::all)]
pub mod api {
    pub mod containerd {
        pub mod types {
            tonic::include_proto!("containerd.types");
        }
        pub mod services {
            pub mod content {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.content.v1");
                }
            }
            pub mod snapshots {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.snapshots.v1");
                }
            }
            pub mod images {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.images.v1");
                }
            }
            pub mod leases {
                pub mod v1 {
                    tonic::include_proto!("containerd.services.leases.v1");
                }
            }
        }
    }
}

fn timestamp(t: kist::Datetime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds as i64,
        nanos: t.nanoseconds as i32,
    }
}
