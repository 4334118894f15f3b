//! An upstream registry for the mirror tests: Debian's docker-registry
//! (distribution 2.8) on a loopback port, its data in a temp dir, stopped
//! by its PID; and a proxy in front of it that counts the requests that
//! reach it and can cut a blob's response midway.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::peer;

/// A running docker-registry.
pub struct DockerRegistry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    config: std::path::PathBuf,
}

impl DockerRegistry {
    /// Starts docker-registry with its storage in `dir` and waits until it
    /// answers.
    pub fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("docker-registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut registry = Self {
            child: Self::spawn(&config),
            addr: format!("127.0.0.1:{port}"),
            config,
        };
        registry.wait();
        registry
    }

    fn spawn(config: &Path) -> Child {
        Command::new(peer("docker-registry"))
            .arg("serve")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry")
    }

    /// Waits until it answers `/v2/` (it is making progress while its
    /// process lives).
    fn wait(&mut self) {
        loop {
            if ureq::get(&format!("http://{}/v2/", self.addr))
                .call()
                .is_ok()
            {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "docker-registry exited before it answered"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops it (its data stays).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.config);
        self.wait();
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy to `target` that records each request line (and whether it
/// asked for a range), cuts the response to the next blob request after
/// some bytes when told to, and holds blob responses while told to.
pub struct Proxy {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    requests: Arc<Mutex<Vec<String>>>,
    cut_after: Arc<AtomicU64>,
    held: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy to `target` (`host:port`), serving until the process ends.
    pub fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cut_after = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicBool::new(false));
        let (seen, cut, target) = (requests.clone(), cut_after.clone(), target.to_owned());
        let holding = held.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (seen, cut, held) = (seen.clone(), cut.clone(), holding.clone());
                std::thread::spawn(move || relay(client, server, &seen, &cut, &held));
            }
        });
        Self {
            addr,
            requests,
            cut_after,
            held,
        }
    }

    /// Holds the responses to blob requests (from their first byte) while
    /// `hold`.
    pub fn hold_blobs(&self, hold: bool) {
        self.held.store(hold, Ordering::SeqCst);
    }

    /// The request lines so far (`GET /v2/... HTTP/1.1`, with ` range` when
    /// it asked for one).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests so far contain `part`.
    pub fn count(&self, part: &str) -> usize {
        self.requests().iter().filter(|r| r.contains(part)).count()
    }

    /// Cuts the response to the next blob request after `bytes`.
    pub fn cut_next_blob_after(&self, bytes: u64) {
        self.cut_after.store(bytes, Ordering::SeqCst);
    }
}

/// Relays one connection: requests to `server` (recorded), responses back
/// (cut when armed, held while `held` for a blob request).
fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    seen: &Mutex<Vec<String>>,
    cut: &AtomicU64,
    held: &AtomicBool,
) {
    let (mut to_server, mut from_server) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    let cutting = Arc::new(AtomicU64::new(0));
    let armed = cutting.clone();
    let blob = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Requests carry no bodies here (GET and HEAD): each head ends
            // at an empty line.
            let mut head = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = match client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                head.extend_from_slice(&buf[..n]);
                while let Some(end) = find(&head, b"\r\n\r\n") {
                    let text = String::from_utf8_lossy(&head[..end]).to_string();
                    let line = text.lines().next().unwrap_or_default().to_owned();
                    let ranged = text.to_ascii_lowercase().contains("\r\nrange:");
                    if line.contains("/blobs/") {
                        armed.store(cut.swap(0, Ordering::SeqCst), Ordering::SeqCst);
                        blob.store(true, Ordering::SeqCst);
                    }
                    seen.lock().unwrap().push(if ranged {
                        format!("{line} range")
                    } else {
                        line
                    });
                    head.drain(..end + 4);
                }
                if to_server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to_server.shutdown(Shutdown::Write);
        });
        let mut buf = [0u8; 8192];
        let mut sent = 0u64;
        loop {
            let n = match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while blob.load(Ordering::SeqCst) && held.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let limit = cutting.load(Ordering::SeqCst);
            if limit > 0 && sent + n as u64 >= limit {
                let keep = (limit - sent) as usize;
                let _ = from_server.write_all(&buf[..keep]);
                let _ = from_server.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                break;
            }
            if limit > 0 {
                sent += n as u64;
            }
            if from_server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from_server.shutdown(Shutdown::Both);
    });
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
