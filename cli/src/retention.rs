//! `kist gc`, `kist quota ...`, `kist config ...` and `kist df`: what the
//! store keeps and for how long.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use kist::{Limit, Settings, Store};

use crate::output::Output;

#[derive(Subcommand)]
pub enum Quota {
    /// Limit the whole store, or (with --holder) what the holders whose
    /// names start with PREFIX hold or held last: a size (`10G`, `500M`,
    /// `1073741824`; K/M/G/T are powers of 1024) or a share of the
    /// filesystem (`40%`).
    Set {
        /// Holders whose names start with this.
        #[arg(long = "holder")]
        prefix: Option<String>,
        /// The limit.
        limit: String,
    },
    /// List the quotas with what counts against them.
    Ls,
    /// Remove a quota.
    Rm {
        /// The holder prefix of the quota [default: the store's].
        #[arg(long = "holder")]
        prefix: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum Config {
    /// Set `cache-ttl` (how long released content stays cached),
    /// `ingest-ttl` (how long an idle ingest without a lease lives),
    /// `upload-grace` (how long a registry upload's blob is kept before a
    /// manifest references it) or `untagged-grace` (how long an untagged
    /// registry manifest is kept), as a duration: `0s`, `90m`, `30d`.
    Set {
        /// `cache-ttl`, `ingest-ttl`, `upload-grace` or `untagged-grace`.
        key: String,
        /// The duration.
        #[arg(value_parser = crate::parse_duration)]
        value: Duration,
    },
    /// Show the settings.
    Ls,
}

/// `kist gc`: runs a collection, printing what it removes.
pub fn gc(store: &Store, dry_run: bool, out: &Output) -> anyhow::Result<()> {
    let removed = store
        .retention()
        .collect(dry_run)?
        .collect::<kist::Result<Vec<_>>>()?;
    out.removed(&removed, dry_run)
}

/// Runs a quota command.
pub fn quota(store: &Store, command: Quota, out: &Output) -> anyhow::Result<()> {
    let retention = store.retention();
    match command {
        Quota::Set { prefix, limit } => {
            retention.set_quota(prefix.as_deref(), parse_limit(&limit)?)?;
            out.quotas(&retention.usage()?.quotas)
        }
        Quota::Ls => out.quotas(&retention.usage()?.quotas),
        Quota::Rm { prefix } => {
            retention.remove_quota(prefix.as_deref())?;
            out.done(prefix.as_deref().unwrap_or("the store's quota"))
        }
    }
}

/// Runs a config command.
pub fn config(store: &Store, command: Config, out: &Output) -> anyhow::Result<()> {
    let retention = store.retention();
    let mut settings = retention.settings()?;
    if let Config::Set { key, value } = command {
        let names = setting_fields(&mut settings).map(|(name, _)| name);
        let Some((_, field)) = setting_fields(&mut settings)
            .into_iter()
            .find(|(name, _)| *name == key)
        else {
            anyhow::bail!("no setting {key:?}: {}", names.join(", "));
        };
        *field = value.as_secs();
        retention.set_settings(settings)?;
    }
    out.settings(&settings)
}

/// Every setting by its CLI name, in seconds.
pub fn setting_fields(s: &mut Settings) -> [(&'static str, &mut u64); 4] {
    [
        ("cache-ttl", &mut s.cache_ttl_seconds),
        ("ingest-ttl", &mut s.ingest_ttl_seconds),
        ("upload-grace", &mut s.upload_grace_seconds),
        ("untagged-grace", &mut s.untagged_grace_seconds),
    ]
}

/// `kist df`.
pub fn df(store: &Store, out: &Output) -> anyhow::Result<()> {
    out.usage(&store.retention().usage()?)
}

/// `40%`, or a size with an optional binary suffix.
fn parse_limit(text: &str) -> anyhow::Result<Limit> {
    if let Some(p) = text.strip_suffix('%') {
        let p: u8 = p
            .trim()
            .parse()
            .with_context(|| format!("{text:?}: a percentage"))?;
        return Ok(Limit::Percent(p));
    }
    Ok(Limit::Bytes(parse_size(text)?))
}

/// `1073741824`, `10G`, `10GiB`, `500M`, `4K`, `1T`.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?}: a size such as 10G, 500M or 1073741824"))?;
    let unit = unit.trim_end_matches('B').trim_end_matches('i');
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => anyhow::bail!("{text:?}: a size such as 10G, 500M or 1073741824"),
    };
    number
        .checked_mul(1u64 << shift)
        .with_context(|| format!("{text:?} is too large"))
}
