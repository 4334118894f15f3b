//! A network link of a given bandwidth on loopback: a TCP relay in front
//! of a server that passes at most `rate` bytes a second, in both
//! directions together, over all its connections (one site's uplink).
//! What a registry client sees across a WAN or a datacentre's 1 Gbit/s,
//! where loopback would hide that a cache has to store what it serves.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes a relay moves at once.
const CHUNK: usize = 64 << 10;

/// A running link to one server; it relays until the process ends.
pub struct Link {
    /// `http://127.0.0.1:<port>`: the server, through the link.
    pub base: String,
}

/// The link's budget: when it started, and the bytes it has passed.
struct Budget {
    started: Instant,
    passed: u64,
    rate: u64,
}

impl Budget {
    /// When what has passed so far is due at the link's rate.
    fn due(&self) -> Instant {
        self.started + Duration::from_secs_f64(self.passed as f64 / self.rate as f64)
    }

    /// Counts `bytes` more; how long to wait before they may go. A link
    /// that was idle has no credit saved up: it starts afresh.
    fn take(&mut self, bytes: u64) -> Duration {
        let now = Instant::now();
        if self.due() < now {
            self.started = now;
            self.passed = 0;
        }
        self.passed += bytes;
        self.due().saturating_duration_since(now)
    }
}

impl Link {
    /// A link of `rate` bytes a second to `target` (`host:port`).
    pub fn start(target: &str, rate: u64) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let budget = Arc::new(Mutex::new(Budget {
            started: Instant::now(),
            passed: 0,
            rate,
        }));
        let target = target.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    let up = {
                        let budget = budget.clone();
                        std::thread::spawn(move || relay(client, server, &budget))
                    };
                    relay(s2, c2, &budget);
                    let _ = up.join();
                });
            }
        });
        Ok(Self { base })
    }
}

/// Copies `from` to `to` within the budget, until either side closes.
fn relay(mut from: TcpStream, mut to: TcpStream, budget: &Mutex<Budget>) {
    let mut buf = vec![0; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let wait = budget.lock().expect("budget").take(n as u64);
        std::thread::sleep(wait);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
