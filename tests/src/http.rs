//! Raw HTTP for the server tests: every status comes back as a response.

use std::io::Read;

/// The response to `req`, whatever its status (ureq reports 4xx and 5xx
/// as errors). A failed connection fails the test.
pub fn fetch(req: ureq::Request) -> ureq::Response {
    outcome(req.call())
}

/// The same for a request with a body.
pub fn send(req: ureq::Request, body: &[u8]) -> ureq::Response {
    outcome(req.send_bytes(body))
}

fn outcome(result: Result<ureq::Response, ureq::Error>) -> ureq::Response {
    match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    }
}

/// A response's whole body.
pub fn body(r: ureq::Response) -> Vec<u8> {
    let mut out = Vec::new();
    r.into_reader().read_to_end(&mut out).unwrap();
    out
}

/// The path of the next page a paged listing's `Link` header names
/// (`<PATH>; rel="next"`), if there is one.
pub fn next_page(r: &ureq::Response) -> Option<String> {
    let link = r.header("link")?;
    Some(link.trim_start_matches('<').split('>').next()?.to_owned())
}
