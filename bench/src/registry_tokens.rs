//! What bearer tokens cost a pull: one `kist serve` that takes tokens
//! (ES256, checked on every request) and lets anonymous clients pull, the
//! same blobs pulled with and without a token, interleaved: one large
//! layer, and many small blobs over one kept-alive connection, where a
//! per-request cost would show.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::measure::{Contender, interleave, time};
use crate::registry::{pull_with, push, random_file};
use crate::registry_peers;
use crate::report::{Report, Unit};
use crate::tools::Tools;

/// Small blobs pulled per run, and their size.
const SMALL: (usize, u64) = (1000, 4096);

/// A token granting pull on `repository`, signed by `key`, valid an hour.
fn token(key: &rcgen::KeyPair, repository: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let claims = json!({
        "iss": "bench", "aud": "bench", "sub": "bench",
        "exp": now.as_secs() + 3600, "nbf": now.as_secs() - 10,
        "access": [{"type": "repository", "name": repository, "actions": ["pull"]}],
    });
    let key = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &key,
    )?)
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    size: u64,
    reps: usize,
) -> anyhow::Result<()> {
    let dir = crate::tools::scratch(work, "registry-tokens")?;
    let store = dir.join("store");
    let file = dir.join("blob");
    let large = random_file(&file, size, 7)?;
    let mut small = Vec::new();
    {
        // Pushed through an open server first: the token one only pulls.
        let open = registry_peers::kist(&tools.kist, &store)?;
        push(&open, "bench/pull", &file, &large, false)?;
        for seed in 0..SMALL.0 {
            let digest = random_file(&file, SMALL.1, 1000 + seed as u64)?;
            push(&open, "bench/pull", &file, &digest, false)?;
            small.push(digest);
        }
    }
    std::fs::remove_file(&file)?;
    let key = rcgen::KeyPair::generate()?;
    let keys = dir.join("keys.pem");
    std::fs::write(&keys, key.public_key_pem())?;
    let flags = [
        "--token-realm",
        "http://127.0.0.1:1/token",
        "--token-service",
        "bench",
        "--token-issuer",
        "bench",
        "--token-key",
        keys.to_str().expect("a UTF-8 path"),
        "--anonymous-pull",
    ];
    let server = registry_peers::kist_with(&tools.kist, &store, &flags)?;
    let bearer = format!("Bearer {}", token(&key, "bench/pull")?);
    let ways = [
        ("anonymous", None),
        ("bearer token (ES256)", Some(bearer.as_str())),
    ];

    let contenders = ways
        .iter()
        .map(|&(name, authorization)| {
            let (server, large) = (&server, &large);
            Contender::new(name, move |_| {
                let agent = ureq::agent();
                time(|| {
                    pull_with(&agent, &server.base, "bench/pull", large, authorization).map(drop)
                })
            })
        })
        .collect();
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!(
            "Registry pull of a {} MiB layer, anonymous and with a bearer token",
            size >> 20
        ),
        Unit::Bytes(size),
        &samples,
    );

    let contenders = ways
        .iter()
        .map(|&(name, authorization)| {
            let (server, small) = (&server, &small);
            Contender::new(name, move |_| {
                let agent = ureq::agent();
                time(|| {
                    small.iter().try_for_each(|d| {
                        pull_with(&agent, &server.base, "bench/pull", d, authorization).map(drop)
                    })
                })
            })
        })
        .collect();
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!(
            "Registry pulls of {} blobs of {} KiB on one connection, anonymous and with a bearer token",
            SMALL.0,
            SMALL.1 >> 10
        ),
        Unit::Ops(SMALL.0 as u64),
        &samples,
    );
    Ok(())
}
