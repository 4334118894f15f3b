//! Builds the store component (the `kist-guest` crate) and the pure-wasm
//! capabilities (`kist-portable`) for wasm32-wasip2, plugs the second into
//! the first with `wac-graph` (`kist-portable.wasm`), and hands their paths
//! and the store's sha256 to the library, as wasmtime's test-programs
//! artifacts do: `cargo build` of the host is all it takes.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[path = "src/plug.rs"]
mod plug;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("host/ is inside the workspace");
    for watched in [
        "host/src/plug.rs",
        "guest/src",
        "guest/Cargo.toml",
        "portable/src",
        "portable/Cargo.toml",
        "wit",
        "Cargo.lock",
        // Workspace dependencies the guest inherits.
        "Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let built = build_guests(workspace);
    let wasm = built.join("kist_guest.wasm");
    let capabilities = built.join("kist_portable.wasm");
    let bytes = read(&wasm);
    let portable = PathBuf::from(env("OUT_DIR")).join("kist-portable.wasm");
    // The capabilities' exports satisfy the store's `hasher` and `locks`
    // imports, leaving only WASI ones.
    let composed = plug::plug(&bytes, &[&read(&capabilities)])
        .unwrap_or_else(|e| panic!("composing kist-portable.wasm: {e:#}"));
    std::fs::write(&portable, composed)
        .unwrap_or_else(|e| panic!("writing {}: {e}", portable.display()));
    println!("cargo:rustc-env=KIST_COMPONENT_PATH={}", wasm.display());
    println!(
        "cargo:rustc-env=KIST_CAPABILITIES_PATH={}",
        capabilities.display()
    );
    println!("cargo:rustc-env=KIST_PORTABLE_PATH={}", portable.display());
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=KIST_COMPONENT_SHA256={sha256}");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}

/// Compiles the guests in release mode into their own target directory (a
/// nested cargo must not share the outer build's lock) and returns the
/// directory holding the components.
fn build_guests(workspace: &Path) -> PathBuf {
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
            "-p",
            "kist-portable",
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
    assert!(
        status.success(),
        "building the kist-guest and kist-portable components failed"
    );
    target_dir.join(TARGET).join("release")
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
