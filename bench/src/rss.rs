//! Peak memory of `kist ingest` as the file grows: it must stay flat.

use std::path::Path;

use crate::big::human;
use crate::report::Report;
use crate::tools::{Tools, output, peak_rss};

pub fn run(report: &mut Report, tools: &Tools, work: &Path, sizes: &[u64]) -> anyhow::Result<()> {
    report.note("### Peak RSS of `kist ingest`\n\n| file | peak RSS |\n|---|---|");
    for &size in sizes {
        // A sparse file: reading it costs no disk, the ingest does all the work.
        let src = work.join(format!("sparse-{}", human(size)));
        std::fs::File::create(&src)?.set_len(size)?;
        let store = work.join(format!("rss-{}", human(size)));
        let (ingested, peak) = peak_rss(|| output(tools.kist(&store).arg("ingest").arg(&src)));
        ingested?;
        report.line(&format!(
            "| {} | {:.1} MiB |",
            human(size),
            peak as f64 / (1 << 20) as f64
        ));
        std::fs::remove_file(&src)?;
    }
    Ok(())
}
