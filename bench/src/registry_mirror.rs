//! The pull-through mirror against pulling from its upstream directly:
//! docker-registry 2.8 (distribution, filesystem storage) on loopback as
//! the upstream, one layer pulled, interleaved: straight from
//! docker-registry; cold through `kist serve --mirror` (a new, empty
//! mirror store each time: everything is fetched, verified and stored
//! while it streams); warm through the mirror (all in its store); and
//! from a plain `kist serve` holding the layer (the local pull a warm
//! mirror pull should match). A cold pull must store and hash every
//! byte before its last one is served (verified), so it is also set
//! against the physical limit of storing the layer on this machine (see
//! `limit`): on loopback, where the upstream serves from the page cache,
//! that limit, not the upstream, is what a cold pull can reach. Then
//! both again with the upstream behind a 1 Gbit/s link (`link`), as a
//! mirror's upstream is in use: there the mirror streams as it stores.

use std::path::Path;

use crate::link::Link;
use crate::measure::{Contender, interleave};
use crate::registry::{pull_with, push, random_file};
use crate::registry_peers::{self, Running};
use crate::report::{Report, Unit};
use crate::tools::Tools;

/// A link's rate: 1 Gbit/s, a datacentre's uplink.
const GBIT: u64 = 125_000_000;

/// A timed pull of `digest` from the registry at `base`.
fn timed(base: &str, digest: &str) -> anyhow::Result<std::time::Duration> {
    let agent = ureq::agent();
    crate::measure::time(|| pull_with(&agent, base, "bench/mirror", digest, None).map(drop))
}

/// A timed pull of `digest` from `r`.
fn timed_pull(r: &Running, digest: &str) -> anyhow::Result<std::time::Duration> {
    timed(&r.base, digest)
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    size: u64,
    reps: usize,
) -> anyhow::Result<()> {
    let dir = crate::tools::scratch(work, "registry-mirror")?;
    let upstream = registry_peers::distribution(&dir.join("upstream"))?;
    let local = registry_peers::kist(&tools.kist, &dir.join("local"))?;
    let file = dir.join("layer");
    let digest = random_file(&file, size, 42)?;
    push(&upstream, "bench/mirror", &file, &digest, false)?;
    push(&local, "bench/mirror", &file, &digest, false)?;
    let mirror_of =
        |store: &Path| registry_peers::kist_with(&tools.kist, store, &["--mirror", &upstream.base]);
    let warm = mirror_of(&dir.join("warm"))?;
    timed_pull(&warm, &digest)?; // fills it

    let cold_dir = dir.join("cold");
    let mut contenders = vec![
        Contender::new("docker-registry 2.8 (the upstream, direct)", |_| {
            timed_pull(&upstream, &digest)
        }),
        Contender::new("kist serve --mirror, cold", |_| {
            std::fs::remove_dir_all(&cold_dir).ok();
            let cold = mirror_of(&cold_dir)?;
            timed_pull(&cold, &digest)
        }),
        Contender::new("kist serve --mirror, warm", |_| timed_pull(&warm, &digest)),
        Contender::new("kist serve (local)", |_| timed_pull(&local, &digest)),
    ];
    contenders.extend(crate::limit::contenders(&file, &dir));
    let samples = interleave(reps, contenders)?;
    std::fs::remove_file(&file)?;
    report.section(
        &format!(
            "Registry pull of a {} MiB layer: through the mirror, cold and warm, against its upstream and a local kist serve",
            size >> 20
        ),
        Unit::Bytes(size),
        &samples,
    );
    crate::limit::report(report, &samples);

    // The same, with the upstream behind a 1 Gbit/s link.
    let link = Link::start(upstream.base.trim_start_matches("http://"), GBIT)?;
    let linked = dir.join("linked");
    let contenders = vec![
        Contender::new("docker-registry 2.8 through the link, direct", |_| {
            timed(&link.base, &digest)
        }),
        Contender::new("kist serve --mirror of it through the link, cold", |_| {
            std::fs::remove_dir_all(&linked).ok();
            let cold = registry_peers::kist_with(&tools.kist, &linked, &["--mirror", &link.base])?;
            timed_pull(&cold, &digest)
        }),
    ];
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!(
            "Registry pull of a {} MiB layer with the upstream behind a 1 Gbit/s link: direct, and cold through the mirror",
            size >> 20
        ),
        Unit::Bytes(size),
        &samples,
    );
    Ok(())
}
