//! Nydus as a contender of the delta scenario, for bytes only: v1's layer
//! converted to RAFS (`nydus-image create -t targz-rafs`), then v2's with
//! v1's metadata as its chunk dictionary, so v2's data blob holds only the
//! chunks v1 lacks. What a node holding v1 fetches for v2 is that blob and
//! v2's metadata (the bootstrap). Nydus mounts lazily through FUSE and
//! its snapshotter, which this benchmark does not run: no time to ready.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::tools::{output, sh};

/// The version of `nydus-rs` a full run installs when `nydus-image` is
/// missing (the newest on crates.io; it builds with this toolchain).
const VERSION: &str = "2.2.0";

/// What v2 costs a node that holds v1.
pub struct Sizes {
    /// v2's data blob: the chunks v1's dictionary lacks.
    pub blob: u64,
    /// v2's RAFS metadata.
    pub bootstrap: u64,
}

/// `nydus-image`: on `PATH`, or installed under `cache` before; with
/// `install`, built there with `cargo install` if neither.
pub fn tool(cache: &Path, install: bool) -> anyhow::Result<Option<PathBuf>> {
    let on_path = Command::new("sh")
        .args(["-c", "command -v nydus-image"])
        .output()?;
    if on_path.status.success() {
        let path = String::from_utf8_lossy(&on_path.stdout).trim().to_owned();
        return Ok(Some(path.into()));
    }
    let root = cache.join("nydus");
    let installed = root.join("bin/nydus-image");
    if !installed.is_file() && install {
        // Its zlib build needs cmake.
        sh(
            "command -v cmake || apt-get install -y --no-install-recommends cmake",
            cache,
        )?;
        output(
            Command::new("cargo")
                .args(["install", "--locked", "nydus-rs", "--version", VERSION])
                .arg("--root")
                .arg(&root),
        )
        .context("cargo install nydus-rs")?;
    }
    Ok(installed.is_file().then_some(installed))
}

/// Converts the layers `v1` and `v2` (tar+gzip) under `dir`; v2's sizes.
pub fn sizes(nydus_image: &Path, dir: &Path, v1: &Path, v2: &Path) -> anyhow::Result<Sizes> {
    let create = |name: &str, layer: &Path, dict: Option<&Path>| {
        let blobs = dir.join(format!("{name}-blobs"));
        std::fs::create_dir_all(&blobs)?;
        let bootstrap = dir.join(format!("{name}.boot"));
        let mut cmd = Command::new(nydus_image);
        cmd.args(["create", "-t", "targz-rafs", "--bootstrap"])
            .arg(&bootstrap)
            .arg("--blob-dir")
            .arg(&blobs);
        if let Some(dict) = dict {
            cmd.arg("--chunk-dict")
                .arg(format!("bootstrap={}", dict.display()));
        }
        output(cmd.arg(layer))?;
        let mut blob = 0;
        for entry in std::fs::read_dir(&blobs)? {
            blob += entry?.metadata()?.len();
        }
        anyhow::Ok((bootstrap, blob))
    };
    let (dict, _) = create("v1", v1, None)?;
    let (bootstrap, blob) = create("v2", v2, Some(&dict))?;
    Ok(Sizes {
        blob,
        bootstrap: std::fs::metadata(bootstrap)?.len(),
    })
}
