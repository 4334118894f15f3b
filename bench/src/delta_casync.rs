//! casync as a contender of the delta scenario: v1 and v2 as casync
//! indexes over one chunk store served over HTTP; a node that extracted
//! v1 extracts v2 with v1's tree as its seed (only chunks the seed lacks
//! are fetched) and runs python in it. Content-defined chunks are what
//! the design notes measured at 11.3 MB for the bump.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::static_http::StaticHttp;
use crate::tools::output;

/// `casync ARGS`, which must succeed.
fn casync(args: &[&str]) -> anyhow::Result<()> {
    output(Command::new("casync").args(args))?;
    Ok(())
}

/// The server side: `v1.caidx`, `v2.caidx` and their chunk store `store/`.
pub struct Server {
    pub http: StaticHttp,
}

impl Server {
    /// Indexes `v1` and `v2` (directories) into a new store under `dir`
    /// and serves it.
    pub fn start(dir: &Path, v1: &Path, v2: &Path) -> anyhow::Result<Self> {
        let store = format!("--store={}", dir.join("store").display());
        for (name, tree) in [("v1", v1), ("v2", v2)] {
            let index = dir.join(format!("{name}.caidx"));
            casync(&[
                "make",
                &store,
                &index.display().to_string(),
                &tree.display().to_string(),
            ])?;
        }
        Ok(Self {
            http: StaticHttp::serve(dir)?,
        })
    }

    /// A node under `dir` holding v1's tree, extracted straight from the
    /// server (untimed).
    pub fn node_with_v1(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let v1 = dir.join("v1");
        let base = &self.http.base;
        casync(&[
            "extract",
            &format!("--store={base}/store"),
            &format!("{base}/v1.caidx"),
            &v1.display().to_string(),
        ])?;
        Ok(v1)
    }
}

/// Extracts v2 from `base` (the server through a link) seeded with the
/// node's v1 tree `seed`, and checks it is ready; extract start to ready.
pub fn pull(seed: &Path, base: &str, quick: bool) -> anyhow::Result<Duration> {
    let v2 = seed.with_file_name("v2");
    let start = Instant::now();
    casync(&[
        "extract",
        &format!("--seed={}", seed.display()),
        &format!("--store={base}/store"),
        &format!("{base}/v2.caidx"),
        &v2.display().to_string(),
    ])?;
    crate::delta::check_ready(&v2, quick)?;
    Ok(start.elapsed())
}
