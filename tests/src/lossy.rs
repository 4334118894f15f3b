//! A loopback proxy in front of an object store that loses answers: for
//! the first requests of a chosen method it forwards the request, lets the
//! server act on it, and drops the connection when the server's answer
//! starts, so the client never learns that it succeeded. What a network
//! does to a client at the worst moment; the client's retry then finds
//! its own write (a conditional put answers 412).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The proxy; it stops with the test process.
pub struct Lossy {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    lost: Arc<AtomicUsize>,
}

impl Lossy {
    /// A proxy to `target` (`host:port`) that loses the answers to the
    /// first `answers` requests whose method is `method`.
    pub fn start(target: &str, method: &'static str, answers: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let budget = Arc::new(AtomicUsize::new(answers));
        let lost = Arc::new(AtomicUsize::new(0));
        let target = target.to_owned();
        let (spend, count) = (budget.clone(), lost.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (spend, count) = (spend.clone(), count.clone());
                std::thread::spawn(move || relay(client, server, method, &spend, &count));
            }
        });
        Self { base, lost }
    }

    /// How many answers it has lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

/// Relays one connection. A request of `method` while `budget` lasts arms
/// it: the server's next answer is swallowed and both sides are closed.
fn relay(
    client: TcpStream,
    server: TcpStream,
    method: &'static str,
    budget: &AtomicUsize,
    lost: &AtomicUsize,
) {
    let armed = std::sync::atomic::AtomicBool::new(false);
    let (mut from_client, mut to_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::scope(|scope| {
        let armed = &armed;
        scope.spawn(move || {
            let mut buf = vec![0; 64 << 10];
            let prefix = format!("{method} ");
            loop {
                let n = match from_client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if buf[..n].starts_with(prefix.as_bytes())
                    && budget
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                        .is_ok()
                {
                    armed.store(true, Ordering::SeqCst);
                }
                if to_server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to_server.shutdown(Shutdown::Write);
        });
        let (mut from_server, mut to_client) = (server, client);
        let mut buf = vec![0; 64 << 10];
        loop {
            let n = match from_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if armed.load(Ordering::SeqCst) {
                // The server acted and answered: the answer is lost.
                lost.fetch_add(1, Ordering::SeqCst);
                let _ = c.shutdown(Shutdown::Both);
                let _ = s.shutdown(Shutdown::Both);
                break;
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Write);
    });
}
