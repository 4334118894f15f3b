//! Every command but `ingest`: thin calls into the library.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use kist::Store;

use crate::output::Output;
use crate::{Command, Which};

/// Runs `command` on `store`, printing through `out`.
pub fn run(store: &Store, command: Command, out: &Output) -> anyhow::Result<()> {
    match command {
        Command::Ingest(args) => crate::ingest::run(store, args, out),
        Command::Get { digest, output } => get(store, &digest, output.as_deref(), out),
        Command::Info { digest } => out.info(&store.info(&digest)?),
        Command::Ls { quiet, filters } => {
            let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
            let mut infos = store.walk(&filters)?.collect::<kist::Result<Vec<_>>>()?;
            infos.sort_by(|a, b| a.digest.cmp(&b.digest));
            out.list(&infos, quiet)
        }
        Command::Rm { digests } => rm(store, &digests, out),
        Command::Label { digest, labels } => {
            let changes = labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k, (!v.is_empty()).then_some(v)))
                })
                .collect::<Option<Vec<_>>>()
                .context("labels are given as key=value (key= removes)")?;
            out.info(&store.label(&digest, &changes)?)
        }
        Command::Active { regex } => {
            // A /regex/ literal keeps the regex's own escapes intact.
            let filter = regex.map(|r| format!("ref~=/{}/", r.replace('/', "\\/")));
            out.statuses(
                &store.list_statuses(
                    filter
                        .as_slice()
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .as_slice(),
                )?,
            )
        }
        Command::Fsck { repair } => fsck(store, repair, out),
        Command::Abort { reference } => {
            store.abort(&reference)?;
            out.done(&reference)
        }
        Command::Component { which, output } => component(which, output.as_deref()),
        Command::Artifact { command } => crate::artifact::run(store, command, out),
        Command::Serve(args) => crate::serve::run(store, args),
    }
}

/// Writes one of the built-in components to stdout or `path`.
pub fn component(which: Which, path: Option<&Path>) -> anyhow::Result<()> {
    let bytes = match which {
        Which::Store => kist::components::STORE,
        Which::Capabilities => kist::components::CAPABILITIES,
        Which::Portable => kist::components::PORTABLE,
    };
    match path {
        Some(path) => std::fs::write(path, bytes).with_context(|| path.display().to_string()),
        None => Ok(std::io::stdout().lock().write_all(bytes)?),
    }
}

/// Copies a blob to stdout or to `path`. A regular file (or a new path)
/// is written atomically: a temporary file in the same directory, renamed
/// over `path` when complete. Anything else (`/dev/null`, a FIFO) is
/// written in place: renaming over it would replace the device.
pub fn get(store: &Store, digest: &str, path: Option<&Path>, out: &Output) -> anyhow::Result<()> {
    let mut reader = store.reader(digest)?;
    let Some(path) = path else {
        let mut stdout = std::io::stdout().lock();
        reader.copy_to(&mut stdout)?;
        return Ok(stdout.flush()?);
    };
    let size = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            reader.copy_to(&mut file)?
        }
        _ => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let size = reader.copy_to(&mut tmp)?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
            size
        }
    };
    out.written(digest, size, path)
}

/// Removes each blob. Every failure gets one line on stderr: all but the
/// last are printed here, the last is returned (and sets the exit code).
fn rm(store: &Store, digests: &[String], out: &Output) -> anyhow::Result<()> {
    let mut failed: Option<anyhow::Error> = None;
    for digest in digests {
        match store.delete(digest) {
            Ok(()) => out.done(digest)?,
            Err(e) => {
                if let Some(previous) =
                    failed.replace(anyhow::Error::new(e).context(digest.clone()))
                {
                    eprintln!("kist: {previous:#}");
                }
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Runs a check, printing problems as they are found; fails if any.
fn fsck(store: &Store, repair: bool, out: &Output) -> anyhow::Result<()> {
    let mut check = store.check(repair)?;
    let mut problems = Vec::new();
    for problem in check.by_ref() {
        let problem = problem?;
        out.problem(&problem)?;
        problems.push(problem);
    }
    out.problems(&problems)?;
    let repaired = problems.iter().filter(|p| p.repaired.is_some()).count();
    match problems.len() {
        0 => Ok(()),
        n => anyhow::bail!("fsck found {n} problem(s), repaired {repaired}"),
    }
}
