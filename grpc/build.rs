//! Generates containerd's Content and Snapshots *servers* from the .proto
//! files the `containerd-client` crate ships (it generates only clients),
//! with the message types taken from that crate: one set of types, and no
//! copy of containerd's protos in this repository. Needs `protoc`
//! (Debian's protobuf-compiler, which `tests/peers/install.sh` installs),
//! as `containerd-client`'s own build does.

use std::path::PathBuf;

/// The `vendor/` directory of the `containerd-client` package in cargo's
/// registry sources.
fn vendor() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registry = home.join("registry/src");
    let found = std::fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("containerd-client-0.9."))
        })
        .max();
    let dir = found.unwrap_or_else(|| {
        panic!(
            "containerd-client 0.9 not found under {}",
            registry.display()
        )
    });
    dir.join("vendor")
}

fn main() {
    let vendor = vendor();
    let api = "github.com/containerd/containerd/api";
    let protos = [
        vendor.join(format!("{api}/services/content/v1/content.proto")),
        vendor.join(format!("{api}/services/snapshots/v1/snapshots.proto")),
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_arg("--experimental_allow_proto3_optional");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(
            ".containerd.services.content.v1",
            "::containerd_client::services::v1",
        )
        .extern_path(
            ".containerd.services.snapshots.v1",
            "::containerd_client::services::v1::snapshots",
        )
        .extern_path(".containerd.types", "::containerd_client::types")
        .compile_with_config(config, &protos, &[vendor])
        .expect("generating containerd's Content and Snapshots servers");
}
