//! containerd on kist: two private containerd daemons in the same run, one
//! with its built-in content store and overlayfs snapshotter, one whose
//! content store and snapshotter `kistsnap` are `kist serve --containerd`
//! (proxy plugins); `ctr content ingest` and `ctr images import` of
//! 512 MiB, and `ctr content get` (32 KiB Read calls) of that blob.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::measure::{Contender, interleave, time};
use crate::native;
use crate::report::{Report, Unit};
use crate::tools::{Tools, timed};

/// A daemon stopped by its PID when dropped.
pub(crate) struct Daemon(Child);

impl Daemon {
    /// The daemon's peak RSS so far, in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        crate::tools::running_peak_rss(self.0.id())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn wait_for(socket: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "{} never listened",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A containerd with state in `dir`; `proxy`: kist's socket as its content
/// store and the `kistsnap` snapshotter.
pub(crate) fn containerd(dir: &Path, proxy: Option<&Path>) -> anyhow::Result<(Daemon, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let mut config = format!("version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n");
    if proxy.is_some() {
        config += "disabled_plugins = [\"io.containerd.content.v1.content\", \"io.containerd.grpc.v1.cri\"]\n";
    } else {
        config += "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n";
    }
    config += &format!(
        "[grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
         [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n"
    );
    if let Some(p) = proxy {
        let p = p.display();
        config += &format!(
            "[proxy_plugins]\n  [proxy_plugins.kist]\n    type = \"content\"\n    address = \"{p}\"\n\
             [proxy_plugins.kistsnap]\n    type = \"snapshot\"\n    address = \"{p}\"\n"
        );
    }
    std::fs::write(dir.join("config.toml"), config)?;
    let log = std::fs::File::create(dir.join("containerd.log"))?;
    let child = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting containerd")?;
    let socket = dir.join("c.sock");
    let daemon = Daemon(child);
    wait_for(&socket)?;
    Ok((daemon, socket))
}

pub(crate) fn ctr(socket: &Path) -> Command {
    let mut c = Command::new("ctr");
    c.arg("-a").arg(socket).args(["-n", "bench"]);
    c
}

/// An OCI archive of an image with one incompressible `size`-byte layer
/// (tar+gzip, level 1); returns the layer's digest.
fn image_archive(path: &Path, size: usize, seed: u64) -> anyhow::Result<String> {
    let data = crate::big::Seeded::new(seed).bytes(size);
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = crate::snapshots::file_header(size as u64);
    tar.append_data(&mut h, "data", &data[..])?;
    let tar = tar.into_inner()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    let layer = gz.finish()?;
    let digest = |b: &[u8]| format!("sha256:{}", native::sha256_hex(b));
    let config = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]}, "config": {}})
    .to_string();
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()}]})
    .to_string();
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest(manifest.as_bytes()), "size": manifest.len(),
        "annotations": {"io.containerd.image.name": "bench/big:latest"}}]})
    .to_string();
    let mut out = tar::Builder::new(std::fs::File::create(path)?);
    let mut put = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        out.append_data(&mut h, name, bytes)?;
        Ok(())
    };
    put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    put("index.json", index.as_bytes())?;
    for b in [&layer[..], config.as_bytes(), manifest.as_bytes()] {
        put(&format!("blobs/sha256/{}", native::sha256_hex(b)), b)?;
    }
    out.finish()?;
    Ok(digest(&layer))
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    size: usize,
    reps: usize,
) -> anyhow::Result<()> {
    let dir = work.join("containerd");
    let store = dir.join("kist-store");
    let socket = dir.join("kist.sock");
    std::fs::create_dir_all(&dir)?;
    let _kist = Daemon(
        tools
            .kist(&store)
            .args(["serve", "--no-http", "--gc-interval", "0s", "--containerd"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for(&socket)?;
    let (_builtin, builtin) = containerd(&dir.join("builtin"), None)?;
    let (_onkist, onkist) = containerd(&dir.join("onkist"), Some(&socket))?;
    let (mut ingested, mut archives) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let path = dir.join(format!("blob-{rep}"));
        crate::big::seeded_file(&path, size as u64, 0x1234_5678 + rep as u64)?;
        ingested.push(path);
        let archive = dir.join(format!("image-{rep}.tar"));
        image_archive(&archive, size, 99 + rep as u64)?;
        archives.push(archive);
    }
    let ingest = |socket: &Path, rep: usize, who: &str| -> anyhow::Result<Duration> {
        let reference = format!("bench-{who}-{rep}");
        timed(
            ctr(socket).args(["content", "ingest", &reference]),
            Some(&ingested[rep]),
        )
    };
    let samples = interleave(
        reps,
        vec![
            Contender::new("containerd built-in content store", |rep| {
                ingest(&builtin, rep, "builtin")
            }),
            Contender::new("containerd with kist's content store", |rep| {
                ingest(&onkist, rep, "kist")
            }),
        ],
    )?;
    report.section(
        &format!("ctr content ingest of {} MiB", size >> 20),
        Unit::Bytes(size as u64),
        &samples,
    );

    // Before the imports: their `images rm --sync` collects unreferenced
    // content, the ingested blobs too.
    let digest = native::sha256_file(&ingested[0])?;
    let get = |socket: &Path| {
        time(|| timed(ctr(socket).args(["content", "get", &digest]), None).map(|_| ()))
    };
    let samples = interleave(
        reps,
        vec![
            Contender::new("ctr content get, built-in", |_| get(&builtin)),
            Contender::new("ctr content get, kist (32 KiB Read RPCs)", |_| get(&onkist)),
        ],
    )?;
    report.section(
        &format!("ctr content get of {} MiB", size >> 20),
        Unit::Bytes(size as u64),
        &samples,
    );

    let import = |socket: &Path, snapshotter: &str, rep: usize| -> anyhow::Result<Duration> {
        let t = timed(
            ctr(socket)
                .args(["images", "import", "--snapshotter", snapshotter])
                .arg(&archives[rep]),
            None,
        )?;
        timed(
            ctr(socket).args(["images", "rm", "--sync", "bench/big:latest"]),
            None,
        )?;
        Ok(t)
    };
    let samples = interleave(
        reps,
        vec![
            Contender::new("containerd built-in (content + overlayfs)", |rep| {
                import(&builtin, "overlayfs", rep)
            }),
            Contender::new("containerd on kist (content + kistsnap)", |rep| {
                let t = import(&onkist, "kistsnap", rep)?;
                // What containerd released is cached in kist: collect it so
                // the next import writes everything again.
                timed(tools.kist(&store).arg("gc"), None)?;
                Ok(t)
            }),
        ],
    )?;
    report.section(
        &format!(
            "ctr images import of an image with a {} MiB layer (unpacked)",
            size >> 20
        ),
        Unit::Bytes(size as u64),
        &samples,
    );

    Ok(())
}
