//! Test support for kist: the conformance suite every store
//! implementation runs, and helpers shared by the tests in `tests/`.

pub mod conformance;
pub mod containerd;
pub mod http;
pub mod layer_server;
/// Layers written entry by entry.
pub mod layer_tar;
pub mod lossy;
pub mod oci;
pub mod registry;
pub mod rgw;
pub mod token_server;
pub mod trees;
pub mod upstream;

use std::path::Path;

use kist::Store;
use sha2::{Digest, Sha256, Sha512};

/// A store directory that lives as long as the test, and a way to open
/// store handles on it (each a fresh host with fresh instances).
pub struct Harness {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    open: fn(&Path) -> Store,
}

impl Harness {
    /// An empty store directory opened with `open`. It lies in a private
    /// temporary directory, so tests can check nothing lands beside it.
    pub fn new(open: fn(&Path) -> Store) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("store");
        std::fs::create_dir(&root).expect("store dir");
        Self {
            _dir: dir,
            root,
            open,
        }
    }

    /// Opens a new handle on the store (as a restarted host would).
    pub fn store(&self) -> Store {
        (self.open)(&self.root)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }
}

/// Opens a store with the component embedded in the `kist` crate.
pub fn open_embedded(dir: &Path) -> Store {
    Store::open(dir).expect("opening the store")
}

/// `sha256:<hex>` of `bytes`, computed natively.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// `sha512:<hex>` of `bytes`, computed natively.
pub fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex(&Sha512::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every problem `kist fsck` finds (repairing them when `repair`), sorted
/// by path.
pub fn fsck(store: &Store, repair: bool) -> Vec<kist::Problem> {
    let mut problems: Vec<kist::Problem> = store
        .check(repair)
        .expect("starting a check")
        .collect::<kist::Result<_>>()
        .expect("check");
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    problems
}

/// A clock the test moves: every handle opened from one shares it.
#[derive(Clone)]
pub struct FakeClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClock {
    /// A clock at the system's time, to the second.
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        Self(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
            now.as_secs(),
        )))
    }

    /// Moves the clock on by `by` (whole seconds).
    pub fn advance(&self, by: std::time::Duration) {
        self.0
            .fetch_add(by.as_secs(), std::sync::atomic::Ordering::SeqCst);
    }

    /// Opens the store at `dir` on this clock.
    pub fn open(&self, dir: &Path) -> Store {
        self.builder(dir).open().unwrap()
    }

    /// A builder for the store at `dir` on this clock.
    pub fn builder(&self, dir: &Path) -> kist::StoreBuilder {
        let seconds = std::sync::Arc::clone(&self.0);
        Store::builder(dir).clock(std::sync::Arc::new(move || {
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(seconds.load(std::sync::atomic::Ordering::SeqCst))
        }))
    }
}

/// Runs a whole collection: what was released goes (with the default cache
/// TTL of 0). Returns the bytes freed.
pub fn collect(store: &Store) -> u64 {
    store
        .retention()
        .collect(false)
        .expect("starting a collection")
        .map(|r| r.expect("collection step").bytes)
        .sum()
}

/// Sets the registry graces of `store` to 0 (a registry hold keeps
/// nothing by itself: only tags and references do) and its cache TTL to
/// `cache_ttl` seconds.
pub fn no_registry_graces(store: &Store, cache_ttl: u64) {
    let mut settings = store.retention().settings().expect("settings");
    settings.upload_grace_seconds = 0;
    settings.untagged_grace_seconds = 0;
    settings.cache_ttl_seconds = cache_ttl;
    store
        .retention()
        .set_settings(settings)
        .expect("setting settings");
}

/// Sorted digests of the blobs matching `filters`.
pub fn digests(store: &Store, filters: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = store
        .walk(filters)
        .expect("walk")
        .map(|i| i.expect("walk item").digest)
        .collect();
    out.sort();
    out
}

/// Every file under `dir`, relative, sorted (to show nothing was written).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            out.push(
                path.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            );
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A layer entry's header as image builders write them: GNU format, owned
/// by root, a fixed time (so layers are reproducible).
pub fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// One entry of a crafted archive (see [`tar_gz`]).
pub enum Entry<'a> {
    /// A regular file with its content.
    File(&'a str, &'a [u8]),
    /// A directory.
    Dir(&'a str),
    /// A symlink and its target.
    Symlink(&'a str, &'a str),
}

/// A `.tar.gz` with exactly these entries, names written raw into the
/// headers (bypassing the tar crate's own checks), for hostile inputs.
pub fn tar_gz(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for entry in entries {
            let mut header = tar::Header::new_old();
            let (name, data, kind): (&str, &[u8], _) = match entry {
                Entry::File(name, data) => (name, data, tar::EntryType::Regular),
                Entry::Dir(name) => (name, &[], tar::EntryType::Directory),
                Entry::Symlink(name, target) => {
                    let link = &mut header.as_old_mut().linkname;
                    link[..target.len()].copy_from_slice(target.as_bytes());
                    (name, &[], tar::EntryType::Symlink)
                }
            };
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append(&header, data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    out
}

/// Runs `kist --store STORE ingest ARGS...` and SIGKILLs it once its ingest
/// holds some bytes but not all `size`; returns the offset it stopped at.
/// Retries (up to 5 times) when the ingest finished before the kill.
pub fn interrupted_ingest(store: &Store, root: &Path, args: &[&std::ffi::OsStr], size: u64) -> u64 {
    let offset = || {
        store
            .list_statuses(&[])
            .unwrap()
            .iter()
            .map(|s| s.offset)
            .max()
            .unwrap_or(0)
    };
    for _attempt in 0..5 {
        let mut child = std::process::Command::new(kist_bin())
            .arg("--store")
            .arg(root)
            .arg("ingest")
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let found = loop {
            let at = offset();
            if at > 0 || child.try_wait().unwrap().is_some() {
                break at;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        child.kill().ok();
        child.wait().unwrap();
        let at = offset();
        if found > 0 && at > 0 && at < size {
            return at;
        }
        // It finished before the kill landed: start over and try again.
        for info in store.walk(&[]).unwrap() {
            store.delete(&info.unwrap().digest).unwrap();
        }
    }
    panic!("could not interrupt an ingest in 5 attempts")
}

/// A `kist serve` process on a free loopback port, stopped by PID on drop.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>` (`https://` with `--tls-cert`).
    pub base: String,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The running process, to signal or wait for.
    pub fn child(&mut self) -> &mut std::process::Child {
        &mut self.child
    }

    /// `kist serve --addr 127.0.0.1:0` on `store`.
    pub fn start(store: &Path) -> Self {
        Self::start_with(store, &[])
    }

    /// The same with more arguments for `kist serve`.
    pub fn start_with(store: &Path, args: &[&str]) -> Self {
        Self::start_env(store.as_os_str(), args, &[])
    }

    /// `kist serve --store store` (a directory or `s3://…`) with `args`
    /// and the environment variables `envs`.
    pub fn start_env(store: &std::ffi::OsStr, args: &[&str], envs: &[(String, String)]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(kist_bin())
            .args(["serve", "--addr", "127.0.0.1:0", "--store"])
            .arg(store)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting kist serve");
        // The containerd socket's line, if any, comes first.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("listening on") {
            line.clear();
            let read = out
                .read_line(&mut line)
                .expect("reading the listening line");
            assert!(read > 0, "kist serve exited without listening");
        }
        let addr = line
            .split_whitespace()
            .nth(2)
            .filter(|a| a.starts_with("http://127.0.0.1:") || a.starts_with("https://127.0.0.1:"))
            .unwrap_or_else(|| panic!("kist serve printed {line:?}"));
        Self {
            child,
            base: addr.to_owned(),
        }
    }

    /// The URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Sends SIGTERM to the server (by its PID) and waits for its exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `kist` binary, built (once per test process) with the profile the
/// tests use. A failed build fails the calling test.
pub fn kist_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "-p", "kist-cli", "--bin", "kist"]);
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let status = cargo
            .status()
            .expect("running cargo to build the kist binary");
        assert!(status.success(), "building the kist binary failed");
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>/kist
        let bin = exe
            .parent()
            .and_then(std::path::Path::parent)
            .expect("target dir")
            .join("kist");
        assert!(bin.is_file(), "no kist binary at {}", bin.display());
        bin
    })
    .clone()
}

/// The hostile test component (`tests/hostile`), built for wasm32-wasip2.
/// A failed build fails the calling test.
pub fn hostile_component() -> Vec<u8> {
    static WASM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let path = WASM.get_or_init(|| build_wasm("kist-hostile", "kist_hostile.wasm"));
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The `kist-import` client component (`client/`), built for
/// wasm32-wasip2. A failed build fails the calling test.
pub fn client_component() -> Vec<u8> {
    static WASM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let path = WASM.get_or_init(|| build_wasm("kist-import", "kist-import.wasm"));
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Builds `package` for wasm32-wasip2 in release mode in a target dir of
/// its own (the outer cargo holds the workspace's) and returns `artifact`.
fn build_wasm(package: &str, artifact: &str) -> std::path::PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    let target_dir = workspace.join("target/kist-test-components");
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .current_dir(workspace)
        .args(["build", "--quiet", "--release", "-p", package])
        .args(["--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    // Flags for the host build must not reach the wasm build.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        cargo.env_remove(var);
    }
    let status = cargo
        .status()
        .unwrap_or_else(|e| panic!("running cargo for {package}: {e}"));
    assert!(status.success(), "building the {package} component failed");
    target_dir.join("wasm32-wasip2/release").join(artifact)
}

/// A program from outside the workspace that a test drives (`wasmtime`,
/// `node`, `jco`, `python`, ...): `tests/peers/install.sh` (which
/// `./test.sh` runs) links each into `$KIST_PEERS/bin`, by default
/// `target/peers/bin`. A missing one fails the calling test with the
/// command that installs it: peers are never skipped.
pub fn peer(name: &str) -> std::path::PathBuf {
    let peers = std::env::var_os("KIST_PEERS").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("tests/ is in the workspace")
                .join("target/peers")
        },
        std::path::PathBuf::from,
    );
    let path = peers.join("bin").join(name);
    assert!(
        path.exists(),
        "`{name}` is not installed in {}: run ./test.sh, or tests/peers/install.sh, \
         which installs the programs the tests drive",
        peers.join("bin").display()
    );
    path
}
