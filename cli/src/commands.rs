//! Every command but `ingest`: thin calls into the library.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use kist::Store;

use crate::output::Output;
use crate::{Command, Which};

/// Runs `command` on `store`, printing through `out`.
pub fn run(store: &Store, command: Command, out: &Output) -> anyhow::Result<()> {
    match command {
        Command::Ingest(args) => crate::ingest::run(store, args, out),
        Command::Pull(args) => crate::pull::run(store, args),
        Command::Get {
            digest,
            output,
            no_verify,
        } => get(store, &digest, output.as_deref(), !no_verify, out),
        Command::Info { digest } => out.info(&named(store.info(&digest), &digest)?),
        Command::Ls {
            quiet,
            cached,
            filters,
        } => ls(store, &filters, quiet, cached, out),
        Command::Rm { digests } => rm(store, &digests, out),
        Command::Hold { digests } => {
            let infos = digests
                .iter()
                .map(|d| named(store.hold(d), d))
                .collect::<anyhow::Result<Vec<_>>>()?;
            out.list(&infos, false)
        }
        Command::Purge { digests } => {
            for d in &digests {
                named(store.purge(d), d)?;
            }
            let digests: Vec<&str> = digests.iter().map(String::as_str).collect();
            out.done_all(&digests)
        }
        Command::Gc { dry_run } => crate::retention::gc(store, dry_run, out),
        Command::Lease { command } => crate::lease::run(store, command, out),
        Command::Snapshot { command } => crate::snapshot::run(store, command, out),
        Command::Layer { command } => crate::layer::run(store, command, out),
        Command::Quota { command } => crate::retention::quota(store, command, out),
        Command::Config { command } => crate::retention::config(store, command, out),
        Command::Df => crate::retention::df(store, out),
        Command::Label { digest, labels } => {
            let changes = labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k, (!v.is_empty()).then_some(v)))
                })
                .collect::<Option<Vec<_>>>()
                .context("labels are given as key=value (key= removes)")?;
            out.info(&named(store.label(&digest, &changes), &digest)?)
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
            named(store.abort(&reference), &format!("ingest {reference:?}"))?;
            out.done(&reference)
        }
        Command::Component { which, output } => component(which, output.as_deref()),
        Command::Artifact { command } => crate::artifact::run(store, command, out),
        Command::Serve(args) => crate::serve::run(store, *args),
    }
}

/// `result`, a failure naming `what` it was about: `kist: sha256:…: not
/// found` rather than a bare `not found` (the exit status still tells a
/// missing thing by the error kept underneath).
pub(crate) fn named<T>(result: kist::Result<T>, what: &str) -> anyhow::Result<T> {
    result.with_context(|| what.to_owned())
}

/// Lists blobs. One that cannot be described (damaged labels) gets a line
/// on stderr and the rest are still listed; the exit status says so.
fn ls(
    store: &Store,
    filters: &[String],
    quiet: bool,
    cached: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    let (mut infos, mut damaged) = (Vec::new(), 0);
    let walk = if cached {
        store.walk_cached(&filters)?
    } else {
        store.walk(&filters)?
    };
    for info in walk {
        match info {
            Ok(info) => infos.push(info),
            Err(e @ kist::Error::Corrupt(_)) => {
                damaged += 1;
                eprintln!("kist: {e}; `kist fsck --repair` quarantines it");
            }
            Err(e) => return Err(e.into()),
        }
    }
    infos.sort_by(|a, b| a.digest.cmp(&b.digest));
    out.list(&infos, quiet)?;
    match damaged {
        0 => Ok(()),
        n => anyhow::bail!("{n} blob(s) could not be listed"),
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
        None => Ok(crate::stdout::stdout().write_all(bytes)?),
    }
}

/// Copies a blob to stdout or to `path`, checked against its digest on
/// the way: a damaged blob fails, and never replaces `path`. A regular
/// file (or a new path) is written atomically: a temporary file in the
/// same directory, created as the umask says (an existing file's mode is
/// kept), renamed over `path` once complete and verified. Anything else
/// (`/dev/null`, a FIFO) is written in place: renaming over it would
/// replace the device.
pub fn get(
    store: &Store,
    digest: &str,
    path: Option<&Path>,
    verify: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let mut reader = named(store.reader(digest), digest)?;
    let mut copy = |to: &mut dyn Write| -> kist::Result<u64> {
        if verify {
            reader.copy_verified_to(to)
        } else {
            reader.copy_to(to)
        }
    };
    let Some(path) = path else {
        let mut stdout = crate::stdout::stdout();
        copy(&mut stdout)?;
        return Ok(stdout.flush()?);
    };
    let existing = std::fs::metadata(path).ok();
    let size = match existing {
        Some(meta) if !meta.is_file() => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            copy(&mut file)?
        }
        _ => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            // 0666 less the umask, as a shell redirection creates files.
            let mode = existing.as_ref().map_or(0o666, |m| m.permissions().mode());
            let mut tmp = tempfile::Builder::new()
                .permissions(std::fs::Permissions::from_mode(mode))
                .tempfile_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let size = copy(&mut tmp)?;
            if existing.is_some() {
                // The umask applied at creation; an existing mode is kept
                // exactly.
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
            size
        }
    };
    out.written(digest, size, path)
}

/// Releases each blob, saying who still holds one that others hold.
/// Every failure gets one line on stderr: all but the last are printed
/// here, the last is returned (and sets the exit code).
fn rm(store: &Store, digests: &[String], out: &Output) -> anyhow::Result<()> {
    let mut failed: Option<anyhow::Error> = None;
    let mut removed = Vec::new();
    for digest in digests {
        match store.delete(digest) {
            Ok(others) => {
                if !others.is_empty() {
                    eprintln!(
                        "kist: {digest}: released by {}; still held by {}",
                        store.holder(),
                        others.join(", ")
                    );
                }
                removed.push(digest.as_str());
            }
            Err(e) => {
                let e = match (e, store.info(digest)) {
                    // Held, but not by this holder: say by whom.
                    (kist::Error::NotFound, Ok(info)) => anyhow::anyhow!(
                        "not held by {}; held by {} (`--as HOLDER rm` releases theirs)",
                        store.holder(),
                        info.holders.join(", ")
                    ),
                    (e, _) => anyhow::Error::new(e),
                };
                if let Some(previous) = failed.replace(e.context(digest.clone())) {
                    eprintln!("kist: {previous:#}");
                }
            }
        }
    }
    out.done_all(&removed)?;
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
