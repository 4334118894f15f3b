//! `kist ingest`: store a file or stdin, resuming an interrupted ingest.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kist::{Error, Store, WriterOptions};
use sha2::Digest as _;

use crate::output::Output;

/// Bytes read from a stream per write.
const CHUNK: usize = 1 << 20;
/// Bytes of a file copied between two updates of the progress bar.
const FILE_PIECE: u64 = 256 << 20;
/// Longest ref the store accepts.
const MAX_REF: usize = 1024;
/// What default refs of files start with.
const FILE_REF: &str = "file:";

#[derive(clap::Args)]
pub struct Args {
    /// The file to store; `-` or nothing reads stdin.
    #[arg(default_value = "-")]
    file: PathBuf,
    /// The ingest's name. Defaults to one derived from the file (its path,
    /// device, inode, size and times), so re-running the same command
    /// resumes; stdin and pipes get a fresh ref unless one is given. A
    /// resume first checks that the ingest holds the source's first
    /// bytes, and starts over when it does not.
    #[arg(long = "ref")]
    reference: Option<String>,
    /// The size the content must have (default: the file's size).
    #[arg(long)]
    expected_size: Option<u64>,
    /// The digest the content must have (`sha256:<hex>` or `sha512:<hex>`).
    #[arg(long)]
    expected_digest: Option<String>,
    /// Labels for the blob, `key=value` (also applied when the content is
    /// stored already).
    #[arg(long = "label", value_parser = crate::parse_label)]
    labels: Vec<(String, String)>,
    /// Hold the ingest and the blob by this lease only (see `kist lease`):
    /// the same as `kist --as lease/ID ingest`.
    #[arg(long)]
    lease: Option<String>,
}

/// Where the bytes come from.
enum Source {
    /// A regular file, which can be re-read and sought.
    File(File),
    /// Stdin, a pipe or a device: read once, in order.
    Stream(Box<dyn Read>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::File(f) => f.read(buf),
            Source::Stream(s) => s.read(buf),
        }
    }
}

pub fn run(store: &Store, args: Args, out: &Output) -> anyhow::Result<()> {
    let leased;
    let store = match &args.lease {
        Some(id) => {
            // A lease that is not there is what the error names.
            crate::commands::named(store.leases().get(id), &format!("lease {id:?}"))?;
            leased = store.with_lease(id);
            &leased
        }
        None => store,
    };
    let (mut source, size, default_ref) = open_source(&args.file)?;
    let own_ref = args.reference.is_none();
    let reference = args.reference.unwrap_or(default_ref);
    let labels: Vec<(&str, &str)> = args
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let options = WriterOptions {
        expected_size: args.expected_size.or(size),
        expected: args.expected_digest.clone(),
        labels: kist::labels(&labels),
        holder: None,
    };
    let mut writer = match store.writer_with(&reference, &options) {
        // Already stored, intact: containerd's WriteBlob does not read
        // the source either. Say so, and still apply the labels.
        Err(Error::AlreadyExists) => {
            let digest = options.expected.as_deref().expect("comes with a digest");
            eprintln!(
                "kist: {digest} is already stored; {} was not read",
                args.file.display()
            );
            let size = label(store, digest, &labels)?;
            return out.digest(digest, size);
        }
        other => other.with_context(|| format!("opening ingest {reference:?}"))?,
    };
    let mut offset = writer.status()?.offset;
    if offset > 0 && !holds_prefix(&mut source, offset, &writer.digest()?)? {
        // The ingest holds other bytes than the source starts with (the
        // file was rewritten, another stream was given the same ref).
        let Source::File(file) = &mut source else {
            anyhow::bail!(
                "the input's first {offset} bytes differ from what ingest {reference:?} holds; \
                 `kist abort {reference}` drops it"
            );
        };
        eprintln!(
            "kist: ingest {reference:?} holds other bytes than {}; starting over",
            args.file.display()
        );
        writer.truncate(0)?;
        file.seek(SeekFrom::Start(0))?;
        offset = 0;
    }
    let progress = progress_bar(options.expected_size, offset);
    match &mut source {
        // The host copies a file's bytes itself (see
        // `Writer::write_from_file`); read to its end, as a stream is.
        Source::File(file) => loop {
            let n = writer.write_from_file(file, offset, FILE_PIECE)?;
            offset += n;
            progress.inc(n);
            if n < FILE_PIECE {
                break;
            }
        },
        Source::Stream(stream) => {
            let mut buf = vec![0; CHUNK];
            loop {
                let n = stream.read(&mut buf).context("reading the source")?;
                if n == 0 {
                    break;
                }
                writer.write_all(&buf[..n])?;
                progress.inc(n as u64);
            }
        }
    }
    progress.finish_and_clear();
    let size = writer.status()?.offset;
    let digest = writer.digest()?;
    match writer.commit(None, None, &[]) {
        Ok(_) => {}
        // Stored meanwhile (or by another ref): apply the labels to it.
        Err(Error::AlreadyExists) => {
            label(store, &digest, &labels)?;
        }
        // The data is known not to be what was declared: an ingest kist
        // named itself is dropped, so a plain retry starts clean.
        Err(Error::FailedPrecondition(m)) if own_ref => {
            store.abort(&reference)?;
            anyhow::bail!("committing {}: {m}; nothing was kept", args.file.display());
        }
        Err(Error::FailedPrecondition(m)) => anyhow::bail!(
            "committing ingest {reference:?}: {m}; it is kept: `kist abort {reference}` drops it"
        ),
        Err(e) => return Err(e).with_context(|| format!("committing ingest {reference:?}")),
    }
    if own_ref {
        drop_stale_ingests(store, &reference)?;
    }
    out.digest(&digest, size)
}

/// Applies `labels` to the stored blob `digest`; returns its size.
fn label(store: &Store, digest: &str, labels: &[(&str, &str)]) -> anyhow::Result<u64> {
    if labels.is_empty() {
        return Ok(store.info(digest)?.size);
    }
    let changes: Vec<(&str, Option<&str>)> = labels.iter().map(|(k, v)| (*k, Some(*v))).collect();
    Ok(store.label(digest, &changes)?.size)
}

/// Whether the source's first `offset` bytes hash to `digest` (the
/// ingest's digest so far), leaving the source at `offset` either way when
/// it is a stream. A file is hashed from the start and left at `offset`;
/// its cost is reading that prefix once (several hundred MB/s here).
fn holds_prefix(source: &mut Source, offset: u64, digest: &str) -> anyhow::Result<bool> {
    let mut verifier = kist::Verifier::new(digest);
    if let Source::File(file) = source {
        file.seek(SeekFrom::Start(0))?;
    }
    let mut prefix = source.by_ref().take(offset);
    let read = std::io::copy(&mut prefix, &mut verifier).context("reading the source")?;
    anyhow::ensure!(
        read == offset,
        "the input ended after {read} bytes; the ingest already holds {offset}"
    );
    Ok(verifier.finish(read).is_ok())
}

/// Aborts the other ingests `kist ingest` made of the same path: what an
/// earlier version of the file left half done. Ones in use are left.
fn drop_stale_ingests(store: &Store, reference: &str) -> anyhow::Result<()> {
    let Some((path, _)) = reference.rsplit_once('@') else {
        return Ok(());
    };
    let prefix = format!("{path}@");
    for status in store.list_statuses(&[])? {
        if status.ref_ != reference && status.ref_.starts_with(&prefix) {
            match store.abort(&status.ref_) {
                Ok(()) | Err(Error::NotFound | Error::Unavailable) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The source, its size if known, and the ref re-running should resume.
fn open_source(path: &Path) -> anyhow::Result<(Source, Option<u64>, String)> {
    let stream_ref = || -> anyhow::Result<String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        Ok(format!("stdin-{}-{nanos}", std::process::id()))
    };
    if path.as_os_str() == "-" {
        return Ok((
            Source::Stream(Box::new(std::io::stdin())),
            None,
            stream_ref()?,
        ));
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        anyhow::bail!(
            "{}: is a directory (ingest stores one file)",
            path.display()
        );
    }
    if !meta.is_file() {
        // A pipe (`<(cmd)`, `/dev/stdin`) or a device: read it as a stream.
        return Ok((Source::Stream(Box::new(file)), None, stream_ref()?));
    }
    let path = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    Ok((Source::File(file), Some(meta.len()), file_ref(&path, &meta)))
}

/// The default ref of a regular file: its path and everything that
/// changes when its content can have changed (device, inode, size, mtime
/// and ctime to the nanosecond; ctime cannot be set back by `touch -r`),
/// so a resume never mixes old and new content. A path too long for a ref
/// is replaced by its sha256.
fn file_ref(path: &Path, meta: &std::fs::Metadata) -> String {
    let identity = format!(
        "@{}:{}:{}:{}.{}:{}.{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let shown = path.display().to_string();
    if FILE_REF.len() + shown.len() + identity.len() <= MAX_REF {
        return format!("{FILE_REF}{shown}{identity}");
    }
    let hash: String = sha2::Sha256::digest(shown.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{FILE_REF}sha256:{hash}{identity}")
}

/// A progress bar on stderr when it is a terminal, else a hidden one.
fn progress_bar(total: Option<u64>, done: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    bar.set_draw_target(ProgressDrawTarget::stderr());
    // Without a declared size there is no total to show, nor a bar.
    let template = match total {
        Some(_) => "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
        None => "{spinner} {bytes} {binary_bytes_per_sec}",
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar.set_position(done);
    bar
}
