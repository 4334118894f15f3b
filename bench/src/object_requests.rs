//! S3 requests per image, the figure an operator's bill and the object
//! store's request rate follow: one push of a three-layer image (layers,
//! config, manifest) through kist and through docker-registry (tuned and
//! defaults), and one pull of it by tag (manifest, config, layers)
//! through a kist node that lacks it, the same node again, and
//! docker-registry. Each registry sits behind its own counting relay to
//! the same RGW; the counts are of one run (they do not vary with load).

use std::path::Path;

use serde_json::json;

use crate::objects::{OnBucket, Start};
use crate::registry::{manifest, pull, push, random_file};
use crate::report::Report;

/// Bytes of each of the three layers.
const LAYER: u64 = 24 << 20;

/// The image: its blobs' files and digests (config last) and manifest.
struct Image {
    blobs: Vec<(std::path::PathBuf, String)>,
    manifest: String,
}

/// Three random layers and a config in `dir`.
fn image(dir: &Path) -> anyhow::Result<Image> {
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    for i in 0..3 {
        let file = dir.join(format!("image-layer-{i}"));
        let digest = random_file(&file, LAYER, 2_000 + i)?;
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": LAYER,
        }));
        blobs.push((file, digest));
    }
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
        .to_string();
    let file = dir.join("image-config");
    std::fs::write(&file, &config)?;
    let digest = format!("sha256:{}", crate::native::sha256_hex(config.as_bytes()));
    let manifest = manifest(&digest, config.len(), layers);
    blobs.push((file, digest));
    Ok(Image { blobs, manifest })
}

/// S3 requests `r`'s relay carried while `work` ran.
fn requests(r: &OnBucket, work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<u64> {
    let before = r.relay.carried().1;
    work()?;
    Ok(r.relay.carried().1 - before)
}

fn push_image(r: &OnBucket, image: &Image) -> anyhow::Result<()> {
    for (file, digest) in &image.blobs {
        push(&r.registry, "bench/image", file, digest, false)?;
    }
    ureq::put(&format!("{}/v2/bench/image/manifests/v1", r.registry.base))
        .set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .send_bytes(image.manifest.as_bytes())?;
    Ok(())
}

fn pull_image(r: &OnBucket, image: &Image) -> anyhow::Result<()> {
    ureq::get(&format!("{}/v2/bench/image/manifests/v1", r.registry.base))
        .set("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()?;
    for (_, digest) in &image.blobs {
        pull(&r.registry, "bench/image", digest)?;
    }
    Ok(())
}

pub fn run(report: &mut Report, dir: &Path, registry: Start<'_>) -> anyhow::Result<()> {
    let image = image(dir)?;
    let kist = registry("image-kist", None, "image-node-a")?;
    let tuned = registry("image-dreg-tuned", Some(true), "")?;
    let defaults = registry("image-dreg-defaults", Some(false), "")?;
    let mut rows = Vec::new();
    for (name, r) in [
        ("kist serve --store s3://", &kist),
        ("docker-registry S3, tuned", &tuned),
        ("docker-registry S3, defaults", &defaults),
    ] {
        let pushed = requests(r, || push_image(r, &image))?;
        rows.push((name, pushed, requests(r, || pull_image(r, &image))?));
    }
    let cold = registry("image-kist", None, "image-node-b")?;
    let first = requests(&cold, || pull_image(&cold, &image))?;
    let again = requests(&cold, || pull_image(&cold, &image))?;
    for (file, _) in &image.blobs {
        std::fs::remove_file(file)?;
    }
    report.line(&format!(
        "\n### S3 requests per image: three {} MiB layers, a config, a manifest\n",
        LAYER >> 20
    ));
    report.line("| registry | push | pull by tag |");
    report.line("|---|---|---|");
    for (name, pushed, pulled) in rows {
        report.line(&format!("| {name} | {pushed} | {pulled} |"));
    }
    report.line(&format!(
        "| kist, another node: pull without the image / again | | {first} / {again} |"
    ));
    report.note(
        "kist's pull through the node that pushed reads tags and memberships from the \
         bucket (they decide for every node) and the blobs from its own directory.",
    );
    Ok(())
}
