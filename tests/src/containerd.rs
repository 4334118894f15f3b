//! A private containerd for the tests: its own root, state and socket in
//! a temp dir, stopped by its PID when dropped (also when a test fails).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use crate::peer;

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

    fn socket(&self) -> PathBuf {
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
