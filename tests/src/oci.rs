//! OCI images made at test time (gzip tar layers, a config, a manifest),
//! pushed over HTTP or written as an OCI image layout for skopeo.

use std::path::Path;

use serde_json::json;

use crate::sha256;

/// The manifest media type the images use.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A blob of an image: its bytes, digest and media type.
pub struct Blob {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// Its media type in the manifest.
    pub media_type: &'static str,
}

impl Blob {
    fn new(bytes: Vec<u8>, media_type: &'static str) -> Self {
        Self {
            digest: sha256(&bytes),
            bytes,
            media_type,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A layer's diff id: the digest of its uncompressed tar.
fn diff_id(layer: &Blob) -> String {
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&layer.bytes[..]),
        &mut tar,
    )
    .unwrap();
    sha256(&tar)
}

/// An image: layers, config and manifest.
pub struct Image {
    /// The layers (tar+gzip), base first.
    pub layers: Vec<Blob>,
    /// The config.
    pub config: Blob,
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// The manifest's digest.
    pub digest: String,
}

impl Image {
    /// An image whose layers are `layers` (each a tar+gzip of one file
    /// with those bytes); `subject`, if any, goes in the manifest.
    pub fn new(layers: &[Vec<u8>], subject: Option<(&str, usize)>) -> Self {
        let layers: Vec<Blob> = layers
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let name = format!("file{i}");
                let tgz = crate::tar_gz(&[crate::Entry::File(&name, data)]);
                Blob::new(tgz, "application/vnd.oci.image.layer.v1.tar+gzip")
            })
            .collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(diff_id).collect::<Vec<_>>()},
            "config": {},
        });
        let config = Blob::new(
            config.to_string().into_bytes(),
            "application/vnd.oci.image.config.v1+json",
        );
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        if let Some((digest, size)) = subject {
            manifest["subject"] = json!({"mediaType": MANIFEST, "digest": digest, "size": size});
            manifest["artifactType"] = json!("application/vnd.example.signature");
        }
        let manifest = manifest.to_string().into_bytes();
        Self {
            digest: sha256(&manifest),
            layers,
            config,
            manifest,
        }
    }

    /// Every blob: config, then layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// Writes the image as an OCI image layout at `dir`, tagged `tag`.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let write = |digest: &str, bytes: &[u8]| {
            std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        };
        for b in self.blobs() {
            write(&b.digest, &b.bytes);
        }
        write(&self.digest, &self.manifest);
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST,
                "digest": self.digest,
                "size": self.manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }
}
