//! `registry/referrers/<alg>/<subject hex>/<alg>-<referrer hex>`: for each
//! subject, the manifests that refer to it, with what the referrers API
//! lists (media type, size, artifact type, annotations).
//!
//! One entry per referrer whatever the repositories holding it: a listing
//! keeps those the asking repository holds. An entry is written, under
//! the referrer's lock, before the referrer is published; the collector
//! keeps a referrer while its subject is kept, and sweeps the entries of
//! referrers that are gone.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::bindings::kist::content::locks::Guard;
use crate::content::store;
use crate::shared::digest::{self, ALGORITHMS, Digest};
use crate::shared::error::{Result, corrupt};
use crate::shared::fs::{self, Durability};

const DIR: &str = "registry/referrers";

/// What an entry records of its referrer.
#[derive(Serialize, Deserialize)]
pub struct Entry {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<(String, String)>,
}

impl Entry {
    /// About how many bytes it takes in a referrers index (its descriptor
    /// in JSON): what pages are bounded by.
    pub fn index_bytes(&self) -> u64 {
        let annotations: usize = self
            .annotations
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum();
        let text = self.media_type.len() + self.artifact_type.as_ref().map_or(0, String::len);
        (annotations + text + 256) as u64
    }
}

fn subject_dir(subject: &Digest) -> String {
    format!("{DIR}/{}/{}", digest::name(subject.algorithm), subject.hex)
}

fn entry_name(referrer: &Digest) -> String {
    format!("{}-{}", digest::name(referrer.algorithm), referrer.hex)
}

/// Records that `referrer` refers to `subject`; the caller holds the
/// referrer's lock.
pub fn record(subject: &Digest, referrer: &Digest, entry: &Entry, _locked: &Guard) -> Result<()> {
    let dir = subject_dir(subject);
    for d in [
        "registry",
        DIR,
        &format!("{DIR}/{}", digest::name(subject.algorithm)),
        &dir,
    ] {
        fs::mkdir(d)?;
    }
    let bytes = serde_json::to_vec(entry).expect("entries serialise");
    fs::write_atomic(&dir, &entry_name(referrer), &bytes, Durability::Synced)
}

/// The referrers of `subject`, sorted by digest, without reading their
/// entries.
pub fn listed(subject: &Digest) -> Result<Vec<Digest>> {
    let names = fs::list_dir(&subject_dir(subject))?.unwrap_or_default();
    // Temporary files are not entries.
    let mut out: Vec<Digest> = names.iter().filter_map(|(n, _)| parse_name(n)).collect();
    out.sort_by_key(Digest::to_string);
    Ok(out)
}

/// The entry of `referrer` under `subject`, if it has one.
pub fn entry(subject: &Digest, referrer: &Digest) -> Result<Option<Entry>> {
    let path = format!("{}/{}", subject_dir(subject), entry_name(referrer));
    let Some(bytes) = fs::read_file(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(&path, e))
}

fn parse_name(name: &str) -> Option<Digest> {
    let (alg, hex) = name.split_once('-')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// The subjects that have referrers (for a collection: a kept subject
/// keeps them).
pub fn subjects() -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for alg in ALGORITHMS {
        let dir = format!("{DIR}/{}", digest::name(alg));
        for (hex, _) in fs::list_dir(&dir)?.unwrap_or_default() {
            if digest::is_hex_of(alg, &hex) {
                out.insert(format!("{}:{hex}", digest::name(alg)));
            }
        }
    }
    Ok(out)
}

/// Removes the entries of referrers no longer stored, each under the referrer's lock, which its push holds from
/// writing the entry to publishing the manifest.
pub fn sweep() -> Result<()> {
    for alg in ALGORITHMS {
        let alg_dir = format!("{DIR}/{}", digest::name(alg));
        for (hex, _) in fs::list_dir(&alg_dir)?.unwrap_or_default() {
            let subject = Digest {
                algorithm: alg,
                hex,
            };
            sweep_subject(&subject)?;
        }
    }
    Ok(())
}

fn sweep_subject(subject: &Digest) -> Result<()> {
    let dir = subject_dir(subject);
    for (name, _) in fs::list_dir(&dir)?.unwrap_or_default() {
        let Some(referrer) = parse_name(&name) else {
            continue;
        };
        if fs::stat(&referrer.blob_path())?.is_some() {
            continue;
        }
        let _lock = store::lock_blob(&referrer)?;
        if fs::stat(&referrer.blob_path())?.is_none() {
            fs::remove_file(&format!("{dir}/{name}"))?;
        }
    }
    // The subject's directory stays: removing it could race with a push
    // recording a new referrer in it.
    Ok(())
}
