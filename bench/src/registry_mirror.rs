//! The pull-through mirror against pulling from its upstream directly:
//! docker-registry 2.8 (distribution, filesystem storage) on loopback as
//! the upstream, one layer pulled, interleaved: straight from
//! docker-registry; cold through `kist serve --mirror` (a new, empty
//! mirror store each time: everything is fetched, verified and stored
//! while it streams); warm through the mirror (all in its store); and
//! from a plain `kist serve` holding the layer (the local pull a warm
//! mirror pull should match).

use std::path::Path;

use crate::measure::{Contender, interleave};
use crate::registry::{pull_with, push, random_file};
use crate::registry_peers::{self, Running};
use crate::report::{Report, Unit};
use crate::tools::Tools;

/// A timed pull of `digest` from `r`.
fn timed_pull(r: &Running, digest: &str) -> anyhow::Result<std::time::Duration> {
    let agent = ureq::agent();
    crate::measure::time(|| pull_with(&agent, r, "bench/mirror", digest, None).map(drop))
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
    std::fs::remove_file(&file)?;
    let mirror_of =
        |store: &Path| registry_peers::kist_with(&tools.kist, store, &["--mirror", &upstream.base]);
    let warm = mirror_of(&dir.join("warm"))?;
    timed_pull(&warm, &digest)?; // fills it

    let cold_dir = dir.join("cold");
    let contenders = vec![
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
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!(
            "Registry pull of a {} MiB layer: through the mirror, cold and warm, against its upstream and a local kist serve",
            size >> 20
        ),
        Unit::Bytes(size),
        &samples,
    );
    Ok(())
}
