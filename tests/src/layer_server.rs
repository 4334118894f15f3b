//! A loopback HTTP/1.1 server for the layer tests: serves blobs by path,
//! honours `Range` (or not), can send wrong bytes, lie about a length or
//! trickle, and logs every request so tests can count downloads and see
//! resumes. Hand-written on `std::net` because a well-behaved server
//! crate cannot be made to misbehave this precisely.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a path is served.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// Correctly, with `206 Partial Content` for a `Range` request.
    Normal,
    /// Always the whole body with `200`, whatever range was asked for.
    IgnoreRange,
    /// The right length, one byte in the middle flipped.
    Corrupt,
    /// `Content-Length` announces the whole body, half of it is sent,
    /// then the connection closes.
    LieLength,
    /// Normal, but at most this many bytes per second.
    Trickle(u64),
    /// `302 Found` to the same path on the loopback port given.
    RedirectTo(u16),
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, (Vec<u8>, Behaviour)>,
    log: Vec<Request>,
}

/// The server; it stops accepting when dropped (its thread ends at the
/// next connection attempt, which drop makes).
pub struct LayerServer {
    state: Arc<Mutex<State>>,
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl LayerServer {
    /// Listens on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, halt) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        Self { state, port, stop }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: the origin to allow.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL `path` is served at.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.origin())
    }

    /// Serves `bytes` at `path`.
    pub fn put(&self, path: &str, bytes: Vec<u8>, behaviour: Behaviour) {
        let mut s = self.state.lock().unwrap();
        s.files.insert(format!("/{path}"), (bytes, behaviour));
    }

    /// Changes how `path` is served.
    pub fn set(&self, path: &str, behaviour: Behaviour) {
        let mut s = self.state.lock().unwrap();
        s.files.get_mut(&format!("/{path}")).unwrap().1 = behaviour;
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    /// Requests so far for `path`.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        let path = format!("/{path}");
        self.log().into_iter().filter(|r| r.path == path).collect()
    }
}

impl Drop for LayerServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// `bytes=<start>-` → start.
fn range_start(range: &str) -> Option<usize> {
    range
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    let found = {
        let mut s = state.lock().unwrap();
        s.log.push(Request {
            path: path.clone(),
            range: range.clone(),
        });
        s.files.get(&path).cloned()
    };
    let mut out = conn;
    let Some((mut bytes, behaviour)) = found else {
        return out.write_all(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
    };
    if let Behaviour::RedirectTo(port) = behaviour {
        let head = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}{path}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        return out.write_all(head.as_bytes());
    }
    let total = bytes.len();
    if behaviour == Behaviour::Corrupt {
        bytes[total / 2] ^= 0xff;
    }
    let start = match (behaviour, range.as_deref().and_then(range_start)) {
        (Behaviour::IgnoreRange, _) | (_, None) => None,
        (_, Some(s)) => Some(s),
    };
    let (status, body) = match start {
        Some(s) if s >= total => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\ncontent-range: bytes */{total}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            return out.write_all(head.as_bytes());
        }
        Some(s) => (
            format!(
                "206 Partial Content\r\ncontent-range: bytes {s}-{}/{total}",
                total - 1
            ),
            &bytes[s..],
        ),
        None => ("200 OK".to_owned(), &bytes[..]),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    match behaviour {
        Behaviour::Trickle(rate) => {
            let chunk = (rate / 10).max(1) as usize;
            for piece in body.chunks(chunk) {
                out.write_all(piece)?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        Behaviour::LieLength => out.write_all(&body[..body.len() / 2]),
        _ => out.write_all(body),
    }
}
