//! kist's benchmark suite: every scenario runs kist (library and CLI), the
//! native limit and real peers side by side, interleaved, and reports
//! medians and ratios as a Markdown table. `bench/run.sh` sets up the
//! peers and calls this.

mod archive;
mod big;
mod containerd;
mod delta;
mod delta_casync;
mod delta_containerd;
mod delta_images;
mod delta_nydus;
mod delta_ostree;
mod layers;
mod limit;
mod link;
mod listing;
mod measure;
mod native;
mod node_disk;
mod node_net;
mod object_collection;
mod object_requests;
mod objects;
mod registry;
mod registry_mirror;
mod registry_peers;
mod registry_tokens;
mod report;
mod retention;
mod rss;
mod small;
mod snapshots;
mod static_http;
mod tools;

use std::path::PathBuf;

use clap::Parser;

use crate::report::Report;
use crate::tools::Tools;

#[derive(Parser)]
struct Args {
    /// A tiny run that only checks every scenario works.
    #[arg(long)]
    quick: bool,
    /// Repetitions per contender (default: 5, quick: 1).
    #[arg(long)]
    reps: Option<usize>,
    /// containerd's socket: adds `ctr` contenders.
    #[arg(long)]
    ctr_socket: Option<PathBuf>,
    /// The `kist` binary (default: beside this one).
    #[arg(long)]
    kist: Option<PathBuf>,
    /// Scratch directory (default: a temporary one under /var/tmp).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Write the results here as well as to stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only these scenarios (default: all).
    #[arg(long, value_enum)]
    only: Vec<Scenario>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Ingest and read of large random files.
    Big,
    /// `kist artifact archive` of a text tree against `tar czf`.
    Archive,
    /// Many 4 KiB blobs: write, then read and verify.
    Small,
    /// `kist info` / `kist ls` start-up and listing.
    Listing,
    /// Peak RSS of `kist ingest` as files grow.
    Rss,
    /// `kist gc` on a large store; `put` latency during collections.
    Retention,
    /// The OCI registry against docker-registry (distribution 2.8):
    /// pushes, pulls, skopeo copies, tag updates.
    Registry,
    /// What registry operators add: pulls through the mirror against its
    /// upstream, and with bearer tokens against anonymous ones.
    Operators,
    /// Snapshots: apply against `tar xzf`; prepare/commit/remove cycles
    /// against containerd's overlayfs snapshotter.
    Snapshots,
    /// Desired-state layers: installs from a loopback HTTP server against
    /// `curl | tee >(sha256sum) | tar xz`; restores of cached layers.
    Layers,
    /// containerd on kist (proxy plugins) against containerd's built-in
    /// content store and overlayfs: ingest, import, get. Needs root.
    Containerd,
    /// Object storage: pushes to `kist serve --store s3://` against
    /// docker-registry's S3 driver on one Ceph RGW, with the bytes each
    /// sends and Ceph writes.
    Objects,
    /// Delta pulls: `kist pull --from v1` of v2 against a full pull, on
    /// loopback and a 20 Mbit/s, 100 ms link (the Debian python bump,
    /// built with debootstrap once). Needs root.
    Delta,
}

/// Whether this runs as root (the owner of `/proc/self`).
fn running_as_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc")) == 0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kist = match args.kist {
        Some(k) => k,
        None => std::env::current_exe()?.with_file_name("kist"),
    };
    anyhow::ensure!(
        kist.is_file(),
        "no kist binary at {} (build it with cargo build --release)",
        kist.display()
    );
    let tools = Tools {
        kist,
        ctr_socket: args.ctr_socket,
    };
    let scratch = match args.work {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir_in("/var/tmp")?,
    };
    let work = scratch.path();
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 5 });
    let mut report = Report::default();
    let wanted = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    let quick = args.quick;
    if wanted(Scenario::Big) {
        for size in if quick {
            vec![4 << 20]
        } else {
            vec![64 << 20, 1 << 30]
        } {
            // 1 GiB runs are long: three repetitions are enough for a median.
            let reps = if size >= 1 << 30 { reps.min(3) } else { reps };
            big::run(&mut report, &tools, work, size, reps)?;
        }
    }
    if wanted(Scenario::Archive) {
        let size = if quick { 8 << 20 } else { 256 << 20 };
        archive::run(&mut report, &tools, work, size, reps.min(3))?;
    }
    if wanted(Scenario::Small) {
        small::run(
            &mut report,
            work,
            if quick { 200 } else { 10_000 },
            reps.min(3),
        )?;
    }
    if wanted(Scenario::Listing) {
        let counts = if quick {
            vec![100]
        } else {
            vec![1_000, 10_000, 100_000]
        };
        listing::run(&mut report, &tools, work, &counts, reps)?;
    }
    if wanted(Scenario::Rss) {
        let sizes = if quick {
            vec![16 << 20]
        } else {
            vec![256 << 20, 1 << 30, 4 << 30]
        };
        rss::run(&mut report, &tools, work, &sizes)?;
    }
    if wanted(Scenario::Retention) {
        let (total, released) = if quick {
            (1_000, 100)
        } else {
            (100_000, 10_000)
        };
        retention::run(&mut report, &tools, work, total, released, reps.min(3))?;
    }
    if wanted(Scenario::Registry) {
        let (size, tags) = if quick {
            (8 << 20, 100)
        } else {
            (1 << 30, 10_000)
        };
        registry::run(&mut report, &tools, work, size, reps.min(3), tags)?;
    }
    if wanted(Scenario::Objects) {
        let (size, collected) = if quick {
            (24 << 20, 2_000)
        } else {
            (1 << 30, 100_000)
        };
        objects::run(&mut report, &tools, work, size, reps.min(3), collected)?;
    }
    if wanted(Scenario::Operators) {
        let size = if quick { 8 << 20 } else { 1 << 30 };
        registry_mirror::run(&mut report, &tools, work, size, reps)?;
        registry_tokens::run(&mut report, &tools, work, size, reps)?;
    }
    if wanted(Scenario::Snapshots) {
        let (files, size, cycles, kept) = if quick {
            (200, 4 << 20, 5, 100)
        } else {
            (10_000, 256 << 20, 30, 10_000)
        };
        snapshots::run(
            &mut report,
            &tools,
            work,
            (files, size),
            (cycles, kept),
            reps.min(3),
        )?;
    }
    if wanted(Scenario::Layers) {
        let (count, size) = if quick { (2, 4 << 20) } else { (20, 50 << 20) };
        layers::run(&mut report, &tools, work, count, size, reps.min(3))?;
    }
    if wanted(Scenario::Containerd) {
        if running_as_root() {
            let size = if quick { 8 << 20 } else { 512 << 20 };
            containerd::run(&mut report, &tools, work, size, reps.min(3))?;
        } else {
            report.note(
                "containerd scenario: needs root (it starts two containerd daemons); not run.",
            );
        }
    }
    if wanted(Scenario::Delta) {
        if running_as_root() {
            delta::run(&mut report, &tools, work, quick, reps)?;
        } else {
            report.note("delta scenario: needs root (snapshots are mounted); not run.");
        }
    }
    if tools.ctr_socket.is_none() {
        report.note(
            "containerd was not running for this run: no `ctr` rows (bench/run.sh starts it).",
        );
    }
    print!("{}", report.text());
    if let Some(out) = args.out {
        std::fs::write(out, report.text())?;
    }
    Ok(())
}
