//! A private containerd for the tests: its own root, state and socket in
//! a temp dir, stopped by its PID when dropped (also when a test fails).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use crate::{Harness, kist_bin, peer};

/// A running containerd.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd (from the test peers) and waits for its socket.
    pub fn start() -> Self {
        Self::start_with("", "")
    }

    /// Starts containerd with kist as its content store (`kist`, the
    /// built-in one disabled) and as the snapshotter `kistsnap`, both on
    /// the proxy socket `socket`.
    pub fn with_kist(socket: &Path) -> Self {
        let s = socket.display();
        Self::start_with(
            "disabled_plugins = [\"io.containerd.content.v1.content\", \"io.containerd.grpc.v1.cri\"]\n",
            &format!(
                "[proxy_plugins]\n\
               [proxy_plugins.kist]\n    type = \"content\"\n    address = \"{s}\"\n\
               [proxy_plugins.kistsnap]\n    type = \"snapshot\"\n    address = \"{s}\"\n"
            ),
        )
    }

    /// Starts containerd with top-level keys `top` and tables `tables`
    /// added to its config.
    fn start_with(top: &str, tables: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n{top}\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n{tables}"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new(peer("containerd"))
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let me = Self { child, dir };
        for _ in 0..100 {
            if me.socket().exists() && me.ctr(&["version"]).status.success() {
                return me;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("containerd did not start: {}", me.log());
    }

    /// Its gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Runs `ctr --address <socket> ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new(peer("ctr"))
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("running ctr")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Its temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `kist serve --containerd <socket> --no-http` on the store of a
/// [`Harness`], its socket beside the store; stopped by PID when dropped.
pub struct KistSocket {
    child: Child,
    /// Killed already (by the test): nothing to stop.
    killed: bool,
    /// The socket containerd's proxy plugins connect to.
    pub socket: PathBuf,
    /// The store it serves.
    pub store: PathBuf,
}

impl KistSocket {
    /// Starts the server and waits until its socket answers (a first start
    /// compiles the component: tens of seconds in a debug build).
    pub fn start(h: &Harness) -> Self {
        let socket = h.path().parent().unwrap().join("kist.sock");
        let child = Command::new(kist_bin())
            .arg("--store")
            .arg(h.path())
            .env_remove("KIST_STORE")
            .args(["serve", "--no-http", "--gc-interval", "0s", "--containerd"])
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting kist serve");
        let start = std::time::Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(180),
                "kist serve --containerd did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self {
            child,
            killed: false,
            socket,
            store: h.path().to_path_buf(),
        }
    }

    /// Kills the server with SIGKILL (its socket file stays, stale).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.killed = true;
    }

    /// Kills the server and starts another on the same store and socket.
    pub fn restart(&mut self, h: &Harness) {
        self.kill();
        *self = Self::start(h);
    }
}

impl Drop for KistSocket {
    fn drop(&mut self) {
        if !self.killed {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}
