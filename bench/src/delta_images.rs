//! The images of the delta scenario, built once and kept in
//! `target/bench-cache/delta`: the measured bump of the design notes as
//! one layer (Debian bookworm minbase with python3, python3.11
//! 3.11.2-6+deb12u8, and the same after `dpkg -i` of python3.11 +deb12u9
//! from bookworm-security, built with debootstrap), and as two layers (a
//! minbase layer both versions share, and python on top: what differs
//! from minbase, with whiteouts for what is gone). `--quick` uses small
//! synthetic ones instead (no network).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use serde_json::json;

use crate::registry_peers::Running;
use crate::tools::{scratch, sh};

/// The python3.11 packages of the bump, at their new version.
const BUMP: [&str; 4] = [
    "python3.11",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
];
const NEW_VERSION: &str = "3.11.2-6+deb12u9";

/// Two versions of one image: their layers (tar+gzip), bottom first, and
/// the repository they are pushed to (tags `v1` and `v2`).
pub struct Pair {
    pub repo: &'static str,
    pub v1: Vec<PathBuf>,
    pub v2: Vec<PathBuf>,
}

/// The bump as one layer per version.
pub fn one_layer(work: &Path, quick: bool) -> anyhow::Result<Pair> {
    let (v1, v2) = if quick {
        synthetic(&scratch(work, "delta-images")?)?
    } else {
        debian(&cache_dir()?)?
    };
    Ok(Pair {
        repo: "bench/app",
        v1: vec![v1],
        v2: vec![v2],
    })
}

/// The bump as two layers per version, from `one` (the one-layer pair):
/// a base both share, python on top.
pub fn two_layers(work: &Path, quick: bool, one: &Pair) -> anyhow::Result<Pair> {
    let (whole1, whole2) = (&one.v1[0], &one.v2[0]);
    let (base, v1, v2) = if quick {
        // The synthetic versions hold no base: they are the upper layer.
        let base = synthetic_base(&scratch(work, "delta-images-base")?)?;
        (base, whole1.clone(), whole2.clone())
    } else {
        debian_two_layers(&cache_dir()?, whole1, whole2)?
    };
    Ok(Pair {
        repo: "bench/app2",
        v1: vec![base.clone(), v1],
        v2: vec![base, v2],
    })
}

/// Pushes the image of `layers` (tar+gzip, bottom first) as
/// `REPO:<tag>`; returns its top snapshot's chain id.
pub fn push(server: &Running, repo: &str, layers: &[PathBuf], tag: &str) -> anyhow::Result<String> {
    let mut diff_ids = Vec::new();
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = crate::native::sha256_file(layer)?;
        crate::registry::push(server, repo, layer, &digest, false)?;
        let tar = flate2::read::GzDecoder::new(std::fs::File::open(layer)?);
        diff_ids.push(crate::native::sha256_reader(tar)?);
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": std::fs::metadata(layer)?.len(),
        }));
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    })
    .to_string();
    let config_digest = format!("sha256:{}", crate::native::sha256_hex(config.as_bytes()));
    // POST then PUT: docker-registry takes no monolithic POST.
    let config_file = tempfile::NamedTempFile::new()?;
    std::fs::write(config_file.path(), &config)?;
    crate::registry::push(server, repo, config_file.path(), &config_digest, false)?;
    let manifest = crate::registry::manifest(&config_digest, config.len(), descriptors);
    ureq::put(&format!("{}/v2/{repo}/manifests/{tag}", server.base))
        .set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .send_bytes(manifest.as_bytes())?;
    // The chain id of layers 1..n: the first diff id, then
    // sha256("<chain id of 1..n-1> <diff id n>").
    let mut chain = diff_ids[0].clone();
    for diff_id in &diff_ids[1..] {
        let joined = format!("{chain} {diff_id}");
        chain = format!("sha256:{}", crate::native::sha256_hex(joined.as_bytes()));
    }
    Ok(chain)
}

/// `target/bench-cache/delta`, beside the bench binary's profile folder.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
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
    let (root1, root2) = (cache.join("rootfs-v1"), cache.join("rootfs-v2"));
    for root in [&root1, &root2] {
        if root.exists() {
            sh(&format!("rm -rf {}", root.display()), cache)?;
        }
    }
    debootstrap(&root1, "--include=python3")?;
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
        tar_gz(root, out)?;
    }
    Ok((v1, v2))
}

/// Bookworm's minbase into `root`, with debootstrap's `extra` options.
fn debootstrap(root: &Path, extra: &str) -> anyhow::Result<()> {
    ensure!(
        crate::running_as_root(),
        "building the Debian images needs root (debootstrap, chroot)"
    );
    sh(
        "command -v debootstrap || apt-get install -y --no-install-recommends debootstrap",
        root.parent().context("a root with a parent")?,
    )?;
    sh(
        &format!(
            "debootstrap --variant=minbase {extra} bookworm {} http://deb.debian.org/debian",
            root.display()
        ),
        root.parent().context("a root with a parent")?,
    )
}

/// Packs the root filesystem `root` (without apt's caches, `/dev`,
/// `/proc` and `/sys`) into the layer `out`, as GNU tar and gzip -6 do.
fn tar_gz(root: &Path, out: &Path) -> anyhow::Result<()> {
    sh(
        &format!(
            "rm -rf {r}/var/cache/apt/archives/*.deb {r}/var/lib/apt/lists/* && \
             tar --sort=name --numeric-owner --xattrs -C {r} --exclude=./dev --exclude=./proc \
             --exclude=./sys -cf - . | gzip -6 -n > {o}.part && mv {o}.part {o}",
            r = root.display(),
            o = out.display()
        ),
        root.parent().context("a root with a parent")?,
    )
}

/// The bump as two layers, built once into `cache`: minbase (a fresh
/// debootstrap), and python for each version (what its root filesystem
/// holds that minbase does not, or holds otherwise; whiteouts for what
/// it lacks), so minbase plus python is exactly the one-layer image.
fn debian_two_layers(
    cache: &Path,
    one1: &Path,
    one2: &Path,
) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let base = cache.join("base.tar.gz");
    let (py1, py2) = (
        cache.join("python-v1.tar.gz"),
        cache.join("python-v2.tar.gz"),
    );
    if base.is_file() && py1.is_file() && py2.is_file() {
        return Ok((base, py1, py2));
    }
    let root = cache.join("rootfs-base");
    if root.exists() {
        sh(&format!("rm -rf {}", root.display()), cache)?;
    }
    debootstrap(&root, "")?;
    tar_gz(&root, &base)?;
    let lower = scratch(cache, "tree-base")?;
    unpack(&base, &lower)?;
    for (whole, out) in [(one1, &py1), (one2, &py2)] {
        let upper = scratch(cache, "tree-python")?;
        unpack(whole, &upper)?;
        diff_layer(&lower, &upper, out)?;
        std::fs::remove_dir_all(&upper)?;
    }
    std::fs::remove_dir_all(&lower)?;
    Ok((base, py1, py2))
}

/// Unpacks the layer `layer` (tar+gzip) into `dir`, owners and all.
fn unpack(layer: &Path, dir: &Path) -> anyhow::Result<()> {
    sh(
        &format!(
            "tar --numeric-owner --xattrs -xzf {} -C {}",
            layer.display(),
            dir.display()
        ),
        dir,
    )
}

/// Writes the layer (tar+gzip) that turns the tree `lower` into `upper`:
/// every entry of `upper` that `lower` lacks or holds otherwise (kind,
/// mode, owner, mtime, content, link target), and a whiteout for every
/// entry of `lower` that `upper` lacks.
fn diff_layer(lower: &Path, upper: &Path, out: &Path) -> anyhow::Result<()> {
    let part = out.with_extension("part");
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&part)?, flate2::Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    diff_dir(lower, upper, Path::new(""), &mut tar)?;
    tar.into_inner()?.finish()?.flush()?;
    std::fs::rename(part, out)?;
    Ok(())
}

/// [`diff_layer`] for the directory `rel` of both trees.
fn diff_dir(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    tar: &mut tar::Builder<impl Write>,
) -> anyhow::Result<()> {
    let names = |root: &Path| -> anyhow::Result<Vec<std::ffi::OsString>> {
        let mut names = match std::fs::read_dir(root.join(rel)) {
            Ok(dir) => dir
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?,
            Err(_) => Vec::new(),
        };
        names.sort();
        Ok(names)
    };
    let below = names(lower)?;
    for name in names(upper)? {
        let path = rel.join(&name);
        let up = std::fs::symlink_metadata(upper.join(&path))?;
        let same = match std::fs::symlink_metadata(lower.join(&path)) {
            Ok(low) => same_entry(&low, &up, &lower.join(&path), &upper.join(&path))?,
            Err(_) => false,
        };
        if !same {
            tar.append_path_with_name(upper.join(&path), &path)?;
        }
        if up.is_dir() {
            diff_dir(lower, upper, &path, tar)?;
        }
    }
    let gone =
        |name: &&std::ffi::OsString| std::fs::symlink_metadata(upper.join(rel).join(name)).is_err();
    for gone in below.iter().filter(gone) {
        let mut whiteout = tar::Header::new_gnu();
        whiteout.set_mode(0o644);
        whiteout.set_size(0);
        let mut name = std::ffi::OsString::from(".wh.");
        name.push(gone);
        tar.append_data(&mut whiteout, rel.join(name), std::io::empty())?;
    }
    Ok(())
}

/// Whether two entries are the same to a layer: kind, mode, owner,
/// mtime (seconds, as tar keeps it), and content or link target.
fn same_entry(
    low: &std::fs::Metadata,
    up: &std::fs::Metadata,
    low_path: &Path,
    up_path: &Path,
) -> anyhow::Result<bool> {
    let header = |m: &std::fs::Metadata| (m.mode(), m.uid(), m.gid(), m.mtime(), m.len());
    if low.file_type() != up.file_type() || header(low) != header(up) {
        return Ok(false);
    }
    Ok(if up.is_file() {
        std::fs::read(low_path)? == std::fs::read(up_path)?
    } else if up.is_symlink() {
        std::fs::read_link(low_path)? == std::fs::read_link(up_path)?
    } else {
        true
    })
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

/// A small synthetic base layer both synthetic versions share: 200 files
/// of 8 KiB outside python's tree.
fn synthetic_base(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("base.tar.gz");
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&path)?, flate2::Compression::new(6));
    let mut b = tar::Builder::new(gz);
    let mut random = crate::big::Seeded::new(11);
    let mut data = vec![0u8; 8 << 10];
    for i in 0..200 {
        random.fill(&mut data);
        let mut h = crate::snapshots::file_header(data.len() as u64);
        b.append_data(&mut h, format!("usr/share/base/f{i}"), &data[..])?;
    }
    b.into_inner()?.finish()?.flush()?;
    Ok(path)
}
