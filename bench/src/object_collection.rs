//! Collection of a bucket of many blobs, across nodes: a bucket of `n`
//! blob objects, half held by a repository and half referenced by
//! nothing, collected by one node (it condemns the strays), then by the
//! node that serves pushes (nothing to do but list: the steady state),
//! then by the first again (it deletes the strays). Each collection's
//! time and S3 requests (its own counting relay), and the latency of
//! pushes through the serving node meanwhile against the same pushes
//! idle: a collection must not block pushes.
//!
//! The objects are written straight to RGW with object_store (what kist
//! uses), 64 at a time: their bytes are not their digests, which no
//! collection reads.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;

use crate::link::Link;
use crate::objects::{Gateway, OnBucket, Start};
use crate::registry::{push, random_file};
use crate::report::Report;
use crate::tools::output;

/// The bucket the scenario uses.
const BUCKET: &str = "collect";
/// Bytes of each blob pushed while timing.
const PUSHED: u64 = 4096;

/// The `kist` command line on the scenario's store from node directory
/// `node`, reaching S3 through `endpoint`.
fn kist(kist: &Path, rgw: &Gateway, endpoint: &str, node: &Path) -> Command {
    let mut c = Command::new(kist);
    c.args(["--store", &format!("s3://{BUCKET}/registry"), "--node-dir"])
        .arg(node)
        .envs(rgw.env(endpoint));
    c
}

/// Writes `n` blob objects, every other one also held by the repository
/// `bench/held` (its record), 64 requests at a time.
fn populate(rgw: &Gateway, n: usize) -> anyhow::Result<()> {
    let store = AmazonS3Builder::new()
        .with_endpoint(&rgw.endpoint)
        .with_region("us-east-1")
        .with_bucket_name(BUCKET)
        .with_access_key_id(&rgw.access_key)
        .with_secret_access_key(&rgw.secret_key)
        .with_allow_http(true)
        .build()?;
    let keys = (0..n).flat_map(|i| {
        let hex = crate::native::sha256_hex(&i.to_le_bytes());
        let blob = format!("registry/blobs/sha256/{hex}");
        let held = format!("registry/repos/bench/held/_blobs/sha256/{hex}");
        std::iter::once(blob).chain((i % 2 == 0).then_some(held))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut puts = futures::stream::iter(keys)
            .map(|key| {
                let store = &store;
                async move { store.put(&Key::from(key), b"{}".to_vec().into()).await }
            })
            .buffer_unordered(64);
        while let Some(put) = puts.next().await {
            put?;
        }
        anyhow::Ok(())
    })
}

/// Push latencies: one blob of [`PUSHED`] bytes at a time through `r`
/// while `busy` holds (at least one), in seconds.
fn pushes(r: &OnBucket, dir: &Path, seed: &mut u64, busy: &AtomicBool) -> anyhow::Result<Vec<f64>> {
    let file = dir.join("collect-pushed");
    let mut took = Vec::new();
    loop {
        *seed += 1;
        let digest = random_file(&file, PUSHED, 50_000 + *seed)?;
        let started = Instant::now();
        push(&r.registry, "bench/pushed", &file, &digest, false)?;
        took.push(started.elapsed().as_secs_f64());
        if !busy.load(Ordering::Relaxed) {
            return Ok(took);
        }
    }
}

/// The `p`th percentile of `samples` (nearest rank).
fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// One collection's figures.
struct Collected {
    took: Duration,
    requests: u64,
    removed: String,
    latencies: Vec<f64>,
}

/// Runs `kist gc` from `node` through a new counting relay while `r`
/// takes pushes.
fn collect(
    tools: &crate::tools::Tools,
    rgw: &Gateway,
    node: &Path,
    r: &OnBucket,
    dir: &Path,
    seed: &mut u64,
) -> anyhow::Result<Collected> {
    let relay = Link::start(rgw.endpoint.trim_start_matches("http://"), u64::MAX)?;
    let busy = AtomicBool::new(true);
    let started = Instant::now();
    let (gc, latencies) = std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let out =
                output(kist(&tools.kist, rgw, &relay.base, node).args(["gc", "--format", "json"]));
            busy.store(false, Ordering::Relaxed);
            out
        });
        let latencies = pushes(r, dir, seed, &busy);
        (gc.join().expect("the gc thread"), latencies)
    });
    let took = started.elapsed();
    let said: serde_json::Value = serde_json::from_slice(&gc?)?;
    let removed = said["removed"].as_array().context("gc -o json")?;
    let bucket = removed
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("bucket:")));
    Ok(Collected {
        took,
        requests: relay.carried().1,
        removed: format!("{} from the bucket", bucket.count()),
        latencies: latencies?,
    })
}

pub fn run(
    report: &mut Report,
    tools: &crate::tools::Tools,
    dir: &Path,
    rgw: &Gateway,
    registry: Start<'_>,
    n: usize,
) -> anyhow::Result<()> {
    let serving = registry(BUCKET, None, "collect-serving")?;
    let collector = dir.join("collect-collector");
    for node in [&collector, &dir.join("collect-serving")] {
        output(kist(&tools.kist, rgw, &rgw.endpoint, node).args([
            "config",
            "set",
            "upload-grace",
            "0s",
        ]))?;
    }
    let filled = Instant::now();
    populate(rgw, n)?;
    let filled = filled.elapsed();
    let mut seed = 0;
    let idle = AtomicBool::new(false);
    let mut idle = pushes(&serving, dir, &mut seed, &idle)?;
    for _ in 1..200 {
        let once = AtomicBool::new(false);
        idle.extend(pushes(&serving, dir, &mut seed, &once)?);
    }
    let serving_dir = dir.join("collect-serving");
    let mut rows = Vec::new();
    for (what, node) in [
        ("another node: condemns the strays", &collector),
        ("the serving node: nothing to do", &serving_dir),
        ("another node again: deletes the strays", &collector),
    ] {
        // The bucket's clock counts seconds: a collection hears a node
        // only from a listing begun after the condemnation.
        std::thread::sleep(Duration::from_millis(1100));
        rows.push((what, collect(tools, rgw, node, &serving, dir, &mut seed)?));
    }
    report.line(&format!(
        "\n### Collection of a bucket of {n} blobs (half held by a repository, half strays), RGW\n"
    ));
    report.line(&format!(
        "Filled with {} objects in {:.1} s. Pushes of {PUSHED} B blobs through the serving node, \
         one at a time: idle p50 {:.1} ms, p99 {:.1} ms ({} pushes).\n",
        n + n.div_ceil(2),
        filled.as_secs_f64(),
        percentile(&mut idle, 50.0) * 1e3,
        percentile(&mut idle, 99.0) * 1e3,
        idle.len()
    ));
    report.line("| collection | time | S3 requests | removed | pushes meanwhile | put p50 | put p99 | p99 / idle p99 |");
    report.line("|---|---|---|---|---|---|---|---|");
    let idle99 = percentile(&mut idle, 99.0);
    for (what, mut c) in rows {
        let p99 = percentile(&mut c.latencies, 99.0);
        report.line(&format!(
            "| {what} | {:.1} s | {} | {} | {} | {:.1} ms | {:.1} ms | {:.2} |",
            c.took.as_secs_f64(),
            c.requests,
            c.removed,
            c.latencies.len(),
            percentile(&mut c.latencies, 50.0) * 1e3,
            p99 * 1e3,
            p99 / idle99
        ));
    }
    Ok(())
}
