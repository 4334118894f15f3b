//! `layers/layers.json`: every stored layer's record in one file,
//! replaced whole (temp, fsync, rename) at every change. Only a run, which
//! holds the layers lock, writes it; `info` and `list` read it.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::bindings::exports::kist::content::layers::{LayerDesc, LayerInfo, LayerState};
use crate::retention::holds::{self, Stamp};
use crate::shared::cached::Cached;
use crate::shared::error::{Error, Result, corrupt};
use crate::shared::filters::{Fields, rest_key};
use crate::shared::fs::{self, Durability};
use crate::snapshots::records::Lookup as _;
use crate::snapshots::{records as snapshots, tree};

/// Where layer records live, relative to the store root.
pub const DIR: &str = "layers";
/// The records file's name in [`DIR`].
const FILE: &str = "layers.json";
/// The holder of every layer's snapshot, and of its blob while it is
/// being installed.
pub const HOLDER: &str = "layers";

/// A layer's description, as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Desc {
    pub digest: String,
    pub size: u64,
    pub urls: Vec<String>,
    pub id: String,
    pub version: String,
    pub os_version: String,
    pub annotations: BTreeMap<String, String>,
}

impl From<&LayerDesc> for Desc {
    fn from(d: &LayerDesc) -> Self {
        Self {
            digest: d.digest.clone(),
            size: d.size,
            urls: d.urls.clone(),
            id: d.id.clone(),
            version: d.version.clone(),
            os_version: d.os_version.clone(),
            annotations: d.annotations.iter().cloned().collect(),
        }
    }
}

/// Whether a layer is in use or only kept.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Installed,
    Cached,
}

/// One stored layer.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Record {
    pub desc: Desc,
    pub state: State,
    /// When it entered `state`.
    pub since: Stamp,
    /// For a cached layer: when its TTL ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Stamp>,
    pub diff_id: String,
    /// Allocated bytes of the unpacked tree.
    pub usage: u64,
}

/// The whole records file, by digest.
#[derive(Serialize, Deserialize, Default, Clone)]
pub struct Layers {
    pub items: BTreeMap<String, Record>,
}

/// The committed snapshot holding a layer's tree.
pub fn snapshot_name(digest: &str) -> String {
    format!("{DIR}/{digest}")
}

/// The active snapshot a layer is unpacked into before its commit.
pub fn extract_key(digest: &str) -> String {
    format!("{DIR}/{digest}/extract")
}

/// The ingest a layer is downloaded into.
pub fn ingest_ref(digest: &str) -> String {
    format!("{DIR}/{digest}")
}

fn path() -> String {
    format!("{DIR}/{FILE}")
}

thread_local! {
    static CURRENT: Cached<Layers> = const { Cached::new() };
}

/// The records as last written.
pub fn current() -> Result<Rc<Layers>> {
    CURRENT
        .with(|c| {
            c.get(&path(), |bytes| {
                serde_json::from_slice(bytes).map_err(|e| corrupt(&path(), e))
            })
        })
        .map(|l| l.unwrap_or_default())
}

/// Replaces the records (the caller holds the layers lock).
pub fn save(layers: &Layers) -> Result<()> {
    fs::mkdir(DIR)?;
    let bytes =
        serde_json::to_vec(layers).map_err(|e| Error::Io(format!("encoding {}: {e}", path())))?;
    fs::write_atomic(DIR, FILE, &bytes, Durability::Synced)
}

impl Record {
    /// The WIT view; the tree's path comes from the snapshot's record.
    pub fn info(&self) -> Result<LayerInfo> {
        let snapshots = snapshots::current()?;
        let snapshot = snapshots.record(&snapshot_name(&self.desc.digest))?;
        let d = &self.desc;
        Ok(LayerInfo {
            desc: LayerDesc {
                digest: d.digest.clone(),
                size: d.size,
                urls: d.urls.clone(),
                id: d.id.clone(),
                version: d.version.clone(),
                os_version: d.os_version.clone(),
                annotations: d.annotations.clone().into_iter().collect(),
            },
            state: match self.state {
                State::Installed => LayerState::Installed,
                State::Cached => LayerState::Cached,
            },
            since: holds::datetime(self.since),
            expires: self.expires.map(holds::datetime),
            path: tree::fs_path(snapshot.id),
            size: self.usage,
            diff_id: self.diff_id.clone(),
        })
    }
}

impl Fields for Record {
    fn field(&self, path: &[String]) -> Option<String> {
        let d = &self.desc;
        match path.first().map(String::as_str)? {
            "digest" => Some(d.digest.clone()),
            "id" => Some(d.id.clone()),
            "version" => Some(d.version.clone()),
            "os-version" => Some(d.os_version.clone()),
            "state" => Some(
                match self.state {
                    State::Installed => "installed",
                    State::Cached => "cached",
                }
                .to_owned(),
            ),
            "annotations" => d.annotations.get(&rest_key(path)?).cloned(),
            _ => None,
        }
    }
}
