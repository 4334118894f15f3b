//! `kist layer ...`: desired-state layers (AosEdge's layer manager).

use std::path::{Path, PathBuf};

use std::io::IsTerminal;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use kist::{LayerAction, LayerDesc, LayerError, LayerInfo, LayerResult, LayerState, Store};
use serde_json::{Map, Value, json};

use crate::Format;
use crate::output::{Output, print_json, table, time};

#[derive(Subcommand)]
pub enum Command {
    /// Bring the store to the layers listed in DESIRED (a JSON array of
    /// objects with `digest`, `size`, `urls` and optional `id`,
    /// `version`, `os_version`, `annotations`): install what is missing,
    /// cache what is no longer listed, restore cached layers listed again.
    /// Prints one result per layer; exits non-zero if any failed.
    Apply {
        /// The desired list (`-` for stdin).
        desired: PathBuf,
        /// An origin downloads may come from, `http[s]://host[:port]`
        /// (repeatable). Nothing else is reached.
        #[arg(long = "allow-origin")]
        allow_origins: Vec<String>,
        /// A directory `file://` URLs may name (repeatable, read-only).
        #[arg(long)]
        lend: Vec<PathBuf>,
        /// How long a layer that becomes cached now stays cached: `30d`,
        /// `12h`, or seconds (default 30 days).
        #[arg(long, value_parser = crate::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Refuse layers that unpack to more than this many bytes.
        #[arg(long)]
        max_unpacked: Option<u64>,
        /// How long to wait for another `kist layer apply` on this store:
        /// `10m`, or seconds.
        #[arg(long, default_value = "600", value_parser = crate::parse_duration)]
        wait: std::time::Duration,
    },
    /// List stored layers (filters over `digest`, `id`, `version`,
    /// `os-version`, `state`, `annotations.<key>`).
    Ls { filters: Vec<String> },
    /// Describe a stored layer.
    Info { digest: String },
}

impl Command {
    /// The origins the store may download from for this command.
    pub fn fetch_policy(&self) -> anyhow::Result<kist::FetchPolicy> {
        let mut policy = kist::FetchPolicy::default();
        if let Command::Apply { allow_origins, .. } = self {
            for origin in allow_origins {
                policy = policy.allow(origin).map_err(anyhow::Error::msg)?;
            }
        }
        Ok(policy)
    }
}

/// One entry of a desired list, as users write it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DesiredEntry {
    digest: String,
    size: u64,
    urls: Vec<String>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    os_version: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

fn read_desired(path: &Path) -> anyhow::Result<Vec<LayerDesc>> {
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    let entries: Vec<DesiredEntry> = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a desired-layers list", path.display()))?;
    Ok(entries
        .into_iter()
        .map(|e| LayerDesc {
            digest: e.digest,
            size: e.size,
            urls: e.urls,
            id: e.id,
            version: e.version,
            os_version: e.os_version,
            annotations: e.annotations.into_iter().collect(),
        })
        .collect())
}

/// Runs a layer command.
pub fn run(store: &Store, command: Command, out: &Output) -> anyhow::Result<()> {
    let layers = store.layers();
    let format = out.format();
    match command {
        Command::Apply {
            desired,
            lend,
            ttl,
            max_unpacked,
            wait,
            ..
        } => {
            let desired = read_desired(&desired)?;
            let options = kist::LayerOptions {
                cache_ttl_seconds: ttl.map(|t| t.as_secs()),
                max_unpacked,
                wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            };
            let lend: Vec<&Path> = lend.iter().map(PathBuf::as_path).collect();
            let bar = progress_bar();
            let results = layers.process_desired(&desired, &options, &lend, |p| {
                bar.set_length(p.total.unwrap_or(0));
                bar.set_position(p.done);
                bar.set_message(format!("{} {}", p.phase, short(&p.digest)));
            })?;
            bar.finish_and_clear();
            show_results(&results, format)?;
            let failed = results.iter().filter(|r| r.outcome.is_err()).count();
            if failed > 0 {
                anyhow::bail!("{failed} of the layers failed");
            }
            Ok(())
        }
        Command::Ls { filters } => {
            let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
            show_infos(&layers.list(&filters)?, format)
        }
        Command::Info { digest } => {
            let info = crate::commands::named(layers.info(&digest), &format!("layer {digest}"))?;
            show_infos(&[info], format)
        }
    }
}

/// A bar on stderr when it is a terminal (phase, layer, bytes), else a
/// hidden one.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:32} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}",
        )
        .expect("valid template"),
    );
    bar
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

fn action(a: LayerAction) -> &'static str {
    match a {
        LayerAction::Installed => "installed",
        LayerAction::Restored => "restored",
        LayerAction::Unchanged => "unchanged",
        LayerAction::Cached => "cached",
        LayerAction::Removed => "removed",
    }
}

/// An error's kind and message, for a table or JSON.
fn failure(e: &LayerError) -> (&'static str, String) {
    match e {
        LayerError::Invalid(m) => ("invalid", m.clone()),
        LayerError::Download(m) => ("download", m.clone()),
        LayerError::Integrity(m) => ("integrity", m.clone()),
        LayerError::Store(e) => ("store", kist::Error::from(e.clone()).to_string()),
    }
}

fn show_results(results: &[LayerResult], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&Value::Array(
            results
                .iter()
                .map(|r| match &r.outcome {
                    Ok(a) => json!({ "digest": r.digest, "action": action(*a) }),
                    Err(e) => {
                        let (kind, message) = failure(e);
                        json!({ "digest": r.digest, "error": kind, "message": message })
                    }
                })
                .collect(),
        )),
        Format::Table => table(
            &["DIGEST", "RESULT", "DETAIL"],
            results.iter().map(|r| match &r.outcome {
                Ok(a) => vec![r.digest.clone(), action(*a).into(), String::new()],
                Err(e) => {
                    let (kind, message) = failure(e);
                    vec![r.digest.clone(), format!("failed: {kind}"), message]
                }
            }),
        ),
    }
}

fn state(s: LayerState) -> &'static str {
    match s {
        LayerState::Installed => "installed",
        LayerState::Cached => "cached",
    }
}

fn info_json(i: &LayerInfo) -> Value {
    let d = &i.desc;
    let annotations: Map<String, Value> = d
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "digest": d.digest, "size": d.size, "urls": d.urls, "id": d.id,
        "version": d.version, "os_version": d.os_version, "annotations": annotations,
        "state": state(i.state), "since": time(i.since), "expires": i.expires.map(time),
        "path": i.path, "unpacked_size": i.size, "diff_id": i.diff_id,
    })
}

fn show_infos(infos: &[LayerInfo], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&Value::Array(infos.iter().map(info_json).collect())),
        Format::Table => table(
            &[
                "DIGEST", "ID", "VERSION", "STATE", "SINCE", "EXPIRES", "SIZE", "DIFF ID", "PATH",
            ],
            infos.iter().map(|i| {
                vec![
                    i.desc.digest.clone(),
                    i.desc.id.clone(),
                    i.desc.version.clone(),
                    state(i.state).into(),
                    time(i.since),
                    i.expires.map(time).unwrap_or_default(),
                    i.size.to_string(),
                    i.diff_id.clone(),
                    i.path.clone(),
                ]
            }),
        ),
    }
}
