//! One admission layer for every kist server (the HTTP server with its
//! registry, and the containerd plugin's gRPC socket): who may connect,
//! how many transfers and how many bytes of memory each client and all of
//! them together may hold, and how fast a transfer must move.
//!
//! - **Budgets.** Connections, transfers (request and response bodies,
//!   streams) and memory held for them are counted per client and in
//!   total. A client at its own limit is refused. When the total is
//!   reached, a newcomer is not simply refused, or 17 addresses could
//!   lock everyone out: the client holding the most (more than the
//!   newcomer would) loses its slowest transfer (or its oldest
//!   connection), which is cut, and the newcomer gets its place.
//! - **A minimum rate.** After a grace period every transfer must have
//!   moved at least `min_rate` bytes per second since the grace ended
//!   (counted from its start), and never stall longer than `stall`; a
//!   slower one is cut, as nginx's `send_timeout`/`client_body_timeout`
//!   and Go's `http.Server` deadlines cut theirs. A watchdog task checks
//!   every transfer once a second.
//! - **Cutting** a transfer cuts its connection: every read and write of
//!   an [`Admitted`] stream fails from then on, so the server drops the
//!   connection and all it buffered for it, whatever it was waiting for
//!   (an HTTP/2 stream a client does not read holds buffers that only
//!   closing the connection frees). No thread waits on a client
//!   meanwhile: servers move bytes in async tasks and do store work on the
//!   blocking pool in bounded steps.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use kist_admission::{Admission, Client, Limits};
//! let admission = Admission::start(Limits::default());
//! let conn = admission.connect(Client::from_ip("127.0.0.1".parse().unwrap())).unwrap();
//! let transfer = conn.stream(4 << 20).unwrap(); // a stream holding 4 MiB
//! transfer.moved(1 << 20);
//! assert!(!conn.cut().is_cancelled());
//! # }
//! ```

#![deny(missing_docs)]

mod admitted;
mod ledger;
mod limits;
mod meter;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

pub use admitted::Admitted;
use ledger::{Kind, Ledger};
pub use limits::Limits;
pub use meter::{Meter, Metered};

/// Who a connection is from: what per-client budgets count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// A TCP client, by address (its port is not part of it).
    Ip(IpAddr),
    /// A connection on a local socket: each is its own client (every
    /// local peer may be the same user).
    Local(u64),
}

impl Client {
    /// The client at `ip`.
    pub fn from_ip(ip: IpAddr) -> Self {
        Self::Ip(ip.to_canonical())
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Local(n) => write!(f, "local connection {n}"),
        }
    }
}

/// Why a client was refused: what it had too much of, for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// It has as many connections as one client may.
    Connections,
    /// It has as many transfers in flight as one client may.
    Transfers,
    /// Its transfers hold as much memory as one client's may, or the
    /// server's hold all there is and no client holds more than it would.
    Memory,
    /// The server is full and no client holds more than it would.
    Full,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connections => "too many connections from this client",
            Self::Transfers => "too many transfers in flight from this client",
            Self::Memory => "too much memory held for this client's transfers",
            Self::Full => "the server is at its limits; retry",
        })
    }
}

/// The admission state of one server; see the crate docs.
pub struct Admission {
    limits: Limits,
    ledger: Mutex<Ledger>,
    started: Instant,
    /// Refusals and cuts so far, for logs and metrics.
    refused: AtomicU64,
    cut: AtomicU64,
}

impl Admission {
    /// Admission with `limits`, its watchdog running on the current tokio
    /// runtime until the last handle is dropped.
    pub fn start(limits: Limits) -> Arc<Self> {
        let admission = Arc::new(Self {
            limits,
            ledger: Mutex::new(Ledger::default()),
            started: Instant::now(),
            refused: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&admission);
        tokio::spawn(watch(weak));
        admission
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Clients refused and transfers or connections cut so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.refused.load(Ordering::Relaxed),
            self.cut.load(Ordering::Relaxed),
        )
    }

    /// Admits a connection from `client`, cutting another client's oldest
    /// connection if the server is full and that client holds more than
    /// `client` would; hold the permit for the connection's life and watch
    /// its [`cut`](Connection::cut) token.
    pub fn connect(self: &Arc<Self>, client: Client) -> Result<Connection, Refused> {
        let cut = CancellationToken::new();
        let id = self.admit(&client, Kind::Connection, 0, &cut, None)?;
        Ok(Connection {
            admission: Arc::clone(self),
            client,
            id,
            cut,
            meter: Arc::new(Meter::new(self.started)),
        })
    }

    fn admit(
        &self,
        client: &Client,
        kind: Kind,
        memory: u64,
        cut: &CancellationToken,
        progress: Option<Arc<Progress>>,
    ) -> Result<u64, Refused> {
        let now = self.now_ms();
        let mut ledger = self.ledger.lock().expect("admission ledger");
        let admitted = ledger.admit(&self.limits, client, kind, memory, cut, progress, now);
        drop(ledger);
        match admitted {
            Ok((id, victims)) => {
                for victim in victims {
                    self.cut.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("admission: cut {victim} to make room for {client}");
                }
                Ok(id)
            }
            Err(refused) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("admission: refused {client}: {refused}");
                Err(refused)
            }
        }
    }

    fn release(&self, id: u64) {
        self.ledger.lock().expect("admission ledger").release(id);
    }

    /// Milliseconds since the admission started: how progress is timed.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// One admitted connection; dropping it frees its place.
pub struct Connection {
    admission: Arc<Admission>,
    client: Client,
    id: u64,
    cut: CancellationToken,
    meter: Arc<Meter>,
}

impl Connection {
    /// Who it is from.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Cancelled when the connection must end: the server is making room,
    /// or one of its transfers was too slow.
    pub fn cut(&self) -> &CancellationToken {
        &self.cut
    }

    /// What the connection's bytes are counted on: wrap its stream in
    /// [`Metered`] (or [`Admitted`]) with it, and its
    /// [`transfer`](Self::transfer)s are timed by what actually crosses
    /// the socket.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// Admits a transfer on this connection holding `memory` bytes (what
    /// the server buffers for it), timed by what crosses the connection's
    /// [`meter`](Self::meter): an HTTP/1 body (one request at a time).
    /// When the server is full, another client's slowest transfer is cut
    /// if that client holds more than this one would; else it is refused.
    pub fn transfer(&self, memory: u64) -> Result<Transfer, Refused> {
        self.admit(memory, Arc::clone(&self.meter))
    }

    /// Admits one stream of a multiplexed connection (HTTP/2, gRPC)
    /// holding `memory` bytes, as [`transfer`](Self::transfer) does, timed
    /// by what it reports with [`Transfer::moved`].
    pub fn stream(&self, memory: u64) -> Result<Transfer, Refused> {
        self.admit(memory, Arc::new(Meter::new(self.admission.started)))
    }

    fn admit(&self, memory: u64, meter: Arc<Meter>) -> Result<Transfer, Refused> {
        let cut = self.cut.clone();
        let admission = &self.admission;
        meter.touch();
        let progress = Arc::new(Progress {
            base: meter.bytes(),
            meter,
            started: admission.now_ms(),
        });
        let id = admission.admit(
            &self.client,
            Kind::Transfer,
            memory,
            &cut,
            Some(Arc::clone(&progress)),
        )?;
        Ok(Transfer {
            admission: Arc::clone(admission),
            id,
            cut,
            progress,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.admission.release(self.id);
    }
}

/// A transfer's pace: its meter, what the meter read when it started,
/// and when that was (in [`Admission::now_ms`]).
pub(crate) struct Progress {
    meter: Arc<Meter>,
    base: u64,
    started: u64,
}

impl Progress {
    fn moved(&self) -> u64 {
        self.meter.bytes().saturating_sub(self.base)
    }

    /// Whether the transfer is too slow at `now`: behind the minimum rate
    /// after the grace, or idle longer than the stall limit.
    fn too_slow(&self, limits: &Limits, now: u64) -> bool {
        let grace = limits.grace.as_millis() as u64;
        let elapsed = now.saturating_sub(self.started);
        if elapsed <= grace {
            return false;
        }
        let due = limits.min_rate.saturating_mul(elapsed - grace) / 1000;
        let idle = now.saturating_sub(self.meter.last());
        self.moved() < due || idle > limits.stall.as_millis() as u64
    }

    /// Bytes per second so far: what the slowest is chosen by.
    fn rate(&self, now: u64) -> u64 {
        let elapsed = now.saturating_sub(self.started).max(1);
        self.moved().saturating_mul(1000) / elapsed
    }
}

/// One admitted transfer; dropping it frees its place and its memory.
pub struct Transfer {
    admission: Arc<Admission>,
    id: u64,
    cut: CancellationToken,
    progress: Arc<Progress>,
}

impl Transfer {
    /// Records that `bytes` more moved (for a [`Connection::stream`]).
    pub fn moved(&self, bytes: u64) {
        self.progress.meter.add(bytes);
    }

    /// Cancelled when the transfer is cut (too slow, or making room), with
    /// its whole connection.
    pub fn cut(&self) -> &CancellationToken {
        &self.cut
    }

    /// Holds `memory` bytes from now on, where it was admitted with more
    /// (the size it may hold became known); more than admitted is ignored.
    pub fn shrink(&self, memory: u64) {
        self.admission
            .ledger
            .lock()
            .expect("admission ledger")
            .shrink(self.id, memory);
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.admission.release(self.id);
    }
}

/// The watchdog: once a second, cuts every transfer that is too slow.
async fn watch(admission: Weak<Admission>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(admission) = admission.upgrade() else {
            return;
        };
        let now = admission.now_ms();
        let slow = admission
            .ledger
            .lock()
            .expect("admission ledger")
            .cut_slow(&admission.limits, now);
        if slow > 0 {
            admission.cut.fetch_add(slow, Ordering::Relaxed);
            tracing::info!("admission: cut {slow} transfer(s) slower than the minimum rate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Client {
        Client::from_ip(IpAddr::from([127, 0, 0, last]))
    }

    fn small() -> Limits {
        Limits {
            connections: 7,
            connections_per_client: 3,
            transfers: 4,
            transfers_per_client: 3,
            memory: 100,
            memory_per_client: 60,
            min_rate: 100,
            grace: Duration::from_secs(2),
            stall: Duration::from_secs(5),
        }
    }

    /// A client at its own limit is refused; a full server makes room for
    /// a newcomer by cutting the slowest transfer of whoever holds most
    /// (and its connection with it).
    #[tokio::test(start_paused = true)]
    async fn budgets_refuse_the_greedy_and_make_room_for_newcomers() {
        let a = Admission::start(small());
        let c1: Vec<Connection> = (0..3).map(|_| a.connect(ip(1)).unwrap()).collect();
        let t1: Vec<Transfer> = c1.iter().map(|c| c.stream(10).unwrap()).collect();
        assert_eq!(c1[0].stream(10).err(), Some(Refused::Transfers));
        t1[0].moved(1000);
        t1[2].moved(10);
        let c2 = a.connect(ip(2)).unwrap();
        let t2 = c2.stream(10).unwrap();
        // Full (4 transfers): ip 3 gets the slowest of ip 1's three.
        let c3 = a.connect(ip(3)).unwrap();
        let t3 = c3.stream(10).unwrap();
        assert!(c1[1].cut().is_cancelled(), "the idle one's connection goes");
        assert!(!c1[0].cut().is_cancelled() && !c1[2].cut().is_cancelled());
        // Nobody holds more than a newcomer of ip 2 would: refused.
        assert_eq!(c2.stream(10).err(), Some(Refused::Full));
        drop((t1, t2, t3));
        // Memory: per client, then in all, with the same room-making.
        let big = c1[0].stream(60).unwrap();
        assert_eq!(c1[2].stream(1).err(), Some(Refused::Memory));
        let _mid = c2.stream(30).unwrap();
        let _fits = c3.stream(20).unwrap();
        assert!(c1[0].cut().is_cancelled(), "ip 1 held the most memory");
        drop(big);
        assert_eq!(a.counts(), (3, 2));
    }

    /// Connections: refused per client; room made from the client with the
    /// most, its oldest going first.
    #[tokio::test(start_paused = true)]
    async fn connections_are_budgeted_too() {
        let a = Admission::start(small());
        let mine: Vec<Connection> = (0..3).map(|_| a.connect(ip(1)).unwrap()).collect();
        assert_eq!(a.connect(ip(1)).err(), Some(Refused::Connections));
        let _theirs: Vec<Connection> = (0..2).map(|_| a.connect(ip(2)).unwrap()).collect();
        let _others = (a.connect(ip(3)).unwrap(), a.connect(ip(4)).unwrap());
        assert!(!mine[0].cut().is_cancelled());
        // Full at 7: a newcomer cuts the oldest of the client holding most.
        let _newcomer = a.connect(ip(5)).unwrap();
        assert!(mine[0].cut().is_cancelled());
        assert!(!mine[1].cut().is_cancelled());
    }

    /// The watchdog cuts a transfer behind the minimum rate after its
    /// grace, and one idle past the stall limit: a stream by what it
    /// reports, a body by what crosses its connection's socket.
    #[tokio::test(start_paused = true)]
    async fn slow_and_stalled_transfers_are_cut() {
        let a = Admission::start(small());
        let (c1, c2, c3) = (
            a.connect(ip(1)).unwrap(),
            a.connect(ip(2)).unwrap(),
            a.connect(ip(3)).unwrap(),
        );
        let trickle = c1.stream(0).unwrap();
        let steady = c2.stream(0).unwrap();
        let body = c3.transfer(0).unwrap();
        for _ in 0..4 {
            trickle.moved(1);
            steady.moved(150);
            c3.meter().add(150); // what crossed its socket
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(c1.cut().is_cancelled(), "1 B/s after a 2 s grace");
        assert!(!c2.cut().is_cancelled() && !c3.cut().is_cancelled());
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(steady.cut().is_cancelled(), "stalled 6 s");
        assert!(body.cut().is_cancelled(), "its socket stalled 6 s");
    }
}
