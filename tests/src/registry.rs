//! A registry client over raw HTTP for the tests of `kist serve`'s
//! `/v2/`, and what those tests share.

use crate::Server;
use crate::http::{body, fetch, send};
use crate::oci::{Image, MANIFEST};

/// A registry client on `server`.
pub struct Client<'a> {
    /// The server it talks to.
    pub server: &'a Server,
    /// The `Authorization` header it sends, if any.
    pub auth: Option<String>,
}

impl<'a> Client<'a> {
    /// A client without credentials.
    pub fn new(server: &'a Server) -> Self {
        Self { server, auth: None }
    }

    /// The URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path.trim_start_matches('/'))
    }

    /// A request with the client's credentials.
    pub fn req(&self, method: &str, path: &str) -> ureq::Request {
        let r = ureq::request(method, &self.url(path));
        match &self.auth {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }

    /// POST a new upload: its Location.
    pub fn start(&self, repo: &str) -> String {
        let r = send(self.req("POST", &format!("/v2/{repo}/blobs/uploads/")), b"");
        assert_eq!(r.status(), 202);
        assert_eq!(r.header("range"), Some("0-0"));
        r.header("location").unwrap().to_owned()
    }

    /// A monolithic push of `bytes`.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = crate::sha256(bytes);
        let r = send(
            self.req("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}")),
            bytes,
        );
        assert_eq!(r.status(), 201, "{}", String::from_utf8_lossy(&body(r)));
        d
    }

    /// Pushes `image`'s blobs and its manifest as `tag`.
    pub fn push_image(&self, repo: &str, tag: &str, image: &Image) {
        for b in image.blobs() {
            self.push_blob(repo, &b.bytes);
        }
        let r = self.put_manifest(repo, tag, &image.manifest);
        assert_eq!(r.status(), 201, "{}", String::from_utf8_lossy(&body(r)));
    }

    /// PUTs the manifest `bytes` as `reference`.
    pub fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8]) -> ureq::Response {
        send(
            self.req("PUT", &format!("/v2/{repo}/manifests/{reference}"))
                .set("Content-Type", MANIFEST),
            bytes,
        )
    }

    /// A GET of `path`.
    pub fn get(&self, path: &str) -> ureq::Response {
        fetch(self.req("GET", path))
    }
}

/// The spec error code of a response.
pub fn code(r: ureq::Response) -> String {
    let doc: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
    doc["errors"][0]["code"].as_str().unwrap().to_owned()
}

/// An image of `layers` small layers made from `seed`.
pub fn image(seed: u64, layers: usize) -> Image {
    let data: Vec<Vec<u8>> = (0..layers)
        .map(|i| crate::bytes(10_000 + i * 1000, seed * 100 + i as u64))
        .collect();
    Image::new(&data, None)
}

/// The `Authorization` value of Basic credentials.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// The lines a server writes on stderr, as they come.
pub struct Said(std::sync::mpsc::Receiver<String>);

impl Said {
    /// Takes `server`'s stderr and reads it on a thread.
    pub fn from(server: &mut Server) -> Self {
        let stderr = std::io::BufReader::new(server.child().stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self(rx)
    }

    /// Sends `server` SIGHUP and waits for what it says of it, which must
    /// contain `expect`.
    pub fn hangup(&self, server: &Server, expect: &str) {
        let pid = server.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
        assert!(sent.unwrap().success());
        let line = self
            .0
            .iter()
            .find(|l| l.contains("SIGHUP"))
            .expect("kist serve said nothing of SIGHUP");
        assert!(line.contains(expect), "{line}");
    }
}

/// A PATCH of 8 bytes to `upload` with `authorization`, of which only 4
/// are sent: a request in flight, finished by [`finish`]. It asks
/// `Expect: 100-continue` and sends its first bytes only after the server
/// answered `100 Continue`, which it does when the handler starts reading
/// the body: the request has been let in by then.
pub fn half_sent_patch(server: &Server, upload: &str, authorization: &str) -> std::net::TcpStream {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "PATCH {upload} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 8\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    let answer = response_head(&mut stream);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
    std::io::Write::write_all(&mut stream, b"half").unwrap();
    stream
}

/// Reads a response's status line and headers from `stream`, up to and
/// including the blank line, and nothing of its body.
pub fn response_head(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(stream, &mut byte).unwrap();
        head.push(byte[0]);
    }
    head
}

/// Sends the rest of a [`half_sent_patch`]: the server's whole answer.
pub fn finish(mut stream: std::net::TcpStream) -> String {
    std::io::Write::write_all(&mut stream, b"more").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    answer
}

/// `skopeo copy` over plain HTTP (no TLS checks, no signature policy)
/// with `args` (flags, then source and destination).
pub fn skopeo_copy(args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::peer("skopeo"))
        .args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(args)
        .output()
        .expect("running skopeo")
}
