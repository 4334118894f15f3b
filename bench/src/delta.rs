//! Delta pulls: a node that holds v1 of an image gets v2 with `kist pull
//! --from v1` (only what changed: the layer's tree and a pack of the new
//! files, changed ones as binary deltas), against a full `kist pull` of
//! v2, and against containerd 1.6 pulling v2 whole from docker-registry
//! 2.8 and from `kist serve` (`delta_containerd`), on loopback and on a
//! 20 Mbit/s link with 100 ms round trips, each registry behind a
//! counting relay (contenders `kist-full`, `kist-delta`,
//! `containerd-docker-registry`, `containerd-kist-serve`), and against
//! ostree (object by object and with a static delta) and casync (seeded
//! with v1's tree), each served by a static HTTP server behind its own
//! relay.
//! Time to ready is pull start to
//! `python3 -c 'import json,ssl'` exiting 0 in the new snapshots. The
//! nodes' stores are on a fresh journaled ext4 ([`NodeDisk`]).
//!
//! The images are the measured bump of the design notes: Debian bookworm
//! minbase with python3 (python3.11 3.11.2-6+deb12u8), and the same after
//! `dpkg -i` of python3.11 +deb12u9 from bookworm-security, one layer
//! each, built once with debootstrap and kept in `target/bench-cache`.
//! `--quick` uses a small synthetic pair instead (no network).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

use crate::link::Link;
use crate::measure::{Contender, interleave};
use crate::node_disk::NodeDisk;
use crate::registry_peers::{self, Running};
use crate::report::{Report, Unit};
use crate::tools::{Tools, output, scratch, sh};
use crate::{delta_casync, delta_ostree};

/// The python3.11 packages of the bump, at their new version.
const BUMP: [&str; 4] = [
    "python3.11",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
];
const NEW_VERSION: &str = "3.11.2-6+deb12u9";
/// 20 Mbit/s.
const SLOW_RATE: u64 = 20_000_000 / 8;
const SLOW_RTT: Duration = Duration::from_millis(100);

/// One image version pushed: its layer file and the registry tag.
struct Version {
    layer: PathBuf,
    tag: &'static str,
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    quick: bool,
    reps: usize,
) -> anyhow::Result<()> {
    let (v1, v2) = if quick {
        synthetic(&scratch(work, "delta-images")?)?
    } else {
        debian(&cache_dir()?)?
    };
    let versions = [
        Version {
            layer: v1,
            tag: "v1",
        },
        Version {
            layer: v2,
            tag: "v2",
        },
    ];
    // The nodes' stores on a fresh journaled disk (see `node_disk`); the
    // quick run only checks that the scenario works, where it is.
    let disk = (!quick).then(|| NodeDisk::mount(work)).transpose()?;
    let nodes = disk.as_ref().map_or(work, |d| d.path.as_path());
    let server = registry_peers::kist(&tools.kist, &scratch(work, "delta-registry")?)?;
    let distribution = registry_peers::distribution(&scratch(work, "delta-distribution")?)?;
    let mut tops = Vec::new();
    for v in &versions {
        tops.push(push(&server, &v.layer, v.tag)?);
        push(&distribution, &v.layer, v.tag)?;
    }
    // The same trees as plain directories, for the contenders that take
    // directories (ostree commits them, casync indexes them).
    let trees = scratch(work, "delta-trees")?;
    let (tree1, tree2) = (trees.join("v1"), trees.join("v2"));
    for (v, dir) in versions.iter().zip([&tree1, &tree2]) {
        std::fs::create_dir_all(dir)?;
        sh(
            &format!(
                "tar --numeric-owner --xattrs -xzf {} -C {}",
                v.layer.display(),
                dir.display()
            ),
            &trees,
        )?;
    }
    let ostree = delta_ostree::Server::start(&scratch(work, "delta-ostree")?, &tree1, &tree2)?;
    let casync = delta_casync::Server::start(&scratch(work, "delta-casync")?, &tree1, &tree2)?;
    let full_size = std::fs::metadata(&versions[1].layer)?.len();
    report.note(&format!(
        "\n### Delta pulls: v1 → v2, one layer of {:.1} MB\n",
        full_size as f64 / 1e6
    ));
    if disk.is_some() {
        report.note("The nodes' stores are on a fresh journaled ext4 on a loop device (bench/src/node_disk.rs says why).");
    }
    // The first delta pull makes the server derive the layers' trees (per
    // layer: the tree of a layer kist applied is recorded on the way; a
    // registry derives it on first request) and the pack (per pair): the
    // CPU of each, once; every pull after is served from what it kept.
    let warm = node_with_v1(tools, nodes, &server, "delta-warmup")?;
    let cpu_before = server.cpu_seconds()?;
    for v in &versions {
        let layer = crate::native::sha256_file(&v.layer)?;
        ureq::get(&format!("{}/kist/v1/bench/app/trees/{layer}", server.base))
            .call()?
            .into_reader()
            .read_to_end(&mut Vec::new())?;
    }
    let cpu_trees = server.cpu_seconds()? - cpu_before;
    pull(tools, &warm, &server.base, "v2", &["--from", "v1"])?;
    let cpu_pack = server.cpu_seconds()? - cpu_before - cpu_trees;
    report.note(&format!(
        "Server CPU, once, then served from its cache: both layers' trees {cpu_trees:.2} s, the pack {cpu_pack:.2} s; ostree's static delta (`ostree static-delta generate`) {:.2} s.",
        ostree.delta_cpu
    ));
    let top = tops[1].clone();
    let mut lines = Vec::new();
    for (name, rate, rtt) in [
        ("loopback", u64::MAX / 4, Duration::ZERO),
        ("20mbit", SLOW_RATE, SLOW_RTT),
    ] {
        // One relay per registry, each counting what crosses it.
        let to_kist = Link::start_with(&host(&server), rate, rtt)?;
        let to_distribution = Link::start_with(&host(&distribution), rate, rtt)?;
        let to_ostree = Link::start_with(ostree.http.host(), rate, rtt)?;
        let to_casync = Link::start_with(casync.http.host(), rate, rtt)?;
        let carried = std::cell::RefCell::new(Vec::<Carried>::new());
        // Runs one timed pull of `label` into the node `dir`, counts what
        // crossed `link` and what the pull cost the node, and removes the
        // node: the node disk holds a few, not fifty.
        let counted = |label: &'static str,
                       link: &Link,
                       dir: &Path,
                       pull: &dyn Fn() -> anyhow::Result<Duration>| {
            let before = (link.carried(), crate::tools::cpu_seconds("self", true)?);
            let took = pull()?;
            let after = (link.carried(), crate::tools::cpu_seconds("self", true)?);
            carried.borrow_mut().push(Carried {
                label,
                bytes: after.0.0 - before.0.0,
                requests: after.0.1 - before.0.1,
                cpu: after.1 - before.1,
                disk: disk_usage(dir)?,
            });
            std::fs::remove_dir_all(dir)?;
            Ok(took)
        };
        let kist = |label: &'static str, from: bool| {
            let (link, top, server, counted) = (&to_kist, &top, &server, &counted);
            Contender::new(label, move |rep| {
                let node = if from {
                    node_with_v1(tools, nodes, server, &format!("delta-node-{rep}"))?
                } else {
                    scratch(nodes, &format!("delta-node-{rep}"))?
                };
                counted(label, link, &node, &|| {
                    let start = Instant::now();
                    let args: &[&str] = if from { &["--from", "v1"] } else { &[] };
                    pull(tools, &node, &link.base, "v2", args)?;
                    ready(&node, top, quick)?;
                    Ok(start.elapsed())
                })
            })
        };
        let ostree = |label: &'static str, static_delta: bool| {
            let (link, ostree, counted) = (&to_ostree, &ostree, &counted);
            Contender::new(label, move |rep| {
                let dir = scratch(nodes, &format!("delta-{label}-{rep}"))?;
                let repo = ostree.node_with_v1(&dir, &link.base)?;
                counted(label, link, &dir, &|| {
                    delta_ostree::pull(&repo, static_delta, quick)
                })
            })
        };
        let casync = {
            let (link, casync, counted) = (&to_casync, &casync, &counted);
            Contender::new("casync", move |rep| {
                let dir = scratch(nodes, &format!("delta-casync-{rep}"))?;
                let seed = casync.node_with_v1(&dir)?;
                counted("casync", link, &dir, &|| {
                    delta_casync::pull(&seed, &link.base, quick)
                })
            })
        };
        let containerd = |label: &'static str, from_distribution: bool| {
            let link = if from_distribution {
                &to_distribution
            } else {
                &to_kist
            };
            let (top, counted) = (&top, &counted);
            Contender::new(label, move |rep| {
                let dir = nodes.join(format!("delta-containerd-{label}-{rep}"));
                counted(label, link, &dir, &|| {
                    crate::delta_containerd::pull(&dir, &link.base, top, quick)
                })
            })
        };
        let samples = interleave(
            reps,
            vec![
                kist("kist-full", false),
                kist("kist-delta", true),
                containerd("containerd-docker-registry", true),
                containerd("containerd-kist-serve", false),
                ostree("ostree", false),
                ostree("ostree-static-delta", true),
                casync,
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
            let last = mine.last().context("a contender that never ran")?;
            let mut cpu: Vec<f64> = mine.iter().map(|c| c.cpu).collect();
            cpu.sort_by(f64::total_cmp);
            lines.push(format!(
                "delta {} {name} bytes={} requests={} ready_s={:.2} node_cpu_s={:.2} disk_after_mb={:.0}",
                s.name,
                last.bytes,
                last.requests,
                s.median().as_secs_f64(),
                cpu[cpu.len() / 2],
                last.disk as f64 / 1e6
            ));
        }
    }
    report.note("One line per contender and link: bytes from the server, HTTP requests, median seconds to ready, median CPU seconds of the node's processes (the pull's client and, for containerd, its daemon), and the node's disk after the pull (v1 included):");
    report.line("```");
    for l in lines {
        report.line(&l);
    }
    report.line("```");
    Ok(())
}

/// What one timed pull moved and cost.
struct Carried {
    label: &'static str,
    bytes: u64,
    requests: u64,
    /// CPU seconds of the node's processes.
    cpu: f64,
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

/// `kist pull [ARGS] BASE/app:TAG` into the store `node`.
fn pull(tools: &Tools, node: &Path, base: &str, tag: &str, args: &[&str]) -> anyhow::Result<()> {
    output(
        tools
            .kist(node)
            .arg("pull")
            .args(args)
            .arg(format!("{base}/bench/app:{tag}")),
    )?;
    Ok(())
}

/// A new node store that pulled v1 (straight from the server, untimed).
fn node_with_v1(
    tools: &Tools,
    work: &Path,
    server: &Running,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let node = scratch(work, name)?;
    pull(tools, &node, &server.base, "v1", &[])?;
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

/// Pushes a one-layer image of `layer` (tar+gzip) as `bench/app:<tag>`;
/// returns the layer's diff id (its snapshot's chain id).
fn push(server: &Running, layer: &Path, tag: &str) -> anyhow::Result<String> {
    let digest = crate::native::sha256_file(layer)?;
    crate::registry::push(server, "bench/app", layer, &digest, false)?;
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(layer)?).read_to_end(&mut tar)?;
    let diff_id = format!("sha256:{}", crate::native::sha256_hex(&tar));
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "config": {},
    })
    .to_string();
    let config_digest = format!("sha256:{}", crate::native::sha256_hex(config.as_bytes()));
    // POST then PUT: docker-registry takes no monolithic POST.
    let config_file = tempfile::NamedTempFile::new()?;
    std::fs::write(config_file.path(), &config)?;
    crate::registry::push(
        server,
        "bench/app",
        config_file.path(),
        &config_digest,
        false,
    )?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": std::fs::metadata(layer)?.len()}],
    })
    .to_string();
    ureq::put(&format!("{}/v2/bench/app/manifests/{tag}", server.base))
        .set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .send_bytes(manifest.as_bytes())?;
    Ok(diff_id)
}

/// `target/bench-cache/delta`, beside the bench binary's profile folder.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench binary is not in target/<profile>")?;
    let dir = target.join("bench-cache/delta");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The Debian bump's two layers, built once into `cache`.
fn debian(cache: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (v1, v2) = (cache.join("v1.tar.gz"), cache.join("v2.tar.gz"));
    if v1.is_file() && v2.is_file() {
        return Ok((v1, v2));
    }
    ensure!(
        crate::running_as_root(),
        "building the Debian images needs root (debootstrap, chroot)"
    );
    if !Command::new("sh")
        .args(["-c", "command -v debootstrap"])
        .status()?
        .success()
    {
        sh(
            "apt-get install -y --no-install-recommends debootstrap",
            cache,
        )?;
    }
    let (root1, root2) = (cache.join("rootfs-v1"), cache.join("rootfs-v2"));
    for root in [&root1, &root2] {
        if root.exists() {
            sh(&format!("rm -rf {}", root.display()), cache)?;
        }
    }
    sh(
        &format!(
            "debootstrap --variant=minbase --include=python3 bookworm {} http://deb.debian.org/debian",
            root1.display()
        ),
        cache,
    )?;
    sh(
        &format!("cp -a {} {}", root1.display(), root2.display()),
        cache,
    )?;
    let debs = root2.join("tmp/bump");
    std::fs::create_dir_all(&debs)?;
    let wanted: Vec<String> = BUMP.iter().map(|p| format!("{p}={NEW_VERSION}")).collect();
    sh(&format!("apt-get download {}", wanted.join(" ")), &debs)?;
    sh(
        &format!("chroot {} sh -c 'dpkg -i /tmp/bump/*.deb'", root2.display()),
        cache,
    )?;
    std::fs::remove_dir_all(&debs)?;
    for (root, out) in [(&root1, &v1), (&root2, &v2)] {
        sh(
            &format!(
                "rm -rf {r}/var/cache/apt/archives/*.deb {r}/var/lib/apt/lists/* && \
                 tar --sort=name --numeric-owner --xattrs -C {r} --exclude=./dev --exclude=./proc \
                 --exclude=./sys -cf - . | gzip -6 -n > {o}.part && mv {o}.part {o}",
                r = root.display(),
                o = out.display()
            ),
            cache,
        )?;
    }
    Ok((v1, v2))
}

/// A small synthetic pair: 2,000 files of 8 KiB, of which v2 changes the
/// first 16 bytes of every tenth (as a `.pyc` header changes) and adds a
/// few new files.
fn synthetic(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for version in [1u8, 2] {
        let path = dir.join(format!("v{version}.tar.gz"));
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path)?,
            flate2::Compression::new(6),
        );
        let mut b = tar::Builder::new(gz);
        let mut random = crate::big::Seeded::new(7);
        let mut data = vec![0u8; 8 << 10];
        for i in 0..2_000 {
            random.fill(&mut data);
            if version == 2 && i % 10 == 0 {
                data[..16].fill(version);
            }
            let mut h = crate::snapshots::file_header(data.len() as u64);
            b.append_data(
                &mut h,
                format!("usr/lib/python3.11/m{}/f{i}.pyc", i % 50),
                &data[..],
            )?;
        }
        let marker = format!("{version}\n");
        let mut h = crate::snapshots::file_header(marker.len() as u64);
        b.append_data(&mut h, "usr/lib/python3.11/version", marker.as_bytes())?;
        b.into_inner()?.finish()?.flush()?;
        out.push(path);
    }
    Ok((out.remove(0), out.remove(0)))
}
