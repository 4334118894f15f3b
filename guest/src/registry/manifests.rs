//! Manifests from the network, parsed inside the sandbox with the OCI
//! image types (`oci-spec`): what a manifest or index references, its
//! subject, its artifact type.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::bindings::exports::kist::content::registry::RegistryError;
use crate::shared::digest::Digest;
use crate::shared::error;

/// Largest manifest stored: the spec's "at least 4 MiB".
pub const MAX_MANIFEST: usize = 4 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Layers a registry is not asked to hold (`urls` say where they are).
const FOREIGN: [&str; 4] = [
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// What a parsed manifest means to the store.
pub struct Parsed {
    /// Its media type.
    pub media_type: String,
    /// What it references and keeps, each with the suffix of its
    /// `containerd.io/gc.ref.content.` label (`config`, `l.<i>`, `m.<i>`)
    /// and the size the manifest gives it.
    pub references: Vec<(String, Digest, u64)>,
    /// What it refers to (kept by nothing: it may come later).
    pub subject: Option<Digest>,
    /// Its artifact type: `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
    /// Its annotations, sorted.
    pub annotations: Vec<(String, String)>,
}

fn invalid(why: impl std::fmt::Display) -> RegistryError {
    RegistryError::ManifestInvalid(why.to_string())
}

/// Parses `bytes` pushed with `content_type` (parameters ignored).
pub fn parse(content_type: &str, bytes: &[u8]) -> Result<Parsed, RegistryError> {
    if bytes.len() > MAX_MANIFEST {
        return Err(invalid(format!(
            "{} bytes; manifests are at most {MAX_MANIFEST}",
            bytes.len()
        )));
    }
    let fields: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let own = fields.get("mediaType").and_then(|m| m.as_str());
    let given = content_type.split(';').next().unwrap_or_default().trim();
    let media_type = match (given, own) {
        ("", None) => {
            return Err(invalid(
                "no media type: give a Content-Type or a mediaType field",
            ));
        }
        ("", Some(own)) => own,
        (given, Some(own)) if given != own => {
            return Err(invalid(format!(
                "Content-Type {given:?} but mediaType {own:?}"
            )));
        }
        (given, _) => given,
    };
    if fields.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => manifest(media_type, bytes),
        OCI_INDEX | DOCKER_LIST => index(media_type, bytes),
        other => Err(RegistryError::Unsupported(format!(
            "manifest media type {other:?} (kist stores {OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST} and {DOCKER_LIST})"
        ))),
    }
}

fn manifest(media_type: &str, bytes: &[u8]) -> Result<Parsed, RegistryError> {
    let m: ImageManifest = serde_json::from_slice(bytes).map_err(invalid)?;
    let mut references = vec![("config".to_owned(), digest(m.config())?, m.config().size())];
    for (i, layer) in m.layers().iter().enumerate() {
        let foreign = FOREIGN.contains(&layer.media_type().to_string().as_str())
            && layer.urls().as_ref().is_some_and(|u| !u.is_empty());
        if !foreign {
            references.push((format!("l.{i}"), digest(layer)?, layer.size()));
        }
    }
    let artifact_type = m
        .artifact_type()
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| Some(m.config().media_type().to_string()));
    Ok(Parsed {
        media_type: media_type.to_owned(),
        references,
        subject: m.subject().as_ref().map(digest).transpose()?,
        artifact_type,
        annotations: sorted(m.annotations()),
    })
}

fn index(media_type: &str, bytes: &[u8]) -> Result<Parsed, RegistryError> {
    let i: ImageIndex = serde_json::from_slice(bytes).map_err(invalid)?;
    let references = i
        .manifests()
        .iter()
        .enumerate()
        .map(|(n, m)| Ok((format!("m.{n}"), digest(m)?, m.size())))
        .collect::<Result<_, RegistryError>>()?;
    Ok(Parsed {
        media_type: media_type.to_owned(),
        references,
        subject: i.subject().as_ref().map(digest).transpose()?,
        artifact_type: i.artifact_type().as_ref().map(ToString::to_string),
        annotations: sorted(i.annotations()),
    })
}

/// A descriptor's digest as kist stores it.
fn digest(d: &Descriptor) -> Result<Digest, RegistryError> {
    Digest::parse(d.digest().as_ref()).map_err(|e| {
        RegistryError::Unsupported(format!("a descriptor's digest: {}", error::message(&e)))
    })
}

fn sorted(
    annotations: &Option<std::collections::HashMap<String, String>>,
) -> Vec<(String, String)> {
    let mut a: Vec<_> = annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    a.sort();
    a
}
