//! The start of a run, under the layers lock: descriptions checked, the
//! records reconciled with the snapshots, expired cached layers removed,
//! and every stored layer moved to its new state (installed ones no longer
//! desired become cached, cached ones desired again are restored). What is
//! left to install is returned.

use std::collections::{BTreeMap, BTreeSet};

use crate::Component;
use crate::bindings::exports::kist::content::layers::{LayerAction, LayerDesc, LayerError};
use crate::bindings::exports::kist::content::snapshots::Guest as _;
use crate::layers::records::{self, DIR, Desc, Layers, Record, State};
use crate::retention::holds;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result};
use crate::shared::validate;
use crate::snapshots::records::{self as snapshots, Lookup as _, State as SnapshotState};

/// Longest URL accepted.
const MAX_URL: usize = 8192;
/// The label on a layer's snapshot that keeps its diff id, so a snapshot
/// committed just before a crash can be adopted without its record.
pub const DIFF_ID_LABEL: &str = "kist.dev/layer.diff-id";

/// What the plan decided.
pub struct Plan {
    /// Per desired layer: its outcome, or `None` if it must be installed.
    pub outcomes: Vec<Option<Result<LayerAction, LayerError>>>,
    /// Stored layers that changed without being desired.
    pub others: Vec<(String, LayerAction)>,
}

/// Checks one description; the message says what is wrong.
fn check(d: &LayerDesc) -> std::result::Result<(), String> {
    Digest::parse(&d.digest).map_err(|e| crate::shared::error::message(&e))?;
    if d.size == 0 {
        return Err("size: a layer blob has at least one byte".into());
    }
    if d.urls.is_empty() {
        return Err("urls: at least one source is needed".into());
    }
    if let Some(u) = d
        .urls
        .iter()
        .find(|u| u.len() > MAX_URL || u.contains(char::is_control))
    {
        return Err(format!(
            "url {:.64}…: at most {MAX_URL} bytes without control characters",
            u
        ));
    }
    for (key, value) in [
        ("id", &d.id),
        ("version", &d.version),
        ("os-version", &d.os_version),
    ] {
        validate::label(key, value).map_err(|e| crate::shared::error::message(&e))?;
    }
    for (key, value) in &d.annotations {
        validate::label(key, value)
            .map_err(|e| format!("annotation: {}", crate::shared::error::message(&e)))?;
    }
    Ok(())
}

/// Removes a layer's snapshot (gone already is fine) and its record;
/// `false`, changing nothing, while snapshots made on top of it keep it
/// (it stays cached until they go: one layer's children are its own
/// business, not the run's).
pub fn remove_layer(layers: &mut Layers, digest: &str) -> Result<bool> {
    if !remove_snapshot(&records::snapshot_name(digest))? {
        return Ok(false);
    }
    layers.items.remove(digest);
    records::save(layers)?;
    Ok(true)
}

/// Removes the layer snapshot `key` if the manager holds it (another
/// holder's snapshot of that name is not its to remove, and is not found
/// here); `false` while it is the parent of other snapshots.
fn remove_snapshot(key: &str) -> Result<bool> {
    match Component::remove(key.to_owned()) {
        Ok(()) | Err(Error::NotFound) => Ok(true),
        Err(Error::FailedPrecondition(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Decides what happens to every layer; see the module comment.
pub fn plan(desired: &[LayerDesc], cache_ttl: u64) -> Result<Plan> {
    let mut outcomes: Vec<Option<Result<LayerAction, LayerError>>> = Vec::new();
    let mut wanted: BTreeMap<String, usize> = BTreeMap::new();
    for (i, d) in desired.iter().enumerate() {
        let outcome = match check(d) {
            Err(m) => Some(Err(LayerError::Invalid(m))),
            Ok(()) if wanted.contains_key(&d.digest) => Some(Err(LayerError::Invalid(format!(
                "{} is listed twice",
                d.digest
            )))),
            Ok(()) => {
                wanted.insert(d.digest.clone(), i);
                None
            }
        };
        outcomes.push(outcome);
    }
    let mut layers = (*records::current()?).clone();
    let mut others = Vec::new();
    let adopted = reconcile(&mut layers, desired, &wanted, &mut others)?;
    let now = holds::now();
    let expired: Vec<String> = layers
        .items
        .iter()
        .filter(|(d, r)| !wanted.contains_key(*d) && r.expires.is_some_and(|e| e <= now))
        .map(|(d, _)| d.clone())
        .collect();
    for d in expired {
        if remove_layer(&mut layers, &d)? {
            others.push((d, LayerAction::Removed));
        }
    }
    for (digest, &i) in &wanted {
        let Some(record) = layers.items.get_mut(digest) else {
            continue; // to install
        };
        let action = match record.state {
            State::Installed if adopted.contains(digest) => LayerAction::Installed,
            State::Installed => LayerAction::Unchanged,
            State::Cached => {
                record.state = State::Installed;
                record.since = now;
                record.expires = None;
                LayerAction::Restored
            }
        };
        // The manager's metadata and sources follow the latest description.
        record.desc = Desc::from(&desired[i]);
        outcomes[i] = Some(Ok(action));
    }
    for (digest, record) in layers.items.iter_mut() {
        if record.state == State::Installed && !wanted.contains_key(digest) {
            record.state = State::Cached;
            record.since = now;
            record.expires = Some(holds::later(now, cache_ttl));
            others.push((digest.clone(), LayerAction::Cached));
        }
    }
    records::save(&layers)?;
    Ok(Plan { outcomes, others })
}

/// Records and snapshots agree again after a crash: a record without its
/// snapshot is dropped, a half-unpacked snapshot removed, a committed
/// layer snapshot without a record adopted if desired (returned), removed
/// if not.
fn reconcile(
    layers: &mut Layers,
    desired: &[LayerDesc],
    wanted: &BTreeMap<String, usize>,
    others: &mut Vec<(String, LayerAction)>,
) -> Result<BTreeSet<String>> {
    let mut adopted = BTreeSet::new();
    let snapshots = snapshots::current()?;
    let lost: Vec<String> = layers
        .items
        .keys()
        .filter(|d| !snapshots.contains_key(&records::snapshot_name(d)))
        .cloned()
        .collect();
    for d in lost {
        layers.items.remove(&d);
        if !wanted.contains_key(&d) {
            others.push((d, LayerAction::Removed));
        }
    }
    // The manager's snapshots are those it holds, named after their
    // layer: another holder's snapshot is never its own, whatever its name.
    let prefix = format!("{DIR}/");
    let ours: BTreeSet<String> = snapshots
        .iter()
        .filter(|(k, r)| k.starts_with(&prefix) && r.holders.contains(records::HOLDER))
        .map(|(k, _)| k.clone())
        .collect();
    for key in ours {
        let digest = &key[prefix.len()..];
        if layers.items.contains_key(digest) {
            continue;
        }
        let record = snapshots.record(&key)?;
        let adopt = wanted
            .get(digest)
            .filter(|_| record.kind == SnapshotState::Committed);
        if let Some(&i) = adopt
            && let Some(diff_id) = record.labels.get(DIFF_ID_LABEL)
        {
            layers.items.insert(
                digest.to_owned(),
                Record {
                    desc: Desc::from(&desired[i]),
                    state: State::Installed,
                    since: holds::now(),
                    expires: None,
                    diff_id: diff_id.clone(),
                    usage: record.usage.map_or(0, |u| u.0),
                },
            );
            adopted.insert(digest.to_owned());
            continue;
        }
        if !remove_snapshot(&key)? {
            continue; // kept by what was made on top of it
        }
        if record.kind == SnapshotState::Committed && !wanted.contains_key(digest) {
            others.push((digest.to_owned(), LayerAction::Removed));
        }
    }
    Ok(adopted)
}
