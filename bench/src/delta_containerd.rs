//! The delta scenario's baseline: containerd 1.6 pulling v2 whole with
//! `ctr images pull` (fetch, then unpack into its overlayfs snapshotter),
//! from docker-registry or from `kist serve`, on a node with nothing (or
//! with v1, pulled before the clock by a first daemon on the same state). A
//! private containerd per pull, with its state on the node disk, started
//! before the clock and removed after. Ready is the same check as kist's:
//! python runs in a read-only view of the pulled snapshot. The daemon's
//! peak RSS counts as the node's.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::containerd::{containerd, ctr};
use crate::tools::output;

/// Pulls `base`/REPO:v2 (`base` is `http://HOST:PORT`) into a fresh
/// containerd under `dir` (or one that holds what an earlier pull there
/// left), checks that the snapshot `top` (v2's chain id) is ready, and
/// stops it; returns pull start to ready.
pub fn pull(
    dir: &Path,
    base: &str,
    repo: &str,
    top: &str,
    quick: bool,
) -> anyhow::Result<Duration> {
    let (daemon, socket) = containerd(dir, None)?;
    let start = Instant::now();
    ctr_pull(&socket, base, repo, "v2")?;
    ready(&socket, top, quick)?;
    let took = start.elapsed();
    crate::tools::note_peak_rss(daemon.peak_rss()?);
    drop(daemon);
    Ok(took)
}

/// Pulls `base`/REPO:TAG into a containerd under `dir`, started for it
/// and stopped after: a node that holds TAG before the clock starts.
pub fn pull_untimed(dir: &Path, base: &str, repo: &str, tag: &str) -> anyhow::Result<()> {
    let (_daemon, socket) = containerd(dir, None)?;
    ctr_pull(&socket, base, repo, tag)
}

/// `ctr images pull` of `base`/REPO:TAG over plain HTTP.
fn ctr_pull(socket: &Path, base: &str, repo: &str, tag: &str) -> anyhow::Result<()> {
    let host = base.trim_start_matches("http://");
    output(
        ctr(socket)
            .args(["images", "pull", "--plain-http"])
            .arg(format!("{host}/{repo}:{tag}")),
    )?;
    Ok(())
}

/// A view of the committed snapshot `top` mounted and python (or, for
/// the synthetic images, the marker file) checked in it.
fn ready(socket: &Path, top: &str, quick: bool) -> anyhow::Result<()> {
    let view = output(ctr(socket).args(["snapshots", "view", "--mounts", "bench-ready", top]))?;
    let mounts: Vec<serde_json::Value> = serde_json::from_slice(&view)?;
    let mounts = mounts
        .iter()
        .map(|m| {
            let text = |key: &str| m[key].as_str().unwrap_or_default().to_owned();
            kist::mount::Mount {
                type_: text("Type"),
                source: text("Source"),
                options: m["Options"]
                    .as_array()
                    .map(|o| {
                        o.iter()
                            .filter_map(|o| o.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect::<Vec<_>>();
    let dir = tempfile::tempdir()?;
    kist::mount::mount(&mounts, dir.path())?;
    let checked = crate::delta::check_ready(dir.path(), quick);
    kist::mount::unmount(dir.path())?;
    // The view is not removed: the whole containerd goes after the pull
    // (and its collector may have taken the unleased view already).
    checked
}
