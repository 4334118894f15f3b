//! Generates containerd's Content and Snapshots servers (what kist serves
//! containerd) and the Content, Snapshots, Images and Leases clients
//! (what `kist pull` records an image in containerd with), and their
//! messages, from the .proto files in `proto/` (containerd's API as the
//! `containerd-client` 0.9 crate ships it), with `protox`: pure Rust, so
//! building kist needs no `protoc`. See `proto/README.md` for why the
//! files are vendored rather than read from that crate.

fn main() {
    let files = [
        "proto/github.com/containerd/containerd/api/services/content/v1/content.proto",
        "proto/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto",
        "proto/github.com/containerd/containerd/api/services/images/v1/images.proto",
        "proto/github.com/containerd/containerd/api/services/leases/v1/leases.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"]).expect("parsing containerd's .proto files");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("generating containerd's servers and clients");
}
