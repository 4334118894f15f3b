//! `kist:content/fetch`: one HTTP(S) GET with an optional byte range, to
//! the origins the embedder allows and nowhere else. ureq (blocking, with
//! rustls) does the HTTP: the guest's calls are synchronous, so a blocking
//! client on the calling thread is the simplest correct fit.
//!
//! Redirects are followed here, one hop at a time, so every hop's origin
//! is checked against the allow-list before anything connects to it.

use std::io::Read;
use std::time::Duration;

use url::Url;
use wasmtime::component::Resource;

use super::CapabilitiesView;
use crate::bindings::kist::content::fetch::{FetchError, Host, HostDownload};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// Where the store's guests may download from, and how patiently.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Allowed origins, as `scheme://host:port` (ports always explicit).
    origins: Vec<String>,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// Bytes per second a body must average once `grace` is over.
    min_rate: u64,
    grace: Duration,
}

impl Default for FetchPolicy {
    /// Nothing allowed; 10 s to connect, 30 s without a byte, and at least
    /// 4 KiB/s on average after the first 10 s (an origin dripping a byte
    /// now and then must not hold the layers lock forever).
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            min_rate: 4 << 10,
            grace: Duration::from_secs(10),
        }
    }
}

/// `scheme://host:port` of an http(s) URL.
fn origin_of(url: &Url) -> Option<String> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    Some(format!(
        "{scheme}://{}:{}",
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

impl FetchPolicy {
    /// Allows `origin` (`http://host[:port]` or `https://host[:port]`; a
    /// path, if any, is ignored: origins are allowed whole).
    pub fn allow(mut self, origin: &str) -> Result<Self, String> {
        if !origin.contains("://") {
            return Err(format!(
                "{origin}: an origin names its scheme: http://{origin} or https://{origin}"
            ));
        }
        let url = Url::parse(origin).map_err(|e| format!("{origin}: {e}"))?;
        let origin = origin_of(&url)
            .ok_or_else(|| format!("{origin}: an origin is http:// or https:// with a host"))?;
        self.origins.push(origin);
        Ok(self)
    }

    /// Sets the connect timeout and the longest wait for the next byte.
    pub fn timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// Sets the bytes per second a body must average once `grace` has
    /// passed since its request (counted from the end of the grace); a
    /// slower one fails, and the next try resumes it with a range.
    pub fn min_rate(mut self, bytes_per_second: u64, grace: Duration) -> Self {
        self.min_rate = bytes_per_second;
        self.grace = grace;
        self
    }

    fn check(&self, url: &str) -> Result<Url, FetchError> {
        let parsed = Url::parse(url).map_err(|e| FetchError::InvalidUrl(format!("{url}: {e}")))?;
        let origin = origin_of(&parsed).ok_or_else(|| {
            FetchError::InvalidUrl(format!("{url}: only http:// and https:// are fetched"))
        })?;
        if !self.origins.contains(&origin) {
            return Err(FetchError::NotAllowed(format!(
                "{origin} is not an allowed origin"
            )));
        }
        Ok(parsed)
    }

    fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(self.connect_timeout)
            .timeout_read(self.read_timeout)
            .redirects(0)
            .build()
    }
}

/// A response body being read, held in the resource table.
pub struct Download {
    body: Box<dyn Read + Send + Sync>,
    size: Option<u64>,
    start: u64,
    /// Bytes the server announced for the body, if it did.
    announced: Option<u64>,
    read: u64,
    /// When it was asked for, and the pace it must keep.
    started: std::time::Instant,
    min_rate: u64,
    grace: Duration,
}

impl Download {
    /// A failure if the body is slower than its minimum rate by now.
    fn too_slow(&self) -> Option<FetchError> {
        let elapsed = self.started.elapsed();
        let late = elapsed.checked_sub(self.grace)?;
        let due = (self.min_rate as f64 * late.as_secs_f64()) as u64;
        (self.read < due).then(|| {
            FetchError::Io(format!(
                "the origin sent {} bytes in {:.0} s, slower than {} bytes/s; \
                 the next try resumes where this one stopped",
                self.read,
                elapsed.as_secs_f64(),
                self.min_rate
            ))
        })
    }
}

/// A ureq transport error as the guest sees it.
fn transport(url: &str, e: &ureq::Transport) -> FetchError {
    let msg = format!("{url}: {e}");
    match e.kind() {
        ureq::ErrorKind::Dns => FetchError::Dns(msg),
        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::TooManyRedirects => {
            FetchError::Connect(msg)
        }
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => FetchError::InvalidUrl(msg),
        ureq::ErrorKind::Io if msg.contains("timed out") || msg.contains("Timeout") => {
            FetchError::Timeout(msg)
        }
        _ => FetchError::Io(msg),
    }
}

fn io_error(e: std::io::Error) -> FetchError {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            FetchError::Timeout(e.to_string())
        }
        _ => FetchError::Io(e.to_string()),
    }
}

/// `bytes <start>-<end>/<size|*>` → (start, size).
fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, size.trim().parse().ok()))
}

fn get(policy: &FetchPolicy, url: &str, offset: u64) -> Result<Download, FetchError> {
    let started = std::time::Instant::now();
    let agent = policy.agent();
    let mut url = policy.check(url)?;
    for _ in 0..=MAX_REDIRECTS {
        let mut request = agent.request_url("GET", &url);
        if offset > 0 {
            request = request.set("Range", &format!("bytes={offset}-"));
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => return Err(FetchError::Status(code)),
            Err(ureq::Error::Transport(t)) => return Err(transport(url.as_str(), &t)),
        };
        let status = response.status();
        if (300..400).contains(&status) {
            let location = response.header("location").ok_or_else(|| {
                FetchError::Io(format!("{url}: redirect {status} without a location"))
            })?;
            let next = url
                .join(location)
                .map_err(|e| FetchError::InvalidUrl(format!("{location}: {e}")))?;
            url = policy.check(next.as_str())?;
            continue;
        }
        let length: Option<u64> = response
            .header("content-length")
            .and_then(|v| v.trim().parse().ok());
        let (start, size) = match status {
            206 => {
                let range = response
                    .header("content-range")
                    .and_then(content_range)
                    .ok_or_else(|| FetchError::Io(format!("{url}: 206 without a Content-Range")))?;
                if range.0 != offset {
                    return Err(FetchError::Io(format!(
                        "{url}: asked for bytes from {offset}, the server sent from {}",
                        range.0
                    )));
                }
                range
            }
            200 => (0, length),
            other => return Err(FetchError::Status(other)),
        };
        return Ok(Download {
            body: Box::new(response.into_reader()),
            size,
            start,
            announced: length,
            read: 0,
            started,
            min_rate: policy.min_rate,
            grace: policy.grace,
        });
    }
    Err(FetchError::Io(format!(
        "{url}: more than {MAX_REDIRECTS} redirects"
    )))
}

impl Host for CapabilitiesView<'_> {
    fn get(
        &mut self,
        url: String,
        offset: u64,
    ) -> wasmtime::Result<Result<Resource<Download>, FetchError>> {
        Ok(match get(&self.ctx.fetch, &url, offset) {
            Ok(d) => Ok(self.table.push(d)?),
            Err(e) => Err(e),
        })
    }
}

impl HostDownload for CapabilitiesView<'_> {
    fn size(&mut self, this: Resource<Download>) -> wasmtime::Result<Option<u64>> {
        Ok(self.table.get(&this)?.size)
    }

    fn start(&mut self, this: Resource<Download>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.start)
    }

    fn read(
        &mut self,
        this: Resource<Download>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, FetchError>> {
        let d = self.table.get_mut(&this)?;
        // Read straight into the list handed to the guest: no second copy.
        let mut buf = vec![0; (max.max(1) as usize).min(4 << 20)];
        let n = loop {
            match d.body.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Ok(Err(io_error(e))),
            }
        };
        d.read += n as u64;
        if let Some(slow) = d.too_slow() {
            return Ok(Err(slow));
        }
        if n == 0
            && let Some(announced) = d.announced
            && d.read < announced
        {
            return Ok(Err(FetchError::Io(format!(
                "the body ended after {} of the {announced} bytes announced",
                d.read
            ))));
        }
        buf.truncate(n);
        Ok(Ok(buf))
    }

    fn drop(&mut self, this: Resource<Download>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
