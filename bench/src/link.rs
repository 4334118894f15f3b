//! A network link of a given bandwidth and round-trip time on loopback: a
//! TCP relay in front of a server that passes at most `rate` bytes a
//! second, in both directions together, over all its connections (one
//! site's uplink), each byte delivered half the round trip after it was
//! sent. What a registry client sees across a WAN or a datacentre's
//! 1 Gbit/s, where loopback would hide that a cache has to store what it
//! serves, or that a pull of many small requests waits a round trip each.
//! It counts what it carries: bytes each way, and requests.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Bytes a relay moves at once.
const CHUNK: usize = 64 << 10;

/// A running link to one server; it relays until the process ends.
pub struct Link {
    /// `http://127.0.0.1:<port>`: the server, through the link.
    pub base: String,
    counts: Arc<Counts>,
}

/// What a link has carried.
#[derive(Default)]
struct Counts {
    /// Bytes from the server to its clients.
    down: AtomicU64,
    /// Bytes from the clients to the server.
    up: AtomicU64,
    /// HTTP requests (request lines) from the clients.
    requests: AtomicU64,
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
        Self::start_with(target, rate, Duration::ZERO)
    }

    /// A link of `rate` bytes a second and round-trip time `rtt` to
    /// `target` (`host:port`).
    pub fn start_with(target: &str, rate: u64, rtt: Duration) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1", target, rate, rtt)
    }

    /// [`Link::start_with`], listening on the address `ip` (where a
    /// client in another network namespace reaches it).
    pub fn start_on(ip: &str, target: &str, rate: u64, rtt: Duration) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((ip, 0))?;
        let base = format!("http://{}", listener.local_addr()?);
        let budget = Arc::new(Mutex::new(Budget {
            started: Instant::now(),
            passed: 0,
            rate,
        }));
        let counts = Arc::new(Counts::default());
        let target = target.to_owned();
        let carried = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                // A relay that waits to fill segments (Nagle) would add
                // tens of milliseconds to every small request it carries.
                let nodelay = client.set_nodelay(true).and(server.set_nodelay(true));
                if nodelay.is_err() {
                    continue;
                }
                let (budget, counts) = (budget.clone(), carried.clone());
                std::thread::spawn(move || {
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    let up = {
                        let (budget, counts) = (budget.clone(), counts.clone());
                        std::thread::spawn(move || {
                            relay(client, server, &budget, rtt / 2, |b| {
                                counts.up.fetch_add(b.len() as u64, Ordering::Relaxed);
                                let lines = b.windows(11).filter(|w| w == b" HTTP/1.1\r\n").count();
                                counts.requests.fetch_add(lines as u64, Ordering::Relaxed);
                            })
                        })
                    };
                    relay(s2, c2, &budget, rtt / 2, |b| {
                        counts.down.fetch_add(b.len() as u64, Ordering::Relaxed);
                    });
                    let _ = up.join();
                });
            }
        });
        Ok(Self { base, counts })
    }

    /// Bytes to the server so far.
    pub fn sent(&self) -> u64 {
        self.counts.up.load(Ordering::Relaxed)
    }

    /// Bytes from the server and requests to it so far.
    pub fn carried(&self) -> (u64, u64) {
        (
            self.counts.down.load(Ordering::Relaxed),
            self.counts.requests.load(Ordering::Relaxed),
        )
    }
}

/// Copies `from` to `to` within the budget, each chunk `delay` after it
/// was read (a reader queues, a writer delivers: the link stays full),
/// until either side closes; `seen` looks at every chunk.
fn relay(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: &Mutex<Budget>,
    delay: Duration,
    mut seen: impl FnMut(&[u8]),
) {
    let (queue, delivered) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (read_at, chunk) in delivered {
            std::thread::sleep((read_at + delay).saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen(&buf[..n]);
        let wait = budget.lock().expect("budget").take(n as u64);
        std::thread::sleep(wait);
        if queue.send((Instant::now(), buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(queue);
    let _ = writer.join();
}
