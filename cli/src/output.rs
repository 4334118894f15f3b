//! Printing results as aligned columns or JSON.

use std::io::Write;

use kist::{
    Artifact, BlobInfo, Datetime, IngestStatus, Label, Lease, Limit, Problem, ProblemKind, Quota,
    QuotaUsage, Removed, RemovedKind, Settings, SpaceUsage,
};
use serde_json::{Value, json};

use crate::Format;

/// Where and how results are printed.
pub struct Output {
    format: Format,
}

impl Output {
    pub fn new(format: Format) -> Self {
        Self { format }
    }

    /// How results print.
    pub fn format(&self) -> Format {
        self.format
    }

    /// One blob's description.
    pub fn info(&self, info: &BlobInfo) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return print_json(&info_json(info));
        }
        let rows = [
            ("digest", info.digest.clone()),
            ("size", info.size.to_string()),
            ("created", time(info.created_at)),
            ("updated", time(info.updated_at)),
            ("holders", info.holders.join(",")),
            ("graces", graces(info)),
            ("labels", labels(info)),
        ];
        table(
            &[],
            rows.iter().map(|(k, v)| vec![k.to_string(), v.clone()]),
        )
    }

    /// A blob listing.
    pub fn list(&self, infos: &[BlobInfo], quiet: bool) -> anyhow::Result<()> {
        match (self.format, quiet) {
            (Format::Json, true) => {
                print_json(&json!(infos.iter().map(|i| &i.digest).collect::<Vec<_>>()))
            }
            (Format::Json, false) => {
                print_json(&Value::Array(infos.iter().map(info_json).collect()))
            }
            (Format::Table, true) => lines(infos.iter().map(|i| i.digest.clone())),
            (Format::Table, false) => table(
                &["DIGEST", "SIZE", "CREATED", "HOLDERS", "LABELS"],
                infos.iter().map(|i| {
                    vec![
                        i.digest.clone(),
                        i.size.to_string(),
                        time(i.created_at),
                        i.holders.join(","),
                        labels(i),
                    ]
                }),
            ),
        }
    }

    /// Ingests in progress.
    pub fn statuses(&self, statuses: &[IngestStatus]) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return print_json(&Value::Array(statuses.iter().map(status_json).collect()));
        }
        table(
            &["REF", "OFFSET", "TOTAL", "STARTED", "UPDATED"],
            statuses.iter().map(|s| {
                vec![
                    s.ref_.clone(),
                    s.offset.to_string(),
                    s.total.map_or("-".into(), |t| t.to_string()),
                    time(s.started_at),
                    time(s.updated_at),
                ]
            }),
        )
    }

    /// A digest produced by a command (ingest).
    pub fn digest(&self, digest: &str, size: u64) -> anyhow::Result<()> {
        match self.format {
            Format::Json => print_json(&json!({ "digest": digest, "size": size })),
            Format::Table => lines([digest.to_owned()]),
        }
    }

    /// A blob copied to a file: silent as a table (like `cp`).
    pub fn written(&self, digest: &str, size: u64, path: &std::path::Path) -> anyhow::Result<()> {
        match self.format {
            Format::Json => print_json(&json!({ "digest": digest, "size": size, "path": path })),
            Format::Table => Ok(()),
        }
    }

    /// One problem `fsck` found, printed as soon as it is found (tables).
    pub fn problem(&self, p: &Problem) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return Ok(());
        }
        let repaired = p
            .repaired
            .as_ref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        lines([format!(
            "{} {}: {}{repaired}",
            kind(p.kind),
            p.path,
            p.detail
        )])
    }

    /// All problems `fsck` found (JSON, once the check is over).
    pub fn problems(&self, problems: &[Problem]) -> anyhow::Result<()> {
        if self.format == Format::Table {
            return Ok(());
        }
        print_json(&Value::Array(
            problems
                .iter()
                .map(|p| json!({"kind": kind(p.kind), "path": p.path, "detail": p.detail, "repaired": p.repaired}))
                .collect(),
        ))
    }

    /// Artifacts, with their URLs on `hostname`.
    pub fn artifacts(&self, artifacts: &[Artifact], hostname: &str) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return print_json(&Value::Array(
                artifacts
                    .iter()
                    .map(|a| {
                        json!({
                            "path": a.path,
                            "url": a.url(hostname),
                            "revision": a.revision,
                            "digest": a.digest,
                            "size": a.size,
                            "last_update": time(a.last_update),
                            "metadata": label_map(&a.metadata),
                            "object": {
                                "kind": a.object.kind,
                                "namespace": a.object.namespace,
                                "name": a.object.name,
                                "uid": a.object.uid,
                            },
                        })
                    })
                    .collect(),
            ));
        }
        table(
            &["URL", "REVISION", "SIZE", "UPDATED", "DIGEST"],
            artifacts.iter().map(|a| {
                vec![
                    a.url(hostname),
                    a.revision.clone(),
                    a.size.to_string(),
                    time(a.last_update),
                    a.digest.clone(),
                ]
            }),
        )
    }

    /// A thing a command removed or finished (abort, extract).
    pub fn done(&self, what: &str) -> anyhow::Result<()> {
        match self.format {
            Format::Json => print_json(&json!({ "done": what })),
            Format::Table => lines([what.to_owned()]),
        }
    }

    /// Things a command removed or finished (rm, verify): a line each, or
    /// one JSON array.
    pub fn done_all(&self, what: &[&str]) -> anyhow::Result<()> {
        match self.format {
            Format::Json => print_json(&json!(
                what.iter()
                    .map(|w| json!({ "done": w }))
                    .collect::<Vec<_>>()
            )),
            Format::Table => lines(what.iter().map(|w| w.to_string())),
        }
    }
}

fn info_json(i: &BlobInfo) -> Value {
    json!({
        "digest": i.digest,
        "size": i.size,
        "created_at": time(i.created_at),
        "updated_at": time(i.updated_at),
        "holders": i.holders,
        "graces": i.graces.iter().map(|(h, t)| json!({"holder": h, "until": time(*t)})).collect::<Vec<_>>(),
        "labels": label_map(&i.labels),
    })
}

pub(crate) fn label_map(labels: &[Label]) -> serde_json::Map<String, Value> {
    labels
        .iter()
        .map(|l| (l.key.clone(), Value::from(l.value.clone())))
        .collect()
}

fn status_json(s: &IngestStatus) -> Value {
    json!({
        "ref": s.ref_,
        "offset": s.offset,
        "total": s.total,
        "expected": s.expected,
        "started_at": time(s.started_at),
        "updated_at": time(s.updated_at),
    })
}

impl Output {
    /// Leases; only their ids when `ids_only` (what `lease create` prints).
    pub fn leases(&self, leases: &[Lease], ids_only: bool) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return print_json(&Value::Array(
                leases
                    .iter()
                    .map(|l| {
                        json!({
                            "id": l.id,
                            "labels": label_map(&l.labels),
                            "created_at": time(l.created_at),
                            "expires_at": l.expires_at.map(time),
                            "flat": l.flat,
                        })
                    })
                    .collect(),
            ));
        }
        if ids_only {
            return lines(leases.iter().map(|l| l.id.clone()));
        }
        table(
            &["ID", "CREATED", "EXPIRES", "LABELS"],
            leases.iter().map(|l| {
                vec![
                    l.id.clone(),
                    time(l.created_at),
                    l.expires_at.map_or("never".into(), time),
                    l.labels
                        .iter()
                        .map(|x| format!("{}={}", x.key, x.value))
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            }),
        )
    }

    /// What a collection removed (or would, in a dry run), and in all.
    pub fn removed(&self, removed: &[Removed], dry_run: bool) -> anyhow::Result<()> {
        let freed: u64 = removed.iter().map(|r| r.bytes).sum();
        let kind = |k: RemovedKind| match k {
            RemovedKind::Blob => "blob",
            RemovedKind::Ingest => "ingest",
            RemovedKind::Lease => "lease",
            RemovedKind::Snapshot => "snapshot",
        };
        if self.format == Format::Json {
            return print_json(&json!({
                "dry_run": dry_run,
                "removed": removed
                    .iter()
                    .map(|r| json!({"kind": kind(r.kind), "name": r.name, "bytes": r.bytes}))
                    .collect::<Vec<_>>(),
                "bytes_freed": freed,
            }));
        }
        table(
            &["KIND", "NAME", "BYTES"],
            removed
                .iter()
                .map(|r| vec![kind(r.kind).to_owned(), r.name.clone(), r.bytes.to_string()]),
        )?;
        let (done, verb) = if dry_run {
            ("would be removed", "would free")
        } else {
            ("removed", "freed")
        };
        lines([format!("{} {done}, {verb} {freed} bytes", removed.len())])
    }

    /// Quotas with what counts against them.
    pub fn quotas(&self, quotas: &[QuotaUsage]) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return print_json(&Value::Array(quotas.iter().map(quota_json).collect()));
        }
        table(
            &["HOLDERS", "LIMIT", "LIMIT BYTES", "USED"],
            quotas.iter().map(|q| {
                vec![
                    holders_of(&q.quota),
                    limit_text(&q.quota),
                    q.limit_bytes.map_or("?".into(), |b| b.to_string()),
                    q.used.to_string(),
                ]
            }),
        )
    }

    /// The store's settings.
    pub fn settings(&self, s: &Settings) -> anyhow::Result<()> {
        let mut s = *s;
        let rows = crate::retention::setting_fields(&mut s).map(|(name, seconds)| {
            let text = humantime::format_duration(std::time::Duration::from_secs(*seconds));
            (name, text.to_string(), *seconds)
        });
        if self.format == Format::Json {
            let mut doc = serde_json::Map::new();
            for (name, text, seconds) in &rows {
                doc.insert((*name).to_owned(), json!(text));
                doc.insert(
                    format!("{}_seconds", name.replace('-', "_")),
                    json!(seconds),
                );
            }
            return print_json(&Value::Object(doc));
        }
        table(
            &["SETTING", "VALUE"],
            rows.map(|(name, text, _)| vec![name.to_owned(), text]),
        )
    }

    /// `kist df`.
    pub fn usage(&self, u: &SpaceUsage) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return print_json(&json!({
                "held": {"bytes": u.held, "blobs": u.held_blobs},
                "cached": {"bytes": u.cached, "blobs": u.cached_blobs},
                "ingests": {"bytes": u.ingests, "count": u.ingest_count},
                "holders": u.holders.iter()
                    .map(|h| json!({"holder": h.holder, "blobs": h.blobs, "bytes": h.bytes}))
                    .collect::<Vec<_>>(),
                "quotas": u.quotas.iter().map(quota_json).collect::<Vec<_>>(),
                "filesystem": u.filesystem.map(|(total, free)| json!({"total": total, "available": free})),
            }));
        }
        let mut rows = vec![
            vec!["held".into(), u.held_blobs.to_string(), u.held.to_string()],
            vec![
                "cached".into(),
                u.cached_blobs.to_string(),
                u.cached.to_string(),
            ],
            vec![
                "ingests".into(),
                u.ingest_count.to_string(),
                u.ingests.to_string(),
            ],
        ];
        rows.extend(u.holders.iter().map(|h| {
            vec![
                format!("  {}", h.holder),
                h.blobs.to_string(),
                h.bytes.to_string(),
            ]
        }));
        table(&["", "COUNT", "BYTES"], rows)?;
        if !u.quotas.is_empty() {
            lines([String::new()])?;
            self.quotas(&u.quotas)?;
        }
        if let Some((total, free)) = u.filesystem {
            lines([format!("filesystem: {total} bytes, {free} available")])?;
        }
        Ok(())
    }
}

fn holders_of(q: &Quota) -> String {
    q.holder_prefix
        .as_ref()
        .map_or("(all)".into(), |p| format!("{p}*"))
}

fn limit_text(q: &Quota) -> String {
    match q.limit {
        Limit::Bytes(b) => b.to_string(),
        Limit::Percent(p) => format!("{p}%"),
    }
}

fn quota_json(q: &QuotaUsage) -> Value {
    json!({
        "holder_prefix": q.quota.holder_prefix,
        "limit": limit_text(&q.quota),
        "limit_bytes": q.limit_bytes,
        "used": q.used,
    })
}

/// The WIT name of a problem kind.
fn kind(k: ProblemKind) -> &'static str {
    match k {
        ProblemKind::CorruptBlob => "corrupt-blob",
        ProblemKind::StrayEntry => "stray-entry",
        ProblemKind::TempFile => "temp-file",
        ProblemKind::OrphanLabels => "orphan-labels",
        ProblemKind::OrphanHolds => "orphan-holds",
        ProblemKind::DamagedLabels => "damaged-labels",
        ProblemKind::BrokenIngest => "broken-ingest",
        ProblemKind::BadLayout => "bad-layout",
        ProblemKind::StaleIngest => "stale-ingest",
        ProblemKind::OrphanSnapshot => "orphan-snapshot",
        ProblemKind::BrokenSnapshot => "broken-snapshot",
        ProblemKind::DamagedJournal => "damaged-journal",
    }
}

/// RFC 3339 in UTC, to the second; a time past the year 9999 (what the
/// format can write) shows as its last second.
pub(crate) fn time(t: Datetime) -> String {
    const LAST: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let t = Datetime {
        seconds: t.seconds.min(LAST),
        nanoseconds: t.nanoseconds,
    };
    humantime::format_rfc3339_seconds(kist::system_time(t)).to_string()
}

/// Holds that keep the blob by themselves only until a time.
fn graces(info: &BlobInfo) -> String {
    info.graces
        .iter()
        .map(|(h, until)| format!("{h} until {}", time(*until)))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(info: &BlobInfo) -> String {
    info.labels
        .iter()
        .map(|l| format!("{}={}", l.key, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut stdout = crate::stdout::stdout();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    Ok(writeln!(stdout)?)
}

pub(crate) fn lines(items: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let mut stdout = crate::stdout::stdout();
    for item in items {
        writeln!(stdout, "{item}")?;
    }
    Ok(())
}

/// `rows` in aligned columns, under `header` unless it is empty.
pub(crate) fn table(
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> anyhow::Result<()> {
    let mut tw = tabwriter::TabWriter::new(crate::stdout::stdout()).padding(2);
    if !header.is_empty() {
        writeln!(tw, "{}", header.join("\t"))?;
    }
    for row in rows {
        writeln!(tw, "{}", row.join("\t"))?;
    }
    Ok(tw.flush()?)
}
