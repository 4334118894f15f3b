//! `kist artifact ...`: the storer from the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use kist::{ArchiveOptions, Artifact, ExtractOptions, Object, RetentionPolicy, Source, Store};

use crate::output::Output;

/// The object that owns artifacts.
#[derive(Args)]
pub struct ObjectArgs {
    /// The owner's kind, e.g. GitRepository.
    #[arg(long)]
    kind: String,
    /// The owner's namespace.
    #[arg(long)]
    namespace: String,
    /// The owner's name.
    #[arg(long)]
    name: String,
    /// The owner's unique id (a recreated object gets a new one)
    /// [default: default].
    #[arg(long)]
    uid: Option<String>,
}

impl ObjectArgs {
    fn object(&self) -> Object {
        let uid = self.uid.as_deref().unwrap_or("default");
        Object::new(&self.kind, &self.namespace, &self.name, uid)
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Archive a directory (deterministic .tar.gz) as the object's current
    /// artifact for a revision; a no-op if it already is and verifies.
    Archive {
        /// The directory to archive.
        dir: PathBuf,
        #[command(flatten)]
        object: ObjectArgs,
        /// The source revision, e.g. main@sha1:0123abc.
        #[arg(long)]
        revision: String,
        /// The artifact's file name [default: the revision made safe, plus .tar.gz].
        #[arg(long)]
        file: Option<String>,
        /// Patterns to leave out, in .gitignore syntax (repeatable).
        #[arg(long)]
        ignore: Vec<String>,
        /// Largest total size of the files archived, in bytes.
        #[arg(long, default_value_t = kist::DEFAULT_MAX_SIZE)]
        max_size: u64,
        /// Metadata as key=value (repeatable).
        #[arg(long = "metadata", short = 'm')]
        metadata: Vec<String>,
    },
    /// List artifacts matching any of the filters (fields kind, namespace,
    /// name, uid, path, revision, digest, size, metadata.<key>).
    Ls {
        /// Filters; an artifact is listed if any matches.
        filters: Vec<String>,
        /// The host (and port) artifact URLs use: what `kist serve` answers
        /// on.
        #[arg(long, default_value = "localhost:9090")]
        hostname: String,
    },
    /// Write an artifact's bytes (a path or a latest alias) to stdout or a
    /// file.
    Get {
        /// <kind>/<namespace>/<name>/<file>
        path: String,
        /// Write to this file (atomically) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Remove artifacts beyond a count or older than a TTL (the current one
    /// is always kept), and any that no longer verify, for every owner (or
    /// those of a kind, namespace or name).
    Gc {
        /// Most artifacts kept per object, the current one included.
        #[arg(long)]
        retain: u32,
        /// Remove other artifacts older than this (e.g. 1h, 7d).
        #[arg(long, value_parser = crate::parse_duration)]
        ttl: Option<Duration>,
        /// Only this kind of owner.
        #[arg(long)]
        kind: Option<String>,
        /// Only owners in this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only owners with this name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Re-hash artifacts against their digests (all when no path is
    /// given); exits 1 if any differs.
    Verify {
        /// Artifact paths.
        paths: Vec<String>,
    },
    /// Extract an archive artifact into a directory.
    Extract {
        /// <kind>/<namespace>/<name>/<file>
        path: String,
        /// The destination directory (created if missing).
        dest: PathBuf,
        /// Extract only this directory of the archive.
        #[arg(long, default_value = "")]
        sub_path: String,
        /// Largest total size of the files written, in bytes.
        #[arg(long, default_value_t = kist::DEFAULT_MAX_SIZE)]
        max_size: u64,
        /// Apply OCI whiteouts (.wh.<name> removes <name>).
        #[arg(long)]
        whiteouts: bool,
    },
    /// Remove an object and all its artifacts.
    Rm {
        #[command(flatten)]
        object: ObjectArgs,
    },
}

/// Runs an artifact command.
pub fn run(store: &Store, command: Command, out: &Output) -> anyhow::Result<()> {
    let storer = store.storer();
    match command {
        Command::Archive {
            dir,
            object,
            revision,
            file,
            ignore,
            max_size,
            metadata,
        } => {
            let file = file.unwrap_or_else(|| default_file(&revision));
            let metadata = metadata
                .iter()
                .map(|m| m.split_once('='))
                .collect::<Option<Vec<_>>>()
                .context("metadata is given as key=value")?;
            let options = ArchiveOptions { ignore, max_size };
            let artifact = storer.reconcile_artifact(
                &object.object(),
                &revision,
                &file,
                Source::Directory(&dir, options),
                &metadata,
            )?;
            out.artifacts(&[artifact], "localhost")
        }
        Command::Ls { filters, hostname } => {
            let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
            out.artifacts(&storer.list(&filters)?, &hostname)
        }
        Command::Get { path, output } => {
            let artifact = storer.get(&path)?.ok_or(kist::Error::NotFound)?;
            crate::commands::get(store, &artifact.digest, output.as_deref(), true, out)
        }
        Command::Gc {
            retain,
            ttl,
            kind,
            namespace,
            name,
        } => {
            let policy = RetentionPolicy {
                max_count: retain,
                ttl_seconds: ttl.map(|t| t.as_secs()),
            };
            // Filters over the owners' fields; none selects every owner.
            // Kinds match whatever their case: paths spell them in lower
            // case, objects as their API does (`GitRepository`).
            let selected: Vec<String> = [("namespace", namespace), ("name", name)]
                .into_iter()
                .filter_map(|(field, value)| value.map(|v| format!("{field}=={v:?}")))
                .collect();
            let filter = selected.join(",");
            let filters: Vec<&str> = [filter.as_str()]
                .into_iter()
                .filter(|f| !f.is_empty())
                .collect();
            let mut objects = owners(&storer.list(&filters)?);
            if let Some(kind) = kind {
                objects.retain(|o| o.kind.eq_ignore_ascii_case(&kind));
            }
            let mut removed = Vec::new();
            for object in objects {
                removed.extend(storer.reconcile_storage(&object, policy)?);
            }
            out.artifacts(&removed, "localhost")
        }
        Command::Verify { paths } => {
            let paths = if paths.is_empty() {
                storer.list(&[])?.into_iter().map(|a| a.path).collect()
            } else {
                paths
            };
            let (mut good, mut missing, mut bad) = (Vec::new(), 0, 0);
            for path in &paths {
                match storer.verify(path) {
                    Ok(_) => good.push(path.as_str()),
                    Err(kist::Error::NotFound) => {
                        missing += 1;
                        eprintln!("kist: {path}: not found");
                    }
                    Err(e) => {
                        bad += 1;
                        eprintln!("kist: {path}: {e}");
                    }
                }
            }
            out.done_all(&good)?;
            match (bad, missing) {
                (0, 0) => Ok(()),
                // Only missing ones: "not found" (exit 2).
                (0, n) => Err(anyhow::Error::new(kist::Error::NotFound)
                    .context(format!("{n} of {} artifact(s) not found", paths.len()))),
                (n, _) => anyhow::bail!("{n} of {} artifact(s) failed verification", paths.len()),
            }
        }
        Command::Extract {
            path,
            dest,
            sub_path,
            max_size,
            whiteouts,
        } => {
            let options = ExtractOptions {
                max_size,
                whiteouts,
            };
            let written = storer.extract(&path, &sub_path, &dest, &options)?;
            out.done(&format!("{path}: {written} bytes into {}", dest.display()))
        }
        Command::Rm { object } => {
            let removed = storer.remove_object(&object.object())?;
            out.artifacts(&removed, "localhost")
        }
    }
}

/// `revision` with everything outside `[A-Za-z0-9._-]` replaced, plus
/// `.tar.gz`, as Flux names archives after their revision. A name that
/// would start with `latest` (the alias; OCIRepository revisions such as
/// `latest@sha256:...`) keeps only what follows the `@`, or gets a `rev-`
/// prefix.
fn default_file(revision: &str) -> String {
    let name = safe_file(revision);
    if !name.starts_with("latest") {
        return name;
    }
    match revision.split_once('@') {
        Some((_, rest)) if !rest.is_empty() => safe_file(rest),
        _ => format!("rev-{name}"),
    }
}

/// `text` with everything outside `[A-Za-z0-9._-]` replaced, plus
/// `.tar.gz`.
fn safe_file(revision: &str) -> String {
    let safe: String = revision
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    format!("{}.tar.gz", safe.trim_start_matches(['.', '-']))
}

/// The distinct owners of `artifacts`.
fn owners(artifacts: &[Artifact]) -> Vec<Object> {
    let mut seen: Vec<Object> = Vec::new();
    for a in artifacts {
        let o = &a.object;
        let known = seen.iter().any(|s| {
            (&s.kind, &s.namespace, &s.name, &s.uid) == (&o.kind, &o.namespace, &o.name, &o.uid)
        });
        if !known {
            seen.push(o.clone());
        }
    }
    seen
}
