//! Delta pulls: a node that holds v1 of an image gets v2 with `kist pull
//! --from v1` (only what changed: the layers' trees and a pack of the new
//! files, changed ones as binary deltas), against a full `kist pull` of
//! v2, containerd 1.6 pulling v2 whole from docker-registry 2.8 and from
//! `kist serve` (`delta_containerd`), ostree object by object and with a
//! static delta, casync seeded with v1's tree (each served by a static
//! HTTP server), and Nydus's chunk dictionary (sizes only), on loopback
//! and on a 20 Mbit/s link with 100 ms round trips (the node in its own
//! network namespace shaped by `tc tbf`, `node_net`), every server behind
//! a counting relay. The same pulls of the two-layer images (a base both
//! versions share, python on top) compare kist with containerd that
//! holds v1 and fetches only the layer that changed.
//!
//! Time to ready is pull start to `python3 -c 'import json,ssl'` exiting
//! 0 in the new snapshots. The nodes' stores are on a fresh journaled
//! ext4 ([`NodeDisk`]). The images are `delta_images`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::link::Link;
use crate::measure::{Contender, interleave};
use crate::node_disk::NodeDisk;
use crate::node_net::NodeNet;
use crate::registry_peers::{self, Running};
use crate::report::{Report, Unit};
use crate::tools::{Tools, output, scratch, sh};
use crate::{delta_casync, delta_containerd, delta_images, delta_nydus, delta_ostree};

/// 20 Mbit/s.
const SLOW_BITS: u64 = 20_000_000;
const SLOW_RTT: Duration = Duration::from_millis(100);

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    quick: bool,
    reps: usize,
) -> anyhow::Result<()> {
    let one = delta_images::one_layer(work, quick)?;
    let two = delta_images::two_layers(work, quick, &one)?;
    // The nodes' stores on a fresh journaled disk (see `node_disk`), which
    // needs root; a quick run without it only checks that the scenario
    // works, where it is.
    let disk = (!quick || crate::running_as_root())
        .then(|| NodeDisk::mount(work))
        .transpose()?;
    let nodes = disk.as_ref().map_or(work, |d| d.path.as_path());
    let server = registry_peers::kist(&tools.kist, &scratch(work, "delta-registry")?)?;
    let distribution = registry_peers::distribution(&scratch(work, "delta-distribution")?)?;
    // v2's top snapshot (chain id) of each pair.
    let mut tops = Vec::new();
    for pair in [&one, &two] {
        for (tag, layers) in [("v1", &pair.v1), ("v2", &pair.v2)] {
            let top = delta_images::push(&server, pair.repo, layers, tag)?;
            delta_images::push(&distribution, pair.repo, layers, tag)?;
            if tag == "v2" {
                tops.push(top);
            }
        }
    }
    // The same trees as plain directories, for the contenders that take
    // directories (ostree commits them, casync indexes them).
    let trees = scratch(work, "delta-trees")?;
    let (tree1, tree2) = (trees.join("v1"), trees.join("v2"));
    for (layer, dir) in [(&one.v1[0], &tree1), (&one.v2[0], &tree2)] {
        std::fs::create_dir_all(dir)?;
        sh(
            &format!(
                "tar --numeric-owner --xattrs -xzf {} -C {}",
                layer.display(),
                dir.display()
            ),
            &trees,
        )?;
    }
    let ostree = delta_ostree::Server::start(&scratch(work, "delta-ostree")?, &tree1, &tree2)?;
    let casync = delta_casync::Server::start(&scratch(work, "delta-casync")?, &tree1, &tree2)?;
    let size = |layers: &[PathBuf]| -> anyhow::Result<f64> {
        let mut sum = 0;
        for l in layers {
            sum += std::fs::metadata(l)?.len();
        }
        Ok(sum as f64 / 1e6)
    };
    report.note(&format!(
        "\n### Delta pulls: v1 → v2, one layer of {:.1} MB (`app`), and two (`2layers`: a base of {:.1} MB both share and python, {:.1} MB in v2)\n",
        size(&one.v2)?,
        size(&two.v2[..1])?,
        size(&two.v2[1..])?,
    ));
    if disk.is_some() {
        report.note("The nodes' stores are on a fresh journaled ext4 on a loop device (bench/src/node_disk.rs says why).");
    }
    // The first delta pull makes the server derive the layers' trees (per
    // layer: the tree of a layer kist applied is recorded on the way; a
    // registry derives it on first request) and the pack (per pair): the
    // CPU of each, once; every pull after is served from what it kept.
    let warm = node_with_v1(tools, nodes, &server, one.repo, "delta-warmup")?;
    let cpu_before = server.cpu_seconds()?;
    for layer in [&one.v1[0], &one.v2[0]] {
        let layer = crate::native::sha256_file(layer)?;
        ureq::get(&format!(
            "{}/kist/v1/{}/trees/{layer}",
            server.base, one.repo
        ))
        .call()?
        .into_reader()
        .read_to_end(&mut Vec::new())?;
    }
    let cpu_trees = server.cpu_seconds()? - cpu_before;
    pull(
        tools,
        &warm,
        &server.base,
        one.repo,
        "v2",
        &["--from", "v1"],
    )?;
    let cpu_pack = server.cpu_seconds()? - cpu_before - cpu_trees;
    report.note(&format!(
        "Server CPU, once, then served from its cache: both layers' trees {cpu_trees:.2} s, the pack {cpu_pack:.2} s; ostree's static delta (`ostree static-delta generate`) {:.2} s.",
        ostree.delta_cpu
    ));
    // The two-layer pair's trees and pack, made before the clock too.
    let warm = node_with_v1(tools, nodes, &server, two.repo, "delta-warmup-2")?;
    pull(
        tools,
        &warm,
        &server.base,
        two.repo,
        "v2",
        &["--from", "v1"],
    )?;
    // Nydus first: a full run that has to build it fails here, not after
    // the pulls.
    let mut nydus = Vec::new();
    match delta_nydus::tool(&delta_images::cache_dir()?, !quick)? {
        Some(tool) => {
            let dir = scratch(work, "delta-nydus")?;
            let v2 = delta_nydus::sizes(&tool, &dir, &one.v1[0], &one.v2[0])?;
            nydus.push(format!(
                "delta nydus-chunk-dict sizes bytes={} blob_bytes={} bootstrap_bytes={}",
                v2.blob + v2.bootstrap,
                v2.blob,
                v2.bootstrap
            ));
        }
        None => report.note("Nydus: `nydus-image` is not installed here; a full run installs it (`cargo install nydus-rs`), a quick run does not."),
    }
    let mut lines = Vec::new();
    for name in ["loopback", "20mbit"] {
        // The slow link: the node in its own network namespace, shaped to
        // 20 Mbit/s each way by tc, the round trip added by the relays.
        let net = (name != "loopback")
            .then(|| NodeNet::create(SLOW_BITS))
            .transpose()?;
        let (ip, rtt) = net.as_ref().map_or(("127.0.0.1", Duration::ZERO), |n| {
            (n.server_ip.as_str(), SLOW_RTT)
        });
        // One relay per server, each counting what crosses it.
        let relay = |target: &str| Link::start_on(ip, target, u64::MAX / 4, rtt);
        let to_kist = Endpoint {
            link: relay(&host(&server))?,
            cpu: Box::new(|| server.cpu_seconds()),
        };
        let to_distribution = Endpoint {
            link: relay(&host(&distribution))?,
            cpu: Box::new(|| distribution.cpu_seconds()),
        };
        let to_ostree = Endpoint {
            link: relay(ostree.http.host())?,
            cpu: Box::new(|| ostree.http.cpu_seconds()),
        };
        let to_casync = Endpoint {
            link: relay(casync.http.host())?,
            cpu: Box::new(|| casync.http.cpu_seconds()),
        };
        let carried = std::cell::RefCell::new(Vec::<Carried>::new());
        // Runs one timed pull of `label` into the node `dir` (on the
        // node's side of the link), counts what crossed the link and what
        // the pull cost the node and the server, and removes the node:
        // the node disk holds a few, not fifty.
        let counted = |label: &'static str,
                       to: &Endpoint,
                       dir: &Path,
                       pull: &dyn Fn() -> anyhow::Result<Duration>| {
            let cpu = || crate::tools::cpu_seconds("self", true);
            let before = (to.link.carried(), cpu()?, (to.cpu)()?);
            let on_node = || crate::tools::peak_rss(pull);
            let (took, rss) = match &net {
                Some(net) => net.run(on_node)?,
                None => on_node(),
            };
            let took = took?;
            let after = (to.link.carried(), cpu()?, (to.cpu)()?);
            carried.borrow_mut().push(Carried {
                label,
                bytes: after.0.0 - before.0.0,
                requests: after.0.1 - before.0.1,
                cpu: after.1 - before.1,
                server_cpu: after.2 - before.2,
                rss,
                disk: disk_usage(dir)?,
            });
            std::fs::remove_dir_all(dir)?;
            Ok(took)
        };
        // The images by scenario: 0 one layer, 1 two layers.
        let scenarios = [(&one, tops[0].as_str()), (&two, tops[1].as_str())];
        let kist = |label: &'static str, from: bool, scenario: usize| {
            let (to, server, counted) = (&to_kist, &server, &counted);
            let (pair, top) = scenarios[scenario];
            Contender::new(label, move |rep| {
                let node = if from {
                    node_with_v1(
                        tools,
                        nodes,
                        server,
                        pair.repo,
                        &format!("delta-node-{rep}"),
                    )?
                } else {
                    scratch(nodes, &format!("delta-node-{rep}"))?
                };
                counted(label, to, &node, &|| {
                    let start = Instant::now();
                    let args: &[&str] = if from { &["--from", "v1"] } else { &[] };
                    pull(tools, &node, &to.link.base, pair.repo, "v2", args)?;
                    ready(&node, top, quick)?;
                    Ok(start.elapsed())
                })
            })
        };
        let ostree = |label: &'static str, static_delta: bool| {
            let (to, ostree, counted) = (&to_ostree, &ostree, &counted);
            Contender::new(label, move |rep| {
                let dir = scratch(nodes, &format!("delta-{label}-{rep}"))?;
                let repo = ostree.node_with_v1(&dir, &to.link.base)?;
                counted(label, to, &dir, &|| {
                    delta_ostree::pull(&repo, static_delta, quick)
                })
            })
        };
        let casync = {
            let (to, casync, counted) = (&to_casync, &casync, &counted);
            Contender::new("casync", move |rep| {
                let dir = scratch(nodes, &format!("delta-casync-{rep}"))?;
                let seed = casync.node_with_v1(&dir)?;
                counted("casync", to, &dir, &|| {
                    delta_casync::pull(&seed, &to.link.base, quick)
                })
            })
        };
        // containerd from docker-registry (or `kist serve`) into a node
        // that holds nothing, or (with `from`) v1, pulled untimed.
        let containerd =
            |label: &'static str, from_distribution: bool, scenario: usize, from: bool| {
                let (to, direct) = if from_distribution {
                    (&to_distribution, &distribution)
                } else {
                    (&to_kist, &server)
                };
                let counted = &counted;
                let (pair, top) = scenarios[scenario];
                Contender::new(label, move |rep| {
                    let dir = nodes.join(format!("delta-containerd-{label}-{rep}"));
                    if from {
                        delta_containerd::pull_untimed(&dir, &direct.base, pair.repo, "v1")?;
                    }
                    counted(label, to, &dir, &|| {
                        delta_containerd::pull(&dir, &to.link.base, pair.repo, top, quick)
                    })
                })
            };
        let samples = interleave(
            reps,
            vec![
                kist("kist-full", false, 0),
                kist("kist-delta", true, 0),
                containerd("containerd-docker-registry", true, 0, false),
                containerd("containerd-kist-serve", false, 0, false),
                ostree("ostree", false),
                ostree("ostree-static-delta", true),
                casync,
                kist("kist-full-2layers", false, 1),
                kist("kist-delta-2layers", true, 1),
                containerd("containerd-docker-registry-2layers-from-v1", true, 1, true),
            ],
        )?;
        report.section(
            &format!("delta pull v1 → v2 on {name}: pull start to python ready"),
            Unit::Time,
            &samples,
        );
        for s in &samples {
            let all = carried.borrow();
            let mine: Vec<&Carried> = all.iter().filter(|c| c.label == s.name).collect();
            ensure!(!mine.is_empty(), "{} never ran", s.name);
            let median = |of: fn(&Carried) -> f64| {
                let mut all: Vec<f64> = mine.iter().map(|c| of(c)).collect();
                all.sort_by(f64::total_cmp);
                all[all.len() / 2]
            };
            lines.push(format!(
                "delta {} {name} bytes={:.0} requests={:.0} ready_s={:.2} node_cpu_s={:.2} server_cpu_s={:.2} node_peak_rss_mb={:.0} disk_after_mb={:.0}",
                s.name,
                median(|c| c.bytes as f64),
                median(|c| c.requests as f64),
                s.median().as_secs_f64(),
                median(|c| c.cpu),
                median(|c| c.server_cpu),
                median(|c| c.rss as f64) / 1e6,
                median(|c| c.disk as f64) / 1e6
            ));
        }
    }
    report.note(&format!(
        "Servers' peak RSS over the whole run: kist serve {:.0} MB, docker-registry {:.0} MB, ostree's and casync's http.server {:.0} MB and {:.0} MB.",
        server.peak_rss()? as f64 / 1e6,
        distribution.peak_rss()? as f64 / 1e6,
        ostree.http.peak_rss()? as f64 / 1e6,
        casync.http.peak_rss()? as f64 / 1e6,
    ));
    report.note("One line per contender and link: bytes from the server, HTTP requests, median seconds to ready, median CPU seconds of the node's processes (the pull's client and, for containerd, its daemon) and of the server's, the median of the largest peak RSS among the node's processes, and the node's disk after the pull (v1 included); medians of the repetitions. Nydus's line is sizes, not a pull: v2's data blob made with v1 as its chunk dictionary, and v2's metadata (`bench/src/delta_nydus.rs`). On `20mbit` the node is in its own network namespace whose veth pair `tc tbf` shapes to 20 Mbit/s each way, and the relays add the 100 ms round trip:");
    report.line("```");
    for l in lines.into_iter().chain(nydus) {
        report.line(&l);
    }
    report.line("```");
    Ok(())
}

/// A server as the node reaches it: through its relay, and what its
/// process has used of the CPU so far.
struct Endpoint<'a> {
    link: Link,
    cpu: Box<dyn Fn() -> anyhow::Result<f64> + 'a>,
}

/// What one timed pull moved and cost.
struct Carried {
    label: &'static str,
    bytes: u64,
    requests: u64,
    /// CPU seconds of the node's processes.
    cpu: f64,
    /// CPU seconds of the server's process.
    server_cpu: f64,
    /// The largest peak RSS of the node's processes, bytes.
    rss: u64,
    /// Bytes on the node's disk after the pull.
    disk: u64,
}

/// Bytes under `dir` (hard links once), as `du -sb` counts them.
fn disk_usage(dir: &Path) -> anyhow::Result<u64> {
    let out = Command::new("du").arg("-sb").arg(dir).output()?;
    ensure!(out.status.success(), "du -sb {}", dir.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .context("du printed nothing")?
        .parse()
        .context("du's count")
}

/// `HOST:PORT` of a registry.
fn host(registry: &Running) -> String {
    registry.base.trim_start_matches("http://").to_owned()
}

/// `kist pull [ARGS] BASE/REPO:TAG` into the store `node`.
fn pull(
    tools: &Tools,
    node: &Path,
    base: &str,
    repo: &str,
    tag: &str,
    args: &[&str],
) -> anyhow::Result<()> {
    output(
        tools
            .kist(node)
            .arg("pull")
            .args(args)
            .arg(format!("{base}/{repo}:{tag}")),
    )?;
    Ok(())
}

/// A new node store that pulled v1 (straight from the server, untimed).
fn node_with_v1(
    tools: &Tools,
    work: &Path,
    server: &Running,
    repo: &str,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let node = scratch(work, name)?;
    pull(tools, &node, &server.base, repo, "v1", &[])?;
    Ok(node)
}

/// Waits for nothing: checks that the pulled snapshot `top` runs python
/// (or, for the synthetic images, has its marker file).
fn ready(node: &Path, top: &str, quick: bool) -> anyhow::Result<()> {
    let store = kist::Store::open(node)?;
    let snapshots = store.snapshots();
    let key = format!("bench-ready {}", std::process::id());
    let mounts = snapshots.view(&key, Some(&format!("kist-pull/{top}")), &[])?;
    let dir = tempfile::tempdir()?;
    kist::mount::mount(&mounts, dir.path())?;
    let checked = check_ready(dir.path(), quick);
    kist::mount::unmount(dir.path())?;
    snapshots.remove(&key)?;
    checked
}

/// Checks that python runs in the tree mounted at `root` (or, for the
/// synthetic images, that it has their marker file).
pub fn check_ready(root: &Path, quick: bool) -> anyhow::Result<()> {
    if quick {
        ensure!(
            root.join("usr/lib/python3.11/version").is_file(),
            "no marker file"
        );
        return Ok(());
    }
    output(
        Command::new("chroot")
            .arg(root)
            .args(["python3", "-c", "import json,ssl"]),
    )?;
    Ok(())
}
