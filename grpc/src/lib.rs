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
//! instances); this crate only translates. What containerd writes is held
//! by the holder `containerd`, and containerd sees only that (its garbage
//! collector deletes whatever it lists and does not know).

#![deny(missing_docs)]

mod content;
mod errors;
mod serve;
mod snapshots;
mod write;

pub use serve::{Socket, SocketOptions, bind, serve};

/// The holder of everything that arrives through the socket.
pub const HOLDER: &str = "containerd";

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
        }
    }
}

fn timestamp(t: kist::Datetime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds as i64,
        nanos: t.nanoseconds as i32,
    }
}

/// containerd's filters, each also requiring that containerd holds the
/// item (filters are ORed; the selectors within one are ANDed).
fn held_filters(filters: &[String]) -> Vec<String> {
    let held = format!("holders.{HOLDER}");
    if filters.is_empty() {
        return vec![held];
    }
    filters.iter().map(|f| format!("{held},{f}")).collect()
}
