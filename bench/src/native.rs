//! The "no sandbox" limit: what a single-threaded native Rust program does
//! for the same work (sha2 + write + fsync + rename).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Chunk size for streaming (the same 1 MiB `kist ingest` uses).
pub const CHUNK: usize = 1 << 20;

/// Streams `src` into `dir`: hash while writing a temporary file, fsync,
/// rename to the digest, fsync the directory. Returns the hex digest.
pub fn ingest(src: &Path, dir: &Path) -> anyhow::Result<String> {
    let mut input = File::open(src)?;
    let tmp = dir.join(".ingest.tmp");
    let mut out = File::create(&tmp)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0; CHUNK];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    let hex = hex(&hash.finalize());
    fs::rename(&tmp, dir.join(&hex))?;
    File::open(dir)?.sync_all()?;
    Ok(hex)
}

/// `sha256:<hex>` of a file's content.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    sha256_reader(File::open(path)?)
}

/// `sha256:<hex>` of what `reader` gives, streamed.
pub fn sha256_reader(mut reader: impl Read) -> anyhow::Result<String> {
    let (mut hash, mut buf) = (Sha256::new(), vec![0; CHUNK]);
    loop {
        match reader.read(&mut buf)? {
            0 => return Ok(format!("sha256:{}", hex(&hash.finalize()))),
            n => hash.update(&buf[..n]),
        }
    }
}

/// Stores one small blob: write a temporary file, optionally fsync it and
/// the directory, rename it to its digest.
pub fn put(dir: &Path, data: &[u8], durable: bool) -> anyhow::Result<String> {
    let hex = sha256_hex(data);
    let tmp = dir.join(format!(".{hex}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(&hex))?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(hex)
}

/// Reads a blob and checks its digest.
pub fn read_verified(dir: &Path, hex: &str) -> anyhow::Result<()> {
    let data = fs::read(dir.join(hex))?;
    anyhow::ensure!(sha256_hex(&data) == hex, "corrupt blob {hex}");
    Ok(())
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
