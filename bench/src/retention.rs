//! Retention: `kist gc` over a large store of which a part is collectable,
//! and what a running collection costs writers (`put` latency while one
//! runs, against idle).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::measure::{Contender, interleave, time};
use crate::native;
use crate::report::{Report, Unit};
use crate::tools::{Tools, timed};

/// A store at `dir` with `total` small blobs written directly in its
/// layout, the first `released` of them released (their hold records
/// written as kist writes them): what a collection then removes.
fn populate(dir: &Path, total: usize, released: usize) -> anyhow::Result<()> {
    kist::Store::open(dir)?.put(b"lays out the store")?;
    let (blobs, holds) = (dir.join("blobs/sha256"), dir.join("holds/sha256"));
    let record = br#"{"holders":[],"released":[1,0],"released_by":["default"]}"#;
    for i in 0..total {
        let data = format!("blob {i}");
        let hex = native::sha256_hex(data.as_bytes());
        std::fs::write(blobs.join(&hex), data)?;
        if i < released {
            std::fs::write(holds.join(&hex), record)?;
        }
    }
    Ok(())
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    total: usize,
    released: usize,
    reps: usize,
) -> anyhow::Result<()> {
    let dir = work.join("retention");
    let fresh = |dir: &Path| -> anyhow::Result<()> {
        std::fs::remove_dir_all(dir).ok();
        populate(dir, total, released)
    };
    let samples = interleave(
        reps,
        vec![
            Contender::new(
                format!("kist gc, {released} of {total} blobs collectable"),
                |_| {
                    fresh(&dir)?;
                    timed(tools.kist(&dir).arg("gc"), None)
                },
            ),
            Contender::new("kist gc --dry-run (the same store)", |_| {
                fresh(&dir)?;
                timed(tools.kist(&dir).args(["gc", "--dry-run"]), None)
            }),
        ],
    )?;
    report.section(
        &format!("Collection of a store with {total} blobs"),
        Unit::Ops(released as u64),
        &samples,
    );
    latency(report, &dir, total, released)
}

/// `put` latencies of 4 KiB blobs with no collection running, and with one
/// running in a loop beside them.
fn latency(report: &mut Report, dir: &Path, total: usize, released: usize) -> anyhow::Result<()> {
    std::fs::remove_dir_all(dir).ok();
    populate(dir, total, released)?;
    let store = kist::Store::open(dir)?;
    let puts = |from: u64| -> anyhow::Result<Vec<Duration>> {
        (0..2000u64)
            .map(|i| {
                let data = (from + i).to_le_bytes().repeat(512);
                time(|| store.put(&data).map(drop).map_err(Into::into))
            })
            .collect()
    };
    let idle = puts(0)?;
    let stop = AtomicBool::new(false);
    let (busy, collections) = std::thread::scope(|s| -> anyhow::Result<_> {
        let collector = s.spawn(|| -> anyhow::Result<usize> {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                store
                    .retention()
                    .collect(false)?
                    .try_for_each(|r| r.map(drop))?;
                runs += 1;
            }
            Ok(runs)
        });
        let busy = puts(1 << 40);
        stop.store(true, Ordering::SeqCst);
        let runs = collector.join().expect("collector thread")?;
        Ok((busy?, runs))
    })?;
    let pct = |mut t: Vec<Duration>, p: f64| {
        t.sort();
        let at = ((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1;
        format!("{:.2} ms", t[at].as_secs_f64() * 1000.0)
    };
    report.note(&format!(
        "`put` of 4 KiB, 2000 each, idle and beside {collections} collection(s) looping \
         on the same store ({total} blobs):"
    ));
    report.line("| puts | p50 | p99 | max |");
    report.line("|---|---|---|---|");
    for (name, t) in [("idle", idle), ("during collections", busy)] {
        report.line(&format!(
            "| {name} | {} | {} | {} |",
            pct(t.clone(), 0.5),
            pct(t.clone(), 0.99),
            pct(t, 1.0)
        ));
    }
    Ok(())
}
