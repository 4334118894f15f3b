//! `kist lease ...`: containerd-style leases.

use std::time::Duration;

use clap::Subcommand;
use kist::Store;

use crate::output::Output;

#[derive(Subcommand)]
pub enum Command {
    /// Create a lease and print its id. Write through it with
    /// `kist ingest --lease ID` (or `kist --as lease/ID ...`).
    Create {
        /// Its id [default: one made up].
        #[arg(long)]
        id: Option<String>,
        /// It expires after this long (e.g. 1h, 30m); never by default.
        #[arg(long, value_parser = crate::parse_duration)]
        expire: Option<Duration>,
        /// Labels, `key=value` (repeatable).
        #[arg(long = "label", value_parser = crate::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List live leases (filters over `id` and `labels.<key>`).
    Ls {
        /// Filters; a lease is listed if any matches.
        filters: Vec<String>,
    },
    /// Delete leases, releasing what they hold.
    Rm {
        /// Lease ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Runs a lease command.
pub fn run(store: &Store, command: Command, out: &Output) -> anyhow::Result<()> {
    let leases = store.leases();
    match command {
        Command::Create { id, expire, labels } => {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let lease = leases.create(id.as_deref(), expire, &labels)?;
            out.leases(&[lease], true)
        }
        Command::Ls { filters } => {
            let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
            out.leases(&leases.list(&filters)?, false)
        }
        Command::Rm { ids } => {
            for id in &ids {
                crate::commands::named(leases.delete(id), &format!("lease {id:?}"))?;
            }
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            out.done_all(&ids)
        }
    }
}
