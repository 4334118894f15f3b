//! Peak memory of `kist ingest` as the file grows: it must stay flat.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::big::human;
use crate::report::Report;
use crate::tools::Tools;

pub fn run(report: &mut Report, tools: &Tools, work: &Path, sizes: &[u64]) -> anyhow::Result<()> {
    report.note("### Peak RSS of `kist ingest`\n\n| file | peak RSS |\n|---|---|");
    for &size in sizes {
        // A sparse file: reading it costs no disk, the ingest does all the work.
        let src = work.join(format!("sparse-{}", human(size)));
        std::fs::File::create(&src)?.set_len(size)?;
        let store = work.join(format!("rss-{}", human(size)));
        // GNU time reports the child's peak RSS (KiB) on stderr.
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(&tools.kist)
            .arg("--store")
            .arg(&store)
            .arg("ingest")
            .arg(&src)
            .stdout(Stdio::null())
            .output()
            .context("running /usr/bin/time (Debian package `time`)")?;
        anyhow::ensure!(
            out.status.success(),
            "kist ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kib: u64 = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .parse()?;
        report.line(&format!(
            "| {} | {:.1} MiB |",
            human(size),
            kib as f64 / 1024.0
        ));
        std::fs::remove_file(&src)?;
    }
    Ok(())
}
