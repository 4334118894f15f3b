//! The programs the benchmark runs as whole processes: the `kist` binary
//! and, when a containerd socket is given, containerd's `ctr`.

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Tools {
    pub kist: PathBuf,
    /// containerd's socket, if containerd runs for this benchmark.
    pub ctr_socket: Option<PathBuf>,
}

impl Tools {
    /// `kist --store <store>`.
    pub fn kist(&self, store: &Path) -> Command {
        let mut c = Command::new(&self.kist);
        c.arg("--store").arg(store);
        c
    }

    /// `ctr -a <socket> -n kist-bench`, if containerd runs.
    pub fn ctr(&self) -> Option<Command> {
        let socket = self.ctr_socket.as_ref()?;
        let mut c = Command::new("ctr");
        c.arg("-a").arg(socket).args(["-n", "kist-bench"]);
        Some(c)
    }
}

/// Runs `cmd` with stdin from `input` (or nothing) and stdout discarded;
/// returns its wall time, failing if it fails.
pub fn timed(cmd: &mut Command, input: Option<&Path>) -> anyhow::Result<Duration> {
    let stdin = match input {
        Some(p) => Stdio::from(File::open(p).with_context(|| format!("opening {}", p.display()))?),
        None => Stdio::null(),
    };
    let start = Instant::now();
    let out = cmd
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(elapsed)
}

/// A new, empty scratch directory `name` under `work` (what an earlier
/// run left there is removed).
pub fn scratch(work: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = work.join(name);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs `script` with `sh -c` in `dir`; fails unless it succeeds.
pub fn sh(script: &str, dir: &Path) -> anyhow::Result<()> {
    let status = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .status()?;
    if !status.success() {
        bail!("`{script}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd`, which must succeed (else its stderr is the error); its
/// standard output. Its peak RSS counts towards [`peak_rss`].
pub fn output(cmd: &mut Command) -> anyhow::Result<Vec<u8>> {
    // GNU time runs it and writes its peak RSS (KiB): the rusage of a
    // child of this process would count this process's own RSS, which a
    // fork copies and an exec keeps as the high-water mark.
    let peak = tempfile::NamedTempFile::new()?;
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(peak.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let out = timed
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?} under /usr/bin/time (Debian `time`)"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // The last line: GNU time puts a line about the status before it.
    let kib: u64 = std::fs::read_to_string(peak.path())?
        .lines()
        .last()
        .context("GNU time wrote no peak RSS")?
        .trim()
        .parse()?;
    note_peak_rss(kib * 1024);
    Ok(out.stdout)
}

thread_local! {
    /// The largest peak RSS this thread has seen since [`peak_rss`] began.
    static PEAK_RSS: Cell<u64> = const { Cell::new(0) };
}

/// Counts a process's peak RSS (bytes) towards [`peak_rss`], for one not
/// run through [`output`] (a daemon).
pub fn note_peak_rss(bytes: u64) {
    PEAK_RSS.with(|p| p.set(p.get().max(bytes)));
}

/// Runs `f`; what it returned and the largest peak RSS, in bytes, of the
/// processes it ran on this thread (each process's own, not their sum).
pub fn peak_rss<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let outer = PEAK_RSS.with(|p| p.replace(0));
    let result = f();
    let peak = PEAK_RSS.with(|p| p.replace(outer.max(p.get())));
    (result, peak)
}

/// The peak RSS (`VmHWM`, bytes) of the running process `pid`.
pub fn running_peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

/// CPU seconds (user and system) that the process `pid` (a number or
/// `self`) used, or with `children`, that its waited-for children used.
pub fn cpu_seconds(pid: &str, children: bool) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc stat line")?
        .1
        .split_whitespace()
        .collect();
    let first = if children { 13 } else { 11 };
    let ticks: u64 = fields[first].parse::<u64>()? + fields[first + 1].parse::<u64>()?;
    // USER_HZ: 100 on every Linux architecture this runs on.
    Ok(ticks as f64 / 100.0)
}
