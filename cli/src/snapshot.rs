//! `kist snapshot ...`: snapshots with `ctr snapshots`' argument order, and
//! layers applied into and diffed out of them.

use std::path::PathBuf;

use clap::Subcommand;
use kist::mount::Mount;
use kist::{Layer, SnapshotInfo, SnapshotKind, Store};
use serde_json::{Value, json};

use crate::Format;
use crate::output::{Output, label_map, lines, print_json, table, time};

#[derive(Subcommand)]
pub enum Command {
    /// Make an active (writable) snapshot over a committed parent; print
    /// its mounts.
    Prepare {
        key: String,
        parent: Option<String>,
        /// Labels, `key=value` (repeatable).
        #[arg(long = "label", value_parser = crate::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Make a read-only view of a committed snapshot; print its mounts.
    View {
        key: String,
        parent: Option<String>,
        /// Labels, `key=value` (repeatable).
        #[arg(long = "label", value_parser = crate::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Commit the active snapshot KEY as NAME.
    Commit {
        name: String,
        key: String,
        /// Labels, `key=value` (repeatable).
        #[arg(long = "label", value_parser = crate::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Print the mounts of an active snapshot or view.
    Mounts { key: String },
    /// Remove snapshots (children first).
    Rm {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Describe a snapshot.
    Info { key: String },
    /// List snapshots (filters over `name`, `parent`, `kind`,
    /// `labels.<key>`).
    Ls { filters: Vec<String> },
    /// Space a snapshot's own tree takes (all snapshots if none given).
    Usage { key: Option<String> },
    /// Set (`key=value`) or remove (`key=`) labels of a snapshot.
    Label {
        key: String,
        #[arg(required = true, value_parser = crate::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Remove trees no snapshot owns (left by crashes).
    Cleanup,
    /// Unpack a stored layer blob into an empty active snapshot; print the
    /// diff id.
    Apply {
        key: String,
        digest: String,
        /// The layer's media type; detected from its bytes if not given.
        #[arg(long, default_value = "")]
        media_type: String,
        /// Refuse layers that unpack to more than this many bytes (file
        /// data plus 512 per entry).
        #[arg(long, default_value_t = kist::DEFAULT_MAX_UNPACKED)]
        max_size: u64,
    },
    /// Store the changes of a snapshot against its parent as a tar+gzip
    /// layer; print its digest, size and diff id.
    Diff { key: String },
    /// Mount an active snapshot or view on TARGET (as root).
    Mount { key: String, target: PathBuf },
    /// Unmount TARGET.
    Umount { target: PathBuf },
}

fn pairs(labels: &[(String, String)]) -> Vec<(&str, &str)> {
    labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Runs a snapshot command.
pub fn run(store: &Store, command: Command, out: &Output) -> anyhow::Result<()> {
    let format = out.format();
    let snapshots = store.snapshots();
    let show = Show(format);
    match command {
        Command::Prepare {
            key,
            parent,
            labels,
        } => show.mounts(&snapshots.prepare(&key, parent.as_deref(), &pairs(&labels))?),
        Command::View {
            key,
            parent,
            labels,
        } => show.mounts(&snapshots.view(&key, parent.as_deref(), &pairs(&labels))?),
        Command::Commit { name, key, labels } => {
            snapshots.commit(&name, &key, &pairs(&labels))?;
            out.done(&name)
        }
        Command::Mounts { key } => show.mounts(&snapshots.mounts(&key)?),
        Command::Rm { keys } => {
            for key in &keys {
                crate::commands::named(snapshots.remove(key), &format!("snapshot {key:?}"))?;
            }
            out.done_all(&keys.iter().map(String::as_str).collect::<Vec<_>>())
        }
        Command::Info { key } => {
            let info = crate::commands::named(snapshots.stat(&key), &format!("snapshot {key:?}"))?;
            show.infos(&[info])
        }
        Command::Ls { filters } => {
            show.infos(&snapshots.walk(&filters.iter().map(String::as_str).collect::<Vec<_>>())?)
        }
        Command::Usage { key } => {
            let keys = match key {
                Some(k) => vec![k],
                None => snapshots.walk(&[])?.into_iter().map(|i| i.name).collect(),
            };
            let usages = keys
                .into_iter()
                .map(|k| snapshots.usage(&k).map(|u| (k, u)))
                .collect::<kist::Result<Vec<_>>>()?;
            show.usages(&usages)
        }
        Command::Label { key, labels } => {
            let mut info =
                crate::commands::named(snapshots.stat(&key), &format!("snapshot {key:?}"))?;
            let paths: Vec<String> = labels.iter().map(|(k, _)| format!("labels.{k}")).collect();
            info.labels = labels
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(key, value)| kist::Label { key, value })
                .collect();
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            show.infos(&[snapshots.update(&info, &paths)?])
        }
        Command::Cleanup => {
            let removed = snapshots.cleanup()?;
            match format {
                Format::Json => print_json(&json!({ "removed": removed })),
                Format::Table => lines([format!("removed {removed} trees")]),
            }
        }
        Command::Apply {
            key,
            digest,
            media_type,
            max_size,
        } => {
            let diff_id = snapshots.apply_with_limit(&key, &digest, &media_type, max_size)?;
            match format {
                Format::Json => print_json(&json!({ "diff_id": diff_id })),
                Format::Table => lines([diff_id]),
            }
        }
        Command::Diff { key } => show.layer(&snapshots.diff(&key)?),
        Command::Mount { key, target } => {
            snapshots.mount(&key, &target)?;
            out.done(&target.display().to_string())
        }
        Command::Umount { target } => {
            snapshots.unmount(&target)?;
            out.done(&target.display().to_string())
        }
    }
}

/// How snapshot results print.
struct Show(Format);

fn kind(k: SnapshotKind) -> &'static str {
    match k {
        SnapshotKind::View => "view",
        SnapshotKind::Active => "active",
        SnapshotKind::Committed => "committed",
    }
}

impl Show {
    fn mounts(&self, mounts: &[Mount]) -> anyhow::Result<()> {
        match self.0 {
            Format::Json => print_json(&Value::Array(
                mounts
                    .iter()
                    .map(|m| json!({ "type": m.type_, "source": m.source, "options": m.options }))
                    .collect(),
            )),
            // `mount -t TYPE SOURCE TARGET -o OPTIONS`, as `ctr snapshots mounts` prints.
            Format::Table => lines(mounts.iter().map(|m| {
                format!(
                    "mount -t {} {} <target> -o {}",
                    m.type_,
                    m.source,
                    m.options.join(",")
                )
            })),
        }
    }

    fn infos(&self, infos: &[SnapshotInfo]) -> anyhow::Result<()> {
        match self.0 {
            Format::Json => print_json(&Value::Array(
                infos
                    .iter()
                    .map(|i| {
                        json!({
                            "name": i.name,
                            "parent": i.parent,
                            "kind": kind(i.kind),
                            "labels": label_map(&i.labels),
                            "holders": i.holders,
                            "created_at": time(i.created_at),
                            "updated_at": time(i.updated_at),
                        })
                    })
                    .collect(),
            )),
            Format::Table => table(
                &["KEY", "PARENT", "KIND"],
                infos.iter().map(|i| {
                    vec![
                        i.name.clone(),
                        i.parent.clone().unwrap_or_default(),
                        kind(i.kind).to_owned(),
                    ]
                }),
            ),
        }
    }

    fn usages(&self, usages: &[(String, kist::DiskUsage)]) -> anyhow::Result<()> {
        match self.0 {
            Format::Json => print_json(&Value::Array(
                usages
                    .iter()
                    .map(|(k, u)| json!({ "key": k, "size": u.size, "inodes": u.inodes }))
                    .collect(),
            )),
            Format::Table => table(
                &["KEY", "SIZE", "INODES"],
                usages
                    .iter()
                    .map(|(k, u)| vec![k.clone(), u.size.to_string(), u.inodes.to_string()]),
            ),
        }
    }

    fn layer(&self, layer: &Layer) -> anyhow::Result<()> {
        match self.0 {
            Format::Json => print_json(&json!({
                "digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id,
            })),
            Format::Table => lines([format!("{} {} {}", layer.digest, layer.size, layer.diff_id)]),
        }
    }
}
