//! `kist ingest`: store a file or stdin, resuming an interrupted ingest.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kist::{Error, Store};

use crate::output::Output;

/// Bytes read from the source per write.
const CHUNK: usize = 1 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// The file to store; `-` or nothing reads stdin.
    #[arg(default_value = "-")]
    file: PathBuf,
    /// The ingest's name. Defaults to one derived from the file's path,
    /// size and mtime, so re-running the same command resumes; stdin gets
    /// a fresh ref unless one is given.
    #[arg(long = "ref")]
    reference: Option<String>,
    /// The size the content must have (default: the file's size).
    #[arg(long)]
    expected_size: Option<u64>,
    /// The digest the content must have (`sha256:<hex>` or `sha512:<hex>`).
    #[arg(long)]
    expected_digest: Option<String>,
    /// Labels for the new blob, `key=value`.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// Where the bytes come from.
enum Source {
    File(File),
    Stdin(std::io::Stdin),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::File(f) => f.read(buf),
            Source::Stdin(s) => s.read(buf),
        }
    }
}

impl Source {
    /// Moves past the `offset` bytes the ingest already has: a seek for a
    /// file, reading and discarding for a pipe (as containerd's
    /// `content.Copy` does).
    fn skip(&mut self, offset: u64) -> anyhow::Result<()> {
        match self {
            Source::File(f) => {
                f.seek(SeekFrom::Start(offset))?;
            }
            Source::Stdin(s) => {
                let skipped = std::io::copy(&mut s.take(offset), &mut std::io::sink())?;
                anyhow::ensure!(
                    skipped == offset,
                    "stdin ended after {skipped} bytes; the ingest already has {offset}"
                );
            }
        }
        Ok(())
    }
}

pub fn run(store: &Store, args: Args, out: &Output) -> anyhow::Result<()> {
    let (mut source, size, default_ref) = open_source(&args.file)?;
    let reference = args.reference.unwrap_or(default_ref);
    let expected_size = args.expected_size.or(size);
    let expected = args.expected_digest.as_deref();
    let mut writer = match store.writer(&reference, expected_size, expected) {
        // Already stored: nothing to do (containerd's WriteBlob does the same).
        Err(Error::AlreadyExists) => {
            let digest = expected.expect("already-exists comes only with an expected digest");
            return out.digest(digest, store.info(digest)?.size);
        }
        other => other.with_context(|| format!("opening ingest {reference:?}"))?,
    };
    let offset = writer.status()?.offset;
    source.skip(offset)?;
    let progress = progress_bar(expected_size, offset);
    let mut buf = vec![0; CHUNK];
    loop {
        let n = source.read(&mut buf).context("reading the source")?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    let size = writer.status()?.offset;
    let digest = writer.digest()?;
    let labels: Vec<(&str, &str)> = args
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match writer.commit(None, None, &labels) {
        Ok(_) | Err(Error::AlreadyExists) => out.digest(&digest, size),
        Err(e) => Err(e).with_context(|| format!("committing ingest {reference:?}")),
    }
}

/// The source, its size if known, and the ref re-running should resume.
fn open_source(path: &PathBuf) -> anyhow::Result<(Source, Option<u64>, String)> {
    if path.as_os_str() == "-" {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        return Ok((
            Source::Stdin(std::io::stdin()),
            None,
            format!("stdin-{}-{nanos}", std::process::id()),
        ));
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = file.metadata()?;
    let path = path.canonicalize()?;
    // A changed file (size or mtime) gets a new ref, so a resume never
    // mixes old and new content.
    let reference = format!(
        "file:{}@{}:{}.{}",
        path.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    Ok((Source::File(file), Some(meta.len()), reference))
}

/// A progress bar on stderr when it is a terminal, else a hidden one.
fn progress_bar(total: Option<u64>, done: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}")
            .expect("valid template"),
    );
    bar.set_position(done);
    bar
}
