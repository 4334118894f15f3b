//! `kist`: the command-line runner for a kist content store.

mod artifact;
mod commands;
mod config_file;
mod ingest;
mod layer;
mod lease;
mod output;
mod pull;
mod retention;
mod serve;
mod snapshot;
mod stdout;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::output::Output;

/// A content-addressed store (OCI image layout, containerd semantics)
/// whose storage logic runs in a WebAssembly sandbox.
#[derive(Parser)]
#[command(name = "kist", version, about)]
struct Cli {
    /// The store: a directory, or `s3://BUCKET/PREFIX` to share blobs with
    /// every node on that prefix (endpoint, region and credentials from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY; AWS_ALLOW_HTTP=true for plain HTTP)
    /// [default: $KIST_STORE, else $XDG_DATA_HOME/kist]
    #[arg(long, global = true, env = "KIST_STORE")]
    store: Option<PathBuf>,
    /// With `--store s3://…`: this node's own directory, where what it
    /// stores and fetches is kept [default: $XDG_CACHE_HOME/kist/s3/BUCKET/PREFIX]
    #[arg(long, global = true, env = "KIST_NODE_DIR")]
    node_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The holder this command acts as: who holds what it stores, whose
    /// hold `rm` releases [default: default].
    #[arg(long = "as", value_name = "HOLDER", global = true, env = "KIST_HOLDER")]
    holder: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// Human-readable columns.
    Table,
    /// One JSON document on stdout.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Store a file (or stdin) and print its digest; re-running an
    /// interrupted ingest resumes it.
    Ingest(ingest::Args),
    /// Write a blob's bytes to stdout or a file.
    Get {
        /// The blob's digest.
        digest: String,
        /// Write to this file (atomically) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Do not check the bytes against the digest on the way (checking
        /// runs at hashing speed, ~1.5 GB/s here; without it a damaged
        /// blob is written out as it is).
        #[arg(long)]
        no_verify: bool,
    },
    /// Describe a blob, with who holds it.
    Info {
        /// The blob's digest.
        digest: String,
    },
    /// List blobs matching any of the filters (containerd syntax, e.g.
    /// `labels.app==web,size!=0`, `holders.containerd`).
    Ls {
        /// Print digests only.
        #[arg(short, long)]
        quiet: bool,
        /// List cached blobs (released by every holder, still stored)
        /// instead of held ones.
        #[arg(long)]
        cached: bool,
        /// Filters; a blob is listed if any matches.
        filters: Vec<String>,
    },
    /// Release blobs: the holder (`--as`, else `default`) stops holding
    /// them. One nothing holds any more is cached, then removed by the
    /// next collection (`kist gc`) after the cache TTL.
    Rm {
        /// Digests of the blobs to release.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Hold stored blobs (`--as`, else `default`); a cached one is live
    /// again.
    Hold {
        /// Digests of the blobs to hold.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Remove blobs now, whoever holds them: for takedowns. Prefer `rm`.
    Purge {
        /// Digests of the blobs to remove.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Collect: remove expired leases, cached blobs past the cache TTL that
    /// nothing held references (more while a quota is exceeded), and
    /// ingests idle past the ingest TTL. Prints what it removed.
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Leases: holders a client takes before it writes.
    Lease {
        #[command(subcommand)]
        command: lease::Command,
    },
    /// Pull an image from a registry into snapshots committed by chain id
    /// (containerd on this store then skips its layers); with `--from`,
    /// an image whose layers are here, only what changed (a delta pull
    /// from a kist registry).
    Pull(pull::Args),
    /// Snapshots: filesystem trees in parent chains, mounted as overlays;
    /// layers applied into them and diffed out of them.
    Snapshot {
        #[command(subcommand)]
        command: snapshot::Command,
    },
    /// Desired-state layers: install, cache, restore and evict layers
    /// from a desired list, downloaded from allowed origins.
    Layer {
        #[command(subcommand)]
        command: layer::Command,
    },
    /// Quotas on the store or on holders.
    Quota {
        #[command(subcommand)]
        command: retention::Quota,
    },
    /// The store's cache and ingest TTLs.
    Config {
        #[command(subcommand)]
        command: retention::Config,
    },
    /// How the store's space is used: held, cached, in ingests, per holder
    /// and against the quotas.
    Df,
    /// Set (`k=v`) or remove (`k=`) labels of a blob.
    Label {
        /// The blob's digest.
        digest: String,
        /// Label changes.
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// List ingests in progress, optionally only refs matching a regex.
    Active {
        /// A regular expression refs must match.
        regex: Option<String>,
    },
    /// Check the store: re-hash every blob, check labels, ingests and the
    /// OCI layout files. Prints a line per problem; exits 1 if there were
    /// any (repaired or not).
    Fsck {
        /// Fix what can be fixed safely: move damaged blobs and labels to
        /// `quarantine/`, remove leftovers of interrupted writes.
        #[arg(long)]
        repair: bool,
    },
    /// Remove an ingest in progress and its data.
    Abort {
        /// The ingest's ref.
        reference: String,
    },
    /// Artifacts: revisioned files owned by objects, with retention.
    Artifact {
        #[command(subcommand)]
        command: artifact::Command,
    },
    /// Serve artifacts over HTTP (GET and HEAD of
    /// /<kind>/<namespace>/<name>/<file>, with Range and ETag) and an OCI
    /// registry under /v2/ (push and pull with skopeo, oras, ctr, docker)
    /// until SIGINT or SIGTERM.
    // A flag given twice counts once, the last: `--config` puts the
    // file's settings before the command line's (see `config_file`).
    #[command(args_override_self = true)]
    Serve(Box<serve::Args>),
    /// Write a WebAssembly component kist is built with, to run or compose
    /// in hosts of your own (see `kist::components`).
    Component {
        /// `store` needs kist's capabilities (hasher, locks, copier, ...)
        /// from its host; `capabilities` provides them in pure wasm;
        /// `portable` is the two composed, importing only standard WASI 0.2.
        #[arg(value_enum, default_value = "portable")]
        which: Which,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// The components `kist component` writes.
#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Store,
    Capabilities,
    Portable,
}

/// Exit status of a command line that does not parse (sysexits'
/// `EX_USAGE`); 2 means "not found".
const USAGE: u8 = 64;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("KIST_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let serve = Cli::command()
        .find_subcommand("serve")
        .expect("serve is a subcommand")
        .clone();
    let argv = match config_file::expand(std::env::args_os().collect(), &serve) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("kist: {e:#}");
            return ExitCode::from(USAGE);
        }
    };
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { USAGE } else { 0 });
        }
    };
    let out = Output::new(cli.format);
    // The only command that needs no store.
    let result = if let Command::Component { which, output } = cli.command {
        commands::component(which, output.as_deref())
    } else {
        let holder = cli.holder;
        store_location(cli.store, cli.node_dir)
            .and_then(|(dir, bucket)| {
                open_store(
                    &dir,
                    bucket,
                    cli.command.creates_store(),
                    cli.command.fetch_policy()?,
                )
            })
            .map(|store| match &holder {
                Some(h) => store.as_holder(h),
                None => store,
            })
            .and_then(|store| {
                commands::run(&store, cli.command, &out)?;
                // A command that moved tags (a delete, a collection) leaves
                // them journaled: write them into index.json for tools that
                // read the layout themselves.
                if let Err(e) = store.registry().sync_index() {
                    eprintln!("kist: warning: writing tags into index.json: {e}");
                }
                Ok(())
            })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kist: {e:#}");
            match e.downcast_ref::<kist::Error>() {
                Some(kist::Error::NotFound) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

impl Command {
    /// Whether the command stores something (content, a lease, a setting),
    /// so that a store is created where there is none. The others only
    /// read or change what is there: on a mistyped `--store` they fail and
    /// create nothing.
    fn creates_store(&self) -> bool {
        matches!(
            self,
            Command::Ingest(_)
                | Command::Pull(_)
                | Command::Serve(_)
                | Command::Snapshot {
                    command: snapshot::Command::Prepare { .. } | snapshot::Command::View { .. }
                }
                | Command::Artifact {
                    command: artifact::Command::Archive { .. }
                }
                | Command::Layer {
                    command: layer::Command::Apply { .. }
                }
                | Command::Lease {
                    command: lease::Command::Create { .. }
                }
                | Command::Quota {
                    command: retention::Quota::Set { .. }
                }
                | Command::Config {
                    command: retention::Config::Set { .. }
                }
        )
    }

    /// Where the store may download from: only `layer apply` reaches the
    /// network, and only its `--allow-origin`s.
    fn fetch_policy(&self) -> anyhow::Result<kist::FetchPolicy> {
        match self {
            Command::Layer { command } => command.fetch_policy(),
            _ => Ok(kist::FetchPolicy::default()),
        }
    }
}

/// A duration as every kist flag takes one: `30d`, `90m`, `1h30m`, or a
/// bare number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(seconds) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 30d, 90m or seconds)"))
}

/// Parses `key=value`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// Opens the store at `dir` (on `bucket` if given), creating it only if
/// `create` or on a bucket (the node's directory is its own cache).
fn open_store(
    dir: &std::path::Path,
    bucket: Option<kist::ObjectBucket>,
    create: bool,
    fetch: kist::FetchPolicy,
) -> anyhow::Result<kist::Store> {
    let builder = kist::Store::builder(dir)
        .create(create || bucket.is_some())
        .fetch_policy(fetch);
    let opened = match bucket {
        Some(bucket) => builder.object_bucket(bucket),
        None => builder,
    }
    .open();
    match opened {
        Err(kist::Error::NotFound) => Err(anyhow::Error::new(kist::Error::NotFound)
            .context(format!("no kist store at {}", dir.display()))),
        other => Ok(other?),
    }
}

/// The store's directory, and its bucket for `--store s3://…` (the
/// directory is then the node's: `--node-dir`, else under the cache
/// home). A plain `--store` is the directory; none is
/// `$XDG_DATA_HOME/kist`, else `~/.local/share/kist`.
fn store_location(
    flag: Option<PathBuf>,
    node_dir: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, Option<kist::ObjectBucket>)> {
    let url = flag
        .as_deref()
        .and_then(|f| f.to_str())
        .filter(|f| f.starts_with("s3://"));
    if let Some(url) = url {
        let bucket = kist::ObjectBucket::from_env(url)?;
        let dir = match node_dir {
            Some(dir) => dir,
            None => home("XDG_CACHE_HOME", ".cache")?.join(url.replacen("s3://", "kist/s3/", 1)),
        };
        return Ok((dir, Some(bucket)));
    }
    if node_dir.is_some() {
        anyhow::bail!("--node-dir goes with --store s3://BUCKET/PREFIX");
    }
    match flag {
        Some(dir) => Ok((dir, None)),
        None => Ok((home("XDG_DATA_HOME", ".local/share")?.join("kist"), None)),
    }
}

/// `$variable` if set, else `~/fallback`.
fn home(variable: &str, fallback: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(variable).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow::anyhow!("no --store, ${variable} or $HOME"))?;
    Ok(PathBuf::from(home).join(fallback))
}
