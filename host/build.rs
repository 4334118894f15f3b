//! Builds the store component (the `kist-guest` crate) for wasm32-wasip2
//! and hands its path and sha256 to the library, as wasmtime's
//! test-programs artifacts do: `cargo build` of the host is all it takes.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("host/ is inside the workspace");
    for watched in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let wasm = build_guest(workspace);
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    println!("cargo:rustc-env=KIST_COMPONENT_PATH={}", wasm.display());
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=KIST_COMPONENT_SHA256={sha256}");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}

/// Compiles the guest in release mode into its own target directory (a
/// nested cargo must not share the outer build's lock) and returns the
/// component's path.
fn build_guest(workspace: &Path) -> PathBuf {
    ensure_target();
    let target_dir = guest_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "kist-guest",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // The component ships without debug info: smaller, and no build paths.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    // Flags meant for the host build (coverage, sanitizers, a wrapper) must
    // not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the guest");
    assert!(status.success(), "building the kist-guest component failed");
    target_dir
        .join(TARGET)
        .join("release")
        .join("kist_guest.wasm")
}

/// The guest's target dir: beside the outer build's, so debug and release
/// host builds share one guest build.
fn guest_target_dir() -> PathBuf {
    let out = PathBuf::from(env("OUT_DIR"));
    let outer = out
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf);
    outer.unwrap_or(out).join("kist-guest")
}

/// A fresh machine has the pinned toolchain but not its wasm target, and
/// rustup does not add listed targets to an installed toolchain: add it.
fn ensure_target() {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the {TARGET} target is missing and `rustup target add {TARGET}` failed"
    );
}
