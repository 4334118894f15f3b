//! Start-up and listing: `kist info` and `kist ls` on stores of growing
//! size, compiling the component (empty cache) and with it cached, against
//! `ctr content ls`.

use std::path::Path;

use crate::measure::{Contender, interleave};
use crate::native;
use crate::report::{Report, Unit};
use crate::tools::{Tools, timed};

/// Fills a kist store at `dir` with `count` small blobs written directly
/// in its layout (fast; the layout is kist's own format) and returns one
/// digest.
fn populate(dir: &Path, count: usize) -> anyhow::Result<String> {
    let store = kist::Store::open(dir)?;
    let first = store.put(b"first")?;
    let blobs = dir.join("blobs/sha256");
    for i in 0..count.saturating_sub(1) {
        let data = format!("blob {i}");
        let hex = native::sha256_hex(data.as_bytes());
        std::fs::write(blobs.join(hex), data)?;
    }
    Ok(first)
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    counts: &[usize],
    reps: usize,
) -> anyhow::Result<()> {
    for &count in counts {
        let dir = work.join(format!("listing-{count}"));
        let digest = populate(&dir, count)?;
        let cold = tempfile::tempdir()?;
        let mut contenders = vec![
            Contender::new("kist info (compiled component cached)", |_| {
                timed(tools.kist(&dir).args(["info", &digest]), None)
            }),
            Contender::new("kist info (first call: compile)", |_| {
                std::fs::remove_dir_all(cold.path()).ok();
                timed(
                    tools
                        .kist(&dir)
                        .env("KIST_CACHE_DIR", cold.path())
                        .args(["info", &digest]),
                    None,
                )
            }),
            Contender::new("kist ls (cached)", |_| {
                timed(tools.kist(&dir).arg("ls"), None)
            }),
            Contender::new("kist ls -q (cached)", |_| {
                timed(tools.kist(&dir).args(["ls", "-q"]), None)
            }),
        ];
        if count <= 1000 && tools.ctr().is_some() {
            let ns = format!("listing-{count}");
            let src = work.join("ctr-listing-blob");
            for i in 0..count {
                std::fs::write(&src, format!("blob {i}"))?;
                timed(
                    tools.ctr().expect("containerd").args([
                        "-n",
                        &ns,
                        "content",
                        "ingest",
                        &format!("l{i}"),
                    ]),
                    Some(&src),
                )?;
            }
            contenders.push(Contender::new("ctr content ls", move |_| {
                timed(
                    tools
                        .ctr()
                        .expect("containerd")
                        .args(["-n", &ns, "content", "ls"]),
                    None,
                )
            }));
        }
        let samples = interleave(reps, contenders)?;
        report.section(
            &format!("`kist info` / `kist ls` with {count} blobs (wall time)"),
            Unit::Time,
            &samples,
        );
    }
    if tools.ctr().is_some() {
        report.note("`ctr content ls` runs only up to 1k blobs: filling containerd takes one `ctr content ingest` process per blob.");
    }
    Ok(())
}
