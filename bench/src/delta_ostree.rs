//! ostree as a contender of the delta scenario: v1 and v2 committed as
//! one branch of an archive repository served over HTTP, a node that
//! pulled v1 pulls v2 (object by object, or with the static delta
//! v1 → v2 that `ostree static-delta generate` made once), checks it out
//! and runs python in it. ostree's per-file binary deltas are what the
//! design notes measured smallest (1.44 MB for the bump).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::static_http::StaticHttp;
use crate::tools::output;

/// The server side: the repository, its two commits and what serves it.
pub struct Server {
    pub http: StaticHttp,
    v1: String,
    /// CPU seconds `static-delta generate` took, once.
    pub delta_cpu: f64,
}

/// `ostree ARGS`, which must succeed; its standard output, trimmed.
fn ostree(args: &[&str]) -> anyhow::Result<String> {
    let out = output(Command::new("ostree").args(args))?;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}

fn repo_arg(repo: &Path) -> String {
    format!("--repo={}", repo.display())
}

impl Server {
    /// Commits `v1` then `v2` (directories) to the branch `app` of a new
    /// archive repository under `dir`, makes the static delta between
    /// them, and serves it.
    pub fn start(dir: &Path, v1: &Path, v2: &Path) -> anyhow::Result<Self> {
        let repo = dir.join("repo");
        let r = repo_arg(&repo);
        ostree(&["init", &r, "--mode=archive"])?;
        let commit = |tree: &Path| {
            ostree(&[
                "commit",
                &r,
                "--branch=app",
                &format!("--tree=dir={}", tree.display()),
            ])
        };
        let first = commit(v1)?;
        let second = commit(v2)?;
        let cpu = crate::tools::cpu_seconds("self", true)?;
        ostree(&[
            "static-delta",
            "generate",
            &r,
            &format!("--from={first}"),
            &format!("--to={second}"),
        ])?;
        let delta_cpu = crate::tools::cpu_seconds("self", true)? - cpu;
        ostree(&["summary", "-u", &r])?;
        Ok(Self {
            http: StaticHttp::serve(&repo)?,
            v1: first,
            delta_cpu,
        })
    }

    /// A node under `dir` whose bare repository pulled v1 (straight from
    /// the server, untimed) and has the remote `origin` at `base` (the
    /// server through a link), its `app` at v1 so a pull of `app` goes
    /// from there.
    pub fn node_with_v1(&self, dir: &Path, base: &str) -> anyhow::Result<PathBuf> {
        let repo = dir.join("repo");
        let r = repo_arg(&repo);
        ostree(&["init", &r, "--mode=bare"])?;
        ostree(&[
            "remote",
            "add",
            &r,
            "--no-gpg-verify",
            "direct",
            &self.http.base,
        ])?;
        ostree(&["remote", "add", &r, "--no-gpg-verify", "origin", base])?;
        ostree(&["pull", &r, "direct", &format!("app@{}", self.v1)])?;
        ostree(&["refs", &r, "--create=origin:app", &self.v1])?;
        Ok(repo)
    }
}

/// Pulls `app` (v2) into the node repository `repo`, with or without the
/// static delta, checks it out and checks it is ready; pull start to
/// ready.
pub fn pull(repo: &Path, static_delta: bool, quick: bool) -> anyhow::Result<Duration> {
    let r = repo_arg(repo);
    let checkout = repo.with_file_name("checkout");
    let start = Instant::now();
    let mut args = vec!["pull", &r];
    if !static_delta {
        args.push("--disable-static-deltas");
    }
    args.extend(["origin", "app"]);
    ostree(&args)?;
    ostree(&[
        "checkout",
        &r,
        "origin:app",
        &checkout.display().to_string(),
    ])?;
    crate::delta::check_ready(&checkout, quick)?;
    Ok(start.elapsed())
}
