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
        let layers = layers
            .iter()
            .enumerate()
            .map(|(i, data)| crate::tar_gz(&[crate::Entry::File(&format!("file{i}"), data)]))
            .collect();
        Self::with_layers(layers, subject)
    }

    /// An image of the tar+gzip `layers`, base first.
    pub fn with_layers(layers: Vec<Vec<u8>>, subject: Option<(&str, usize)>) -> Self {
        let layers: Vec<Blob> = layers
            .into_iter()
            .map(|tgz| Blob::new(tgz, "application/vnd.oci.image.layer.v1.tar+gzip"))
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

    /// The files of the image as an OCI image layout, by path: the layout
    /// marker, `index.json` naming the manifest with `annotations`, blobs.
    fn layout_files(&self, annotations: serde_json::Value) -> Vec<(String, Vec<u8>)> {
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST,
                "digest": self.digest,
                "size": self.manifest.len(),
                "annotations": annotations,
            }],
        });
        let blob =
            |digest: &str, bytes: &[u8]| (format!("blobs/sha256/{}", &digest[7..]), bytes.to_vec());
        let mut files = vec![
            (
                "oci-layout".to_owned(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_owned(), index.to_string().into_bytes()),
        ];
        files.extend(self.blobs().map(|b| blob(&b.digest, &b.bytes)));
        files.push(blob(&self.digest, &self.manifest));
        files
    }

    /// Writes the image as an OCI archive (a tar of its image layout) at
    /// `path`, named `name` (`io.containerd.image.name`) for
    /// `ctr images import`.
    pub fn write_archive(&self, path: &Path, name: &str) {
        let mut out = tar::Builder::new(std::fs::File::create(path).unwrap());
        for (entry, bytes) in self.layout_files(json!({"io.containerd.image.name": name})) {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            out.append_data(&mut h, entry, &bytes[..]).unwrap();
        }
        out.finish().unwrap();
    }

    /// Writes the image as an OCI image layout at `dir`, tagged `tag`.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        for (file, bytes) in self.layout_files(json!({"org.opencontainers.image.ref.name": tag})) {
            std::fs::write(dir.join(file), bytes).unwrap();
        }
    }
}

/// A busybox image layer (tar+gzip) from Debian's busybox-static: the
/// static binary in `bin/` and a link per applet.
pub fn busybox_layer() -> Vec<u8> {
    let path = std::fs::canonicalize(crate::peer("busybox")).unwrap();
    let busybox = std::fs::read(&path).unwrap();
    let list = std::process::Command::new(&path)
        .arg("--list")
        .output()
        .unwrap();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let header = crate::tar_header;
    for (dir, mode) in [("bin", 0o755), ("tmp", 0o1777)] {
        b.append_data(
            &mut header(tar::EntryType::Directory, mode, 0),
            dir,
            std::io::empty(),
        )
        .unwrap();
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}
