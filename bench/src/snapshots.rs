//! Snapshots: `apply` of a tar+gzip layer with many files against GNU
//! `tar xzf` into a directory (the physical job: inflate, create, write),
//! and prepare + commit + remove cycles against containerd's overlayfs
//! snapshotter driven by `ctr snapshots` (one process per step, as the
//! `kist snapshot` CLI; the library's in-process rate beside them), and
//! how the rate holds as the snapshots kept grow to thousands.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::measure::{Contender, interleave, time};
use crate::report::{Report, Unit};
use crate::tools::{Tools, timed};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The header of a `size`-byte file in a layer: root's, mode 0644, a
/// fixed time.
pub fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// A layer of `files` files of random bytes (from `seed`), `size` bytes
/// in all, gzip level 1 (random data hardly compresses: the blob is about
/// `size`).
pub fn layer(path: &Path, files: usize, size: u64, seed: u64) -> anyhow::Result<()> {
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::fast());
    let mut b = tar::Builder::new(std::io::BufWriter::new(gz));
    let per = (size / files as u64) as usize;
    let mut random = crate::big::Seeded::new(seed);
    let mut data = vec![0u8; per];
    for i in 0..files {
        random.fill(&mut data);
        let mut h = file_header(per as u64);
        b.append_data(&mut h, format!("usr/share/d{}/f{i}", i % 100), &data[..])?;
    }
    b.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .finish()?
        .flush()?;
    Ok(())
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    (files, size): (usize, u64),
    (cycles, kept): (usize, usize),
    reps: usize,
) -> anyhow::Result<()> {
    let blob = work.join("layer.tar.gz");
    layer(&blob, files, size, files as u64)?;
    let dir = work.join("snapshots-store");
    let store = kist::Store::open(&dir)?;
    let digest = store.put(&std::fs::read(&blob)?)?;
    let snapshots = store.snapshots();
    let target = work.join("untarred");
    let samples = interleave(
        reps,
        vec![
            Contender::new("tar xzf into a directory", |_| {
                std::fs::remove_dir_all(&target).ok();
                std::fs::create_dir(&target)?;
                timed(
                    Command::new("tar")
                        .arg("xzf")
                        .arg(&blob)
                        .arg("-C")
                        .arg(&target),
                    None,
                )
            }),
            Contender::new("kist snapshots().apply (library)", |rep| {
                let key = format!("lib-{rep}");
                snapshots.prepare(&key, None, &[])?;
                let t = time(|| Ok(snapshots.apply(&key, &digest, GZIP).map(|_| ())?))?;
                snapshots.remove(&key)?;
                Ok(t)
            }),
            Contender::new("kist snapshot apply (CLI)", |rep| {
                let key = format!("cli-{rep}");
                snapshots.prepare(&key, None, &[])?;
                let t = timed(
                    tools.kist(&dir).args(["snapshot", "apply", &key, &digest]),
                    None,
                )?;
                snapshots.remove(&key)?;
                Ok(t)
            }),
        ],
    )?;
    let unpacked = size;
    report.section(
        &format!(
            "apply: a {} MiB tar+gzip layer of {files} files",
            size >> 20
        ),
        Unit::Bytes(unpacked),
        &samples,
    );
    std::fs::remove_dir_all(&target).ok();

    // Cycles: prepare, commit, remove.
    let mut contenders = vec![
        Contender::new(
            format!("kist snapshot CLI, {cycles} cycles (3 processes each)"),
            |rep| {
                time(|| {
                    for i in 0..cycles {
                        let (key, name) = (format!("c{rep}-{i}"), format!("n{rep}-{i}"));
                        timed(tools.kist(&dir).args(["snapshot", "prepare", &key]), None)?;
                        timed(
                            tools.kist(&dir).args(["snapshot", "commit", &name, &key]),
                            None,
                        )?;
                        timed(tools.kist(&dir).args(["snapshot", "rm", &name]), None)?;
                    }
                    Ok(())
                })
            },
        ),
        Contender::new(format!("kist library, {cycles} cycles"), |rep| {
            time(|| {
                for i in 0..cycles {
                    let (key, name) = (format!("l{rep}-{i}"), format!("m{rep}-{i}"));
                    snapshots.prepare(&key, None, &[])?;
                    snapshots.commit(&name, &key, &[])?;
                    snapshots.remove(&name)?;
                }
                Ok(())
            })
        }),
    ];
    if tools.ctr().is_some() {
        contenders.insert(
            0,
            Contender::new(
                format!("containerd overlayfs via ctr, {cycles} cycles (3 processes each)"),
                |rep| {
                    time(|| {
                        for i in 0..cycles {
                            let (key, name) = (format!("c{rep}-{i}"), format!("n{rep}-{i}"));
                            let ctr = |args: &[&str]| -> anyhow::Result<()> {
                                let mut c = tools.ctr().expect("containerd runs");
                                c.args(["snapshots", "--snapshotter", "overlayfs"])
                                    .args(args);
                                timed(&mut c, None).map(|_| ())
                            };
                            ctr(&["prepare", &key])?;
                            ctr(&["commit", &name, &key])?;
                            ctr(&["rm", &name])?;
                        }
                        Ok(())
                    })
                },
            ),
        );
    }
    let samples = interleave(reps, contenders)?;
    report.section(
        "prepare + commit + remove cycles",
        Unit::Ops(cycles as u64),
        &samples,
    );
    report.note(
        "ctr and the kist CLI both start a process per step; the library row is kist without \
         process start-up (containerd's in-process snapshotter cannot be driven without Go).",
    );
    growth(report, &store, kept)
}

/// Prepare + commit of `kept` snapshots that stay (in chains of ten, as
/// the layers of images), timed per tenth: the rate of the last tenth
/// is what a store that size sustains.
fn growth(report: &mut Report, store: &kist::Store, kept: usize) -> anyhow::Result<()> {
    let snapshots = store.snapshots();
    let step = (kept / 10).max(1);
    let mut rates = Vec::new();
    for block in 0..kept.div_ceil(step) {
        let t = time(|| {
            for i in block * step..((block + 1) * step).min(kept) {
                let (key, name) = (format!("grow-{i}-active"), format!("grow-{i}"));
                let parent = (i % 10 != 0).then(|| format!("grow-{}", i - 1));
                snapshots.prepare(&key, parent.as_deref(), &[])?;
                snapshots.commit(&name, &key, &[])?;
            }
            Ok(())
        })?;
        rates.push(step as f64 / t.as_secs_f64());
    }
    let (first, last) = (rates[0], rates[rates.len() - 1]);
    report.note(&format!(
        "Snapshot metadata as it grows (library, prepare + commit of {kept} snapshots kept, \
         in chains of ten): first {step} at {first:.0}/s, last {step} at {last:.0}/s ({:.2}x)",
        last / first
    ));
    Ok(())
}
