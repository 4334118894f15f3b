//! Where a layer's bytes come from: an `http(s)://` URL through the host's
//! `fetch` capability, or a `file://` URL read through a directory the host
//! lent (WASI resolves the path beneath that descriptor: no `..`, no
//! symlink out of it).

use crate::bindings::exports::kist::content::layers::LentDir;
use crate::bindings::kist::content::fetch::{self, Download, FetchError};
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

/// An open source, positioned at `start`.
pub enum Source {
    Http(Download),
    File { fd: Descriptor, at: u64 },
}

/// `%XX` escapes decoded; `None` if one is malformed or the result is not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The lent directory and the relative path a `file://` URL names.
fn lent_path<'a>(url: &str, lent: &'a [LentDir]) -> Result<(&'a Descriptor, String), String> {
    let rest = url.strip_prefix("file://").expect("a file URL");
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let path = percent_decode(rest).ok_or_else(|| format!("{url}: malformed %-escape"))?;
    if !path.starts_with('/') || path.contains('\0') {
        return Err(format!("{url}: a file URL names an absolute path"));
    }
    for dir in lent {
        let base = dir.path.trim_end_matches('/');
        let Some(relative) = path.strip_prefix(base).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        if relative
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!("{url}: `.`, `..` and empty components are refused"));
        }
        return Ok((&dir.dir, relative.to_owned()));
    }
    Err(format!(
        "{url}: not under a directory the host lends (file:// reaches only those)"
    ))
}

fn fetch_error(url: &str, e: FetchError) -> String {
    match e {
        FetchError::InvalidUrl(m) => format!("invalid URL: {m}"),
        FetchError::NotAllowed(m) => format!("{url}: not allowed: {m}"),
        FetchError::Dns(m) => format!("DNS: {m}"),
        FetchError::Connect(m) => format!("connect: {m}"),
        FetchError::Timeout(m) => format!("timeout: {m}"),
        FetchError::Status(code) => format!("{url}: HTTP status {code}"),
        FetchError::Io(m) => format!("{url}: {m}"),
    }
}

impl Source {
    /// Opens `url` from `offset`; the error says why it cannot be used.
    pub fn open(url: &str, offset: u64, lent: &[LentDir]) -> Result<Self, String> {
        if url.starts_with("http://") || url.starts_with("https://") {
            return fetch::get(url, offset)
                .map(Source::Http)
                .map_err(|e| fetch_error(url, e));
        }
        if !url.starts_with("file://") {
            return Err(format!(
                "{url}: only http://, https:// and file:// sources are supported"
            ));
        }
        let (dir, path) = lent_path(url, lent)?;
        let fd = dir
            .open_at(
                PathFlags::empty(),
                &path,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .map_err(|e| format!("{url}: {}", e.message()))?;
        Ok(Source::File { fd, at: offset })
    }

    /// Where the bytes this source gives start: the offset asked for, or
    /// 0 when a server ignored the range.
    pub fn start(&self) -> u64 {
        match self {
            Source::Http(d) => d.start(),
            Source::File { at, .. } => *at,
        }
    }

    /// The next bytes, at most `max`; empty at the end.
    pub fn read(&mut self, url: &str, max: u32) -> Result<Vec<u8>, String> {
        match self {
            Source::Http(d) => d.read(max).map_err(|e| fetch_error(url, e)),
            Source::File { fd, at } => {
                let (bytes, _) = fd
                    .read(u64::from(max), *at)
                    .map_err(|e| format!("{url}: {}", e.message()))?;
                *at += bytes.len() as u64;
                Ok(bytes)
            }
        }
    }
}
