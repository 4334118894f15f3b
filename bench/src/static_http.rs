//! A plain static file server for the contenders that fetch files over
//! HTTP (ostree's archive repositories, casync's chunk stores): Python's
//! threading `http.server` answering HTTP/1.1, so clients keep their
//! connections as they would with nginx (its default HTTP/1.0 would cost
//! every object a new connection, a round trip more). Stopped by its PID
//! when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A running server: its base URL (`http://127.0.0.1:<port>`).
pub struct StaticHttp {
    pub base: String,
    child: Child,
}

impl StaticHttp {
    /// Serves the files under `dir`.
    pub fn serve(dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let script = "import functools, http.server as h, sys\n\
            h.SimpleHTTPRequestHandler.protocol_version = 'HTTP/1.1'\n\
            h.SimpleHTTPRequestHandler.log_message = lambda *a: None\n\
            handler = functools.partial(h.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
            h.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[2])), handler).serve_forever()\n";
        let child = Command::new("python3")
            .args(["-c", script])
            .arg(dir)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting python3's http.server")?;
        let server = Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("http.server did not listen on {}", server.base)
    }

    /// CPU seconds (user and system) the server has used.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        crate::tools::cpu_seconds(&self.child.id().to_string(), false)
    }

    /// The server's peak RSS so far, in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        crate::tools::running_peak_rss(self.child.id())
    }

    /// `HOST:PORT`.
    pub fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

impl Drop for StaticHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
