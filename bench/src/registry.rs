//! The OCI registry: `kist serve` against Debian's `docker-registry`
//! (distribution 2.8) on loopback, in the same run, interleaved: pushes of
//! a 1 GiB layer (monolithic and in 64 MiB chunks), pulls (one, and 16 at
//! once), `skopeo copy` of a 10-layer image in and out, and tag updates
//! in a repository with many tags.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::measure::{Contender, interleave, time};
use crate::native;
use crate::registry_peers::{self, Running};
use crate::report::{Report, Unit};
use crate::tools::{Tools, timed};

/// The chunk size of chunked pushes.
const CHUNK: u64 = 64 << 20;

/// An absolute URL for a `Location` (distribution answers absolute URLs,
/// kist relative ones).
fn absolute(r: &Running, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{}{location}", r.base)
    }
}

fn with_query(url: &str, q: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{q}")
}

/// Pushes `file` (`size` bytes, digest `digest`) to `repo` of `r`, in one
/// PUT or in `CHUNK` PATCHes.
pub fn push(
    r: &Running,
    repo: &str,
    file: &Path,
    digest: &str,
    chunked: bool,
) -> anyhow::Result<()> {
    let size = std::fs::metadata(file)?.len();
    let started = ureq::post(&format!("{}/v2/{repo}/blobs/uploads/", r.base)).call()?;
    let mut location = absolute(r, started.header("location").context("no Location")?);
    if chunked {
        let mut at = 0;
        while at < size {
            let n = CHUNK.min(size - at);
            let mut f = File::open(file)?;
            f.seek(SeekFrom::Start(at))?;
            let done = ureq::patch(&location)
                .set("Content-Range", &format!("{at}-{}", at + n - 1))
                .set("Content-Length", &n.to_string())
                .set("Content-Type", "application/octet-stream")
                .send(f.take(n))?;
            location = absolute(r, done.header("location").context("no Location")?);
            at += n;
        }
        ureq::put(&with_query(&location, &format!("digest={digest}"))).send_bytes(b"")?;
    } else {
        ureq::put(&with_query(&location, &format!("digest={digest}")))
            .set("Content-Length", &size.to_string())
            .set("Content-Type", "application/octet-stream")
            .send(File::open(file)?)?;
    }
    Ok(())
}

/// GETs a blob to nowhere; returns its length.
pub fn pull(r: &Running, repo: &str, digest: &str) -> anyhow::Result<u64> {
    pull_with(&ureq::agent(), &r.base, repo, digest, None)
}

/// GETs a blob to nowhere on `agent` (its connections kept), with an
/// `Authorization` value if given; returns its length.
pub fn pull_with(
    agent: &ureq::Agent,
    base: &str,
    repo: &str,
    digest: &str,
    authorization: Option<&str>,
) -> anyhow::Result<u64> {
    let mut request = agent.get(&format!("{base}/v2/{repo}/blobs/{digest}"));
    if let Some(value) = authorization {
        request = request.set("Authorization", value);
    }
    let got = request.call()?;
    Ok(std::io::copy(&mut got.into_reader(), &mut std::io::sink())?)
}

/// A file of `size` pseudo-random bytes (seeded: every run differs) and
/// its digest.
pub fn random_file(path: &Path, size: u64, seed: u64) -> anyhow::Result<String> {
    crate::big::seeded_file(path, size, seed)?;
    native::sha256_file(path)
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    size: u64,
    reps: usize,
    tags: usize,
) -> anyhow::Result<()> {
    let dir = crate::tools::scratch(work, "registry")?;
    let registries = [
        registry_peers::distribution(&dir.join("distribution"))?,
        registry_peers::kist(&tools.kist, &dir.join("kist"))?,
    ];
    let file = dir.join("layer");
    let mib = size >> 20;
    for chunked in [false, true] {
        let how = if chunked {
            "in 64 MiB chunks"
        } else {
            "monolithic"
        };
        let contenders = registries
            .iter()
            .map(|r| {
                let file = &file;
                Contender::new(r.name, move |rep| {
                    // New bytes every time: nothing is deduplicated.
                    let digest = random_file(file, size, rep as u64 * 2 + u64::from(chunked))?;
                    time(|| push(r, "bench/push", file, &digest, chunked))
                })
            })
            .collect();
        let samples = interleave(reps, contenders)?;
        report.section(
            &format!("Registry push of a {mib} MiB layer, {how}"),
            Unit::Bytes(size),
            &samples,
        );
    }

    // Pulls: one blob both registries hold.
    let digest = random_file(&file, size, 999)?;
    for r in &registries {
        push(r, "bench/pull", &file, &digest, false)?;
    }
    std::fs::remove_file(&file)?;
    let cpu: Vec<std::cell::Cell<f64>> = registries.iter().map(|_| Default::default()).collect();
    let contenders = registries
        .iter()
        .zip(&cpu)
        .map(|(r, cpu)| {
            let digest = &digest;
            Contender::new(r.name, move |_| {
                let before = r.cpu_seconds()?;
                let took = time(|| pull(r, "bench/pull", digest).map(drop))?;
                cpu.set(cpu.get() + r.cpu_seconds()? - before);
                Ok(took)
            })
        })
        .collect();
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!("Registry pull of a {mib} MiB layer"),
        Unit::Bytes(size),
        &samples,
    );
    let gib = (reps as u64 * size) as f64 / f64::from(1 << 30);
    report.note(&format!(
        "Server CPU per GiB pulled (user + system, /proc): {}",
        registries
            .iter()
            .zip(&cpu)
            .map(|(r, cpu)| format!("{} {:.2} s", r.name, cpu.get() / gib))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let contenders = registries
        .iter()
        .map(|r| {
            let digest = &digest;
            Contender::new(r.name, move |_| {
                time(|| {
                    std::thread::scope(|s| {
                        let pulls: Vec<_> = (0..16)
                            .map(|_| s.spawn(|| pull(r, "bench/pull", digest)))
                            .collect();
                        pulls
                            .into_iter()
                            .try_for_each(|p| p.join().expect("pull thread").map(drop))
                    })
                })
            })
        })
        .collect();
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!("Registry: 16 concurrent pulls of the {mib} MiB layer (aggregate)"),
        Unit::Bytes(16 * size),
        &samples,
    );

    after_push(report, &registries, &file, size, reps)?;
    skopeo(report, &registries, &dir, reps)?;
    tag_updates(report, &registries, &dir, tags)?;
    Ok(())
}

/// A pull right after its push, against `dd iflag=direct` of the blob
/// file kist stored (the device's read limit: kist writes blobs with
/// direct I/O, so they are not in the page cache after a push). Dirty
/// pages are written back between the push and the timed pull, so one
/// contender's buffered writes do not compete with another's reads.
fn after_push(
    report: &mut Report,
    registries: &[Running],
    file: &Path,
    size: u64,
    reps: usize,
) -> anyhow::Result<()> {
    let mib = size >> 20;
    let kist_blob = |digest: &str| {
        file.parent()
            .expect("a scratch directory")
            .join("kist/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let mut contenders: Vec<Contender> = registries
        .iter()
        .map(|r| {
            Contender::new(r.name, move |rep| {
                let digest = random_file(file, size, 5000 + rep as u64)?;
                push(r, "bench/fresh", file, &digest, false)?;
                settle()?;
                time(|| pull(r, "bench/fresh", &digest).map(drop))
            })
        })
        .collect();
    let kist = registries
        .iter()
        .find(|r| r.name == "kist serve")
        .context("kist among the registries")?;
    contenders.push(Contender::new(
        "dd iflag=direct (kist's blob)",
        move |rep| {
            let digest = random_file(file, size, 7000 + rep as u64)?;
            push(kist, "bench/fresh", file, &digest, false)?;
            settle()?;
            let blob = kist_blob(&digest);
            time(|| {
                let out = std::process::Command::new("dd")
                    .arg(format!("if={}", blob.display()))
                    .args(["of=/dev/null", "bs=4M", "iflag=direct", "status=none"])
                    .status()?;
                anyhow::ensure!(out.success(), "dd failed");
                Ok(())
            })
        },
    ));
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!("Registry pull of a {mib} MiB layer right after its push"),
        Unit::Bytes(size),
        &samples,
    );
    Ok(())
}

/// Writes back every dirty page (`sync`): a contender's buffered push
/// must not be flushed to the device while the next one reads from it.
fn settle() -> anyhow::Result<()> {
    anyhow::ensure!(
        std::process::Command::new("sync").status()?.success(),
        "sync failed"
    );
    Ok(())
}

/// `skopeo copy` of a 10-layer image (8 MiB random layers) into each
/// registry and back out to a fresh OCI layout.
fn skopeo(
    report: &mut Report,
    registries: &[Running],
    dir: &Path,
    reps: usize,
) -> anyhow::Result<()> {
    let contenders = registries
        .iter()
        .map(|r| {
            Contender::new(r.name, move |rep| {
                let layout = dir.join(format!("image-{rep}"));
                let out = dir.join(format!("out-{rep}"));
                std::fs::remove_dir_all(&layout).ok();
                std::fs::remove_dir_all(&out).ok();
                write_image(&layout, 10, 8 << 20, rep as u64)?;
                let target = format!(
                    "docker://{}/bench/skopeo:r{rep}",
                    r.base.trim_start_matches("http://")
                );
                let copy = |from: String, to: String| {
                    timed(
                        std::process::Command::new("skopeo").args([
                            "--insecure-policy",
                            "copy",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                            &from,
                            &to,
                        ]),
                        None,
                    )
                };
                let push = copy(format!("oci:{}:v1", layout.display()), target.clone())?;
                let pull = copy(target, format!("oci:{}:v1", out.display()))?;
                std::fs::remove_dir_all(&layout).ok();
                std::fs::remove_dir_all(&out).ok();
                Ok(push + pull)
            })
        })
        .collect();
    let samples = interleave(reps, contenders)?;
    report.section(
        "Registry: `skopeo copy` of a 10-layer image (80 MiB) in and back out",
        Unit::Bytes(160 << 20),
        &samples,
    );
    Ok(())
}

/// An OCI layout at `dir` with `layers` random (uncompressed tar-like)
/// layers of `size` bytes.
fn write_image(dir: &Path, layers: usize, size: u64, seed: u64) -> anyhow::Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let write = |bytes: &[u8]| -> anyhow::Result<String> {
        let hex = native::sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes)?;
        Ok(format!("sha256:{hex}"))
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..layers {
        let path = blobs.join("tmp");
        let digest = random_file(&path, size, seed * 100 + i as u64 + 7)?;
        std::fs::rename(&path, blobs.join(digest.trim_start_matches("sha256:")))?;
        descriptors.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}));
        diff_ids.push(digest);
    }
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).to_string();
    let config_digest = write(config.as_bytes())?;
    let manifest = manifest(&config_digest, config.len(), descriptors);
    let manifest_digest = write(manifest.as_bytes())?;
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }]});
    std::fs::write(dir.join("index.json"), index.to_string())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

/// Tag updates: `tags` tags pushed to one repository (one tiny image),
/// timed per thousand; the rate of the last thousand is what a
/// repository that size sustains.
fn tag_updates(
    report: &mut Report,
    registries: &[Running],
    dir: &Path,
    tags: usize,
) -> anyhow::Result<()> {
    report.note(&format!(
        "Tag updates (PUT of one manifest under {tags} new tags, one repository): rate of the first and the last {} tags",
        (tags / 10).max(1)
    ));
    report.line("| registry | first tags/s | last tags/s | total |");
    report.line("|---|---|---|---|");
    let config_file = dir.join("config.json");
    std::fs::write(&config_file, b"{}")?;
    let config_digest = native::sha256_file(&config_file)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2},
        "layers": [],
    })
    .to_string();
    let step = (tags / 10).max(1);
    for r in registries {
        push(r, "bench/tags", &config_file, &config_digest, false)?;
        let mut rates = Vec::new();
        let all = std::time::Instant::now();
        for block in 0..tags.div_ceil(step) {
            let t = time(|| {
                for i in block * step..((block + 1) * step).min(tags) {
                    ureq::put(&format!("{}/v2/bench/tags/manifests/t{i}", r.base))
                        .set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                        .send_bytes(manifest.as_bytes())?;
                }
                Ok(())
            })?;
            rates.push(step as f64 / t.as_secs_f64());
        }
        report.line(&format!(
            "| {} | {:.0} | {:.0} | {:.1} s |",
            r.name,
            rates[0],
            rates[rates.len() - 1],
            all.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// An OCI image manifest (JSON) of the config `config_digest`
/// (`config_len` bytes) and the layer descriptors `layers`.
pub fn manifest(config_digest: &str, config_len: usize, layers: Vec<serde_json::Value>) -> String {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_len},
        "layers": layers,
    })
    .to_string()
}
