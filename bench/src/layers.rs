//! Desired-state layers: installing layers from a loopback HTTP server
//! against the pipeline an edge script runs per layer
//! (`curl | tee >(sha256sum) | tar xz`: download, hash, unpack, overlapped
//! by the pipe), and restoring cached layers (no download at all).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::measure::{Contender, interleave, time};
use crate::report::{Report, Unit};
use crate::tools::{Tools, timed};

/// Serves the files of `dir` by name over HTTP/1.1 on a loopback port
/// (the body through `std::io::copy`, which is `sendfile` here, so the
/// server is not what is measured); counts requests.
fn serve(dir: PathBuf) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let origin = format!("http://{}", listener.local_addr()?);
    let requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&requests);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let dir = dir.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut reader = BufReader::new(conn.try_clone()?);
                let mut line = String::new();
                reader.read_line(&mut line)?;
                let name = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_owned();
                // The headers, up to the empty line.
                while {
                    line.clear();
                    reader.read_line(&mut line)? > 2
                } {}
                let mut out = conn;
                let Ok(mut file) = std::fs::File::open(dir.join(&name)) else {
                    return out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
                };
                let len = file.metadata()?.len();
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
                )?;
                std::io::copy(&mut file, &mut out).map(drop)
            });
        }
    });
    Ok((origin, requests))
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    count: usize,
    size: u64,
    reps: usize,
) -> anyhow::Result<()> {
    let www = work.join("layers-www");
    std::fs::create_dir_all(&www)?;
    let mut desired = Vec::new();
    let mut bytes = 0;
    for i in 0..count {
        let name = format!("l{i}.tar.gz");
        let path = www.join(&name);
        // Seeds differ above bit 0 (the generator sets it).
        crate::snapshots::layer(&path, 50, size, (i as u64 + 1) << 8)?;
        let blob = std::fs::read(&path)?;
        bytes += blob.len() as u64;
        desired.push(kist::LayerDesc {
            digest: format!("sha256:{}", crate::native::sha256_hex(&blob)),
            size: blob.len() as u64,
            urls: Vec::new(),
            id: format!("l{i}"),
            version: String::new(),
            os_version: String::new(),
            annotations: Vec::new(),
        });
    }
    let (origin, requests) = serve(www.clone())?;
    for (i, d) in desired.iter_mut().enumerate() {
        d.urls = vec![format!("{origin}/l{i}.tar.gz")];
    }
    let list: Vec<serde_json::Value> = desired
        .iter()
        .map(|d| serde_json::json!({ "digest": d.digest, "size": d.size, "urls": d.urls }))
        .collect();
    let desired_file = work.join("desired.json");
    std::fs::write(&desired_file, serde_json::to_vec(&list)?)?;
    let policy = || {
        kist::FetchPolicy::default()
            .allow(&origin)
            .map_err(anyhow::Error::msg)
    };
    let options = kist::Layers::default_options();
    let fresh = |name: &str| {
        let dir = work.join(name);
        std::fs::remove_dir_all(&dir).ok();
        dir
    };
    let script = (0..count)
        .map(|i| {
            format!(
                "mkdir -p $0/{i} && curl -sf {origin}/l{i}.tar.gz | tee >(sha256sum >/dev/null) | tar xz -C $0/{i}"
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let samples = interleave(
        reps,
        vec![
            Contender::new(
                "curl, tee to sha256sum, tar xz (one pipeline per layer)",
                |_| {
                    let dir = fresh("layers-untarred");
                    timed(Command::new("bash").args(["-c", &script]).arg(&dir), None)
                },
            ),
            Contender::new("kist layer apply (CLI)", |_| {
                let dir = fresh("layers-cli");
                time(|| {
                    let out = tools
                        .kist(&dir)
                        .args(["layer", "apply"])
                        .arg(&desired_file)
                        .args(["--allow-origin", &origin])
                        .output()?;
                    anyhow::ensure!(
                        out.status.success(),
                        "kist layer apply: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    Ok(())
                })
            }),
            Contender::new("kist layers().process_desired (library)", |_| {
                let dir = fresh("layers-lib");
                let store = kist::Store::builder(&dir).fetch_policy(policy()?).open()?;
                time(|| {
                    let results =
                        store
                            .layers()
                            .process_desired(&desired, &options, &[], |_| {})?;
                    anyhow::ensure!(results.iter().all(|r| r.outcome.is_ok()), "{results:?}");
                    Ok(())
                })
            }),
        ],
    )?;
    report.section(
        &format!(
            "install {count} layers of {} MiB (tar+gzip) from a loopback HTTP server",
            size >> 20
        ),
        Unit::Bytes(bytes),
        &samples,
    );

    // Restores: the library's store has every layer; cache them all, then
    // time making them desired again.
    let store = kist::Store::builder(work.join("layers-lib"))
        .fetch_policy(policy()?)
        .open()?;
    let layers = store.layers();
    let before = requests.load(Ordering::SeqCst);
    let samples = interleave(
        reps,
        vec![Contender::new(
            format!("kist: restore {count} cached layers"),
            |_| {
                layers.process_desired(&[], &options, &[], |_| {})?;
                time(|| {
                    let results = layers.process_desired(&desired, &options, &[], |_| {})?;
                    anyhow::ensure!(
                        results
                            .iter()
                            .all(|r| matches!(r.outcome, Ok(kist::LayerAction::Restored))),
                        "{results:?}"
                    );
                    Ok(())
                })
            },
        )],
    )?;
    report.section(
        "restore of cached layers",
        Unit::Ops(count as u64),
        &samples,
    );
    report.note(&format!(
        "Restores made {} requests to the server (the installs {before}). The pipeline row \
         verifies nothing (sha256sum's output is thrown away) and keeps no state; kist checks \
         size and digest before it unpacks, records the layer and can resume.",
        requests.load(Ordering::SeqCst) - before
    ));
    for name in ["layers-untarred", "layers-cli", "layers-lib", "layers-www"] {
        std::fs::remove_dir_all(work.join(name)).ok();
    }
    Ok(())
}
