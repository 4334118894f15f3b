//! The two registries the registry scenario compares, as processes on
//! loopback ports, each stopped by its PID when dropped: `kist serve` and
//! Debian's `docker-registry` (distribution 2.8, filesystem storage).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A running registry: its base URL (`http://127.0.0.1:<port>`).
pub struct Running {
    pub name: &'static str,
    pub base: String,
    child: Child,
}

impl Running {
    /// CPU seconds (user and system) the registry process has used.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        crate::tools::cpu_seconds(&self.child.id().to_string(), false)
    }

    /// The registry's peak RSS so far, in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        crate::tools::running_peak_rss(self.child.id())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `kist serve` on a store at `dir`, collections off.
pub fn kist(kist: &Path, dir: &Path) -> anyhow::Result<Running> {
    kist_with(kist, dir, &[])
}

/// `kist serve` on a store at `dir`, collections off, with `flags`.
pub fn kist_with(kist: &Path, dir: &Path, flags: &[&str]) -> anyhow::Result<Running> {
    kist_on(kist, dir.as_os_str(), flags, &[])
}

/// `kist serve --store store` (a directory or `s3://…`), collections off,
/// with `flags` and the environment variables `envs`.
pub fn kist_on(
    kist: &Path,
    store: &std::ffi::OsStr,
    flags: &[&str],
    envs: &[(&str, &str)],
) -> anyhow::Result<Running> {
    let mut child = Command::new(kist)
        .args(["serve", "--addr", "127.0.0.1:0", "--gc-interval", "0s"])
        .args(flags)
        .arg("--store")
        .arg(store)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting kist serve")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let base = line
        .split_whitespace()
        .nth(2)
        .context("kist serve printed no address")?
        .to_owned();
    Ok(Running {
        name: "kist serve",
        base,
        child,
    })
}

/// `docker-registry serve` with its storage under `dir`.
pub fn distribution(dir: &Path) -> anyhow::Result<Running> {
    let storage = format!(
        "  filesystem:\n    rootdirectory: {}\n",
        dir.join("data").display()
    );
    distribution_with(dir, &storage)
}

/// `docker-registry serve` with its config under `dir` and `storage` (the
/// driver's YAML, indented under `storage:`).
pub fn distribution_with(dir: &Path, storage: &str) -> anyhow::Result<Running> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::create_dir_all(dir)?;
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n{storage}  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
        ),
    )?;
    // Its S3 client fails on any CA bundle (see ceph-rgw.md).
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting docker-registry (apt install docker-registry)")?;
    let base = format!("http://127.0.0.1:{port}");
    let running = Running {
        name: "docker-registry 2.8",
        base,
        child,
    };
    for _ in 0..100 {
        if ureq::get(&format!("{}/v2/", running.base)).call().is_ok() {
            return Ok(running);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("docker-registry did not answer on {}", running.base)
}
