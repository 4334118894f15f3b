//! `kist:content/inflate` in pure wasm: the same decompression and
//! hashing, in the caller's thread (wasm has no other), so without the
//! overlap the native host gives.

use std::cell::RefCell;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::Component;
use crate::bindings::exports::kist::content::inflate::{
    Compression, Guest, GuestInflater, InflateError,
};
use crate::bindings::wasi::filesystem::preopens;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};

impl Guest for Component {
    type Inflater = Inflater;
}

/// Reads a store file through WASI.
struct File {
    fd: Descriptor,
    at: u64,
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (bytes, _) = self
            .fd
            .read(buf.len().min(1 << 20) as u64, self.at)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.at += bytes.len() as u64;
        Ok(bytes.len())
    }
}

enum State {
    Reading(Box<dyn Read>, Sha256),
    Done(String),
    Failed(InflateError),
}

/// One file being decompressed.
pub struct Inflater(RefCell<State>);

fn open(path: &str, compression: Compression) -> Result<Box<dyn Read>, InflateError> {
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(InflateError::InvalidPath(format!("{path:?}")));
    }
    let (root, _) = preopens::get_directories()
        .into_iter()
        .next()
        .ok_or_else(|| InflateError::Io("no preopened directory".into()))?;
    let fd = root
        .open_at(
            PathFlags::empty(),
            path,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(|e| match e {
            ErrorCode::NoEntry => InflateError::NotFound,
            e => InflateError::Io(format!("open {path}: {e:?}")),
        })?;
    let file = std::io::BufReader::with_capacity(1 << 20, File { fd, at: 0 });
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(file)
                .map_err(|e| InflateError::Malformed(format!("zstd: {e}")))?,
        ),
    })
}

impl GuestInflater for Inflater {
    fn new(path: String, compression: Compression) -> Self {
        Self(RefCell::new(match open(&path, compression) {
            Ok(r) => State::Reading(r, Sha256::new()),
            Err(e) => State::Failed(e),
        }))
    }

    fn read(&self, max: u32) -> Result<Vec<u8>, InflateError> {
        let mut state = self.0.borrow_mut();
        let (reader, hash) = match &mut *state {
            State::Reading(r, h) => (r, h),
            State::Done(_) => return Ok(Vec::new()),
            State::Failed(e) => return Err(e.clone()),
        };
        let mut buf = vec![0u8; (max.max(1) as usize).min(1 << 20)];
        match reader.read(&mut buf) {
            Ok(0) => {
                let hex: String = hash
                    .clone()
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                *state = State::Done(format!("sha256:{hex}"));
                Ok(Vec::new())
            }
            Ok(n) => {
                buf.truncate(n);
                hash.update(&buf);
                Ok(buf)
            }
            Err(e) => {
                let e = InflateError::Malformed(e.to_string());
                *state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn digest(&self) -> Option<String> {
        match &*self.0.borrow() {
            State::Done(d) => Some(d.clone()),
            _ => None,
        }
    }
}
