//! The `snapshots` interface: containerd's snapshotter contract over
//! [`records`] and [`tree`].

use std::collections::HashSet;

use crate::Component;
use crate::bindings::exports::kist::content::snapshots::{
    DiskUsage, Guest, Info, Layer, Mount, SnapshotOptions,
};
use crate::bindings::exports::kist::content::types::{Error as WitError, LayerTree};
use crate::content::{labels, store};
use crate::deltas::layers;
use crate::retention::holds;
use crate::shared::digest::Digest;
use crate::shared::error::{Error, Result, invalid, precondition};
use crate::shared::filters::{Fields, Filters, label_field, rest_key};
use crate::shared::scope::Caller;
use crate::shared::{layout, validate};
use crate::snapshots::records::{self, Lookup, Record, State, check_key};
use crate::snapshots::{apply, diff, mounts, tree};

/// Makes a snapshot of kind `kind` (active or view).
fn create(
    key: String,
    parent: Option<String>,
    options: SnapshotOptions,
    kind: State,
) -> Result<Vec<Mount>> {
    let caller = Caller::current();
    check_key(&key)?;
    if let Some(p) = &parent {
        check_key(p)?;
    }
    validate::labels(&options.labels)?;
    let holders = records::holders_of(options.holder, &caller)?;
    layout::ensure()?;
    let lock = records::lock()?;
    let target = options
        .labels
        .iter()
        .find(|l| l.key == SNAPSHOT_REF)
        .map(|l| l.value.clone());
    records::update(&lock, |all| {
        if all.contains_key(&key) {
            return Err(Error::AlreadyExists);
        }
        if let Some(target) = target.as_deref().filter(|_| kind == State::Active)
            && made_already(all, target, parent.as_deref(), &caller)
        {
            return Err(Error::AlreadyExists);
        }
        // A parent is one the caller sees: its own, or under its own.
        if let Some(p) = &parent
            && all.visible(p, &caller)?.kind != State::Committed
        {
            return Err(invalid(format!("parent {p:?} is not committed")));
        }
        let id = fresh_id(all.next_id())?;
        tree::create(id, kind == State::Active && parent.is_some())?;
        let now = holds::now();
        let record = Record {
            id,
            parent,
            kind,
            labels: labels::from_list(options.labels),
            holders,
            created: now,
            updated: now,
            usage: None,
        };
        let mounts = mounts::of(all, &record)?;
        all.insert(key, record);
        Ok(mounts)
    })
}

/// The label with which containerd names the committed snapshot a
/// `prepare` is for (its chain id): a snapshotter that has it already
/// answers `already-exists` and containerd skips the layer (how remote
/// snapshotters, and kist's delta pulls, hand it snapshots it did not
/// unpack).
const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// Whether `caller` sees a committed snapshot on `parent` that carries
/// `target` as its [`SNAPSHOT_REF`] label.
fn made_already(
    all: &records::Snapshots,
    target: &str,
    parent: Option<&str>,
    caller: &Caller,
) -> bool {
    all.iter().any(|(name, r)| {
        r.kind == State::Committed
            && r.parent.as_deref() == parent
            && r.labels.get(SNAPSHOT_REF).map(String::as_str) == Some(target)
            && all.visible(name, caller).is_ok()
    })
}

/// Tries before a new snapshot gives up on finding a free tree number.
const ID_TRIES: u64 = 64;

/// A tree number from `next` up whose tree is not there. A crash after a
/// tree was made but before its record was written, or a removal whose
/// tree was mounted, leaves a tree no record owns: it is removed and its
/// number given out again, or passed over while it cannot go.
fn fresh_id(next: u64) -> Result<u64> {
    let mut last = None;
    for id in next..next + ID_TRIES {
        match tree::remove(id) {
            Ok(()) => return Ok(id),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried at least once"))
}

/// What walk filters see of a snapshot.
struct Walked<'a>(&'a Info);

impl Fields for Walked<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "name" => Some(self.0.name.clone()),
            "parent" => Some(self.0.parent.clone().unwrap_or_default()),
            "kind" => Some(kind_name(&self.0.kind).to_owned()),
            "labels" => label_field(&self.0.labels, path),
            // Present (empty) when that holder holds the snapshot.
            "holders" => {
                let holder = rest_key(path)?;
                self.0.holders.contains(&holder).then(String::new)
            }
            _ => None,
        }
    }
}

fn kind_name(kind: &crate::bindings::exports::kist::content::snapshots::Kind) -> &'static str {
    use crate::bindings::exports::kist::content::snapshots::Kind;
    match kind {
        Kind::View => "view",
        Kind::Active => "active",
        Kind::Committed => "committed",
    }
}

impl Guest for Component {
    fn prepare(
        key: String,
        parent: Option<String>,
        options: SnapshotOptions,
    ) -> Result<Vec<Mount>, WitError> {
        create(key, parent, options, State::Active)
    }

    fn view(
        key: String,
        parent: Option<String>,
        options: SnapshotOptions,
    ) -> Result<Vec<Mount>, WitError> {
        create(key, parent, options, State::View)
    }

    fn commit(name: String, key: String, options: SnapshotOptions) -> Result<(), WitError> {
        let caller = Caller::current();
        check_key(&name)?;
        check_key(&key)?;
        validate::labels(&options.labels)?;
        let holders = records::holders_of(options.holder, &caller)?;
        let lock = records::lock()?;
        records::update(&lock, |all| {
            let active = all.owned(&key, &caller)?;
            if all.contains_key(&name) {
                return Err(Error::AlreadyExists);
            }
            if active.kind != State::Active {
                return Err(precondition(format!("{key:?} is not an active snapshot")));
            }
            let _not_applying = tree::apply_lock(active.id)?;
            let usage = tree::usage(&tree::fs_path(active.id))?;
            let mut record = all.remove(&key).expect("looked up above");
            let now = holds::now();
            record.kind = State::Committed;
            record.labels = labels::from_list(options.labels);
            record.holders = holders;
            record.created = now;
            record.updated = now;
            record.usage = Some(usage);
            all.insert(name, record);
            Ok(())
        })
    }

    fn mounts(key: String) -> Result<Vec<Mount>, WitError> {
        let caller = Caller::current();
        let all = records::current()?;
        let record = all.owned(&key, &caller)?;
        if record.kind == State::Committed {
            return Err(precondition(format!(
                "{key:?} is committed: it has no mounts; view it"
            )));
        }
        mounts::of(&all, record)
    }

    fn remove(key: String) -> Result<(), WitError> {
        let caller = Caller::current();
        let lock = records::lock()?;
        let (id, _applying) = records::update(&lock, |all| {
            let id = all.owned(&key, &caller)?.id;
            if all.has_children(&key) {
                return Err(precondition(format!(
                    "{key:?} is the parent of other snapshots; remove them first"
                )));
            }
            let applying = tree::apply_lock(id)?;
            all.remove(&key);
            Ok((id, applying))
        })?;
        drop(lock);
        // The record is gone, so the snapshot is; a tree that cannot go
        // now (something is mounted in it) is left for `cleanup`.
        let _ = tree::remove(id);
        Ok(())
    }

    fn stat(key: String) -> Result<Info, WitError> {
        let caller = Caller::current();
        Ok(records::current()?
            .visible(&key, &caller)?
            .info_for(&key, &caller))
    }

    fn update(info: Info, fieldpaths: Vec<String>) -> Result<Info, WitError> {
        let caller = Caller::current();
        validate::labels(&info.labels)?;
        let given = labels::from_list(info.labels);
        let lock = records::lock()?;
        records::update(&lock, |all| {
            all.owned(&info.name, &caller)?;
            let record = all.get_mut(&info.name).ok_or(Error::NotFound)?;
            if fieldpaths.is_empty() {
                record.labels = given.clone();
            }
            for path in &fieldpaths {
                match path.split_once('.') {
                    None if path == "labels" => record.labels = given.clone(),
                    Some(("labels", key)) => match given.get(key) {
                        Some(v) => {
                            record.labels.insert(key.to_owned(), v.clone());
                        }
                        None => {
                            record.labels.remove(key);
                        }
                    },
                    _ => {
                        return Err(invalid(format!(
                            "cannot update {path:?}: only labels change"
                        )));
                    }
                }
            }
            record.updated = holds::now();
            Ok(record.info_for(&info.name, &caller))
        })
    }

    fn usage(key: String) -> Result<DiskUsage, WitError> {
        let caller = Caller::current();
        let all = records::current()?;
        let record = all.visible(&key, &caller)?;
        let (size, inodes) = match record.usage {
            Some(u) => u,
            None => tree::usage(&tree::fs_path(record.id))?,
        };
        Ok(DiskUsage { size, inodes })
    }

    fn walk(filters: Vec<String>) -> Result<Vec<Info>, WitError> {
        let caller = Caller::current();
        let filters = Filters::parse(&filters)?;
        let all = records::current()?;
        Ok(all
            .iter()
            .filter(|(_, r)| caller.owns(&Vec::from_iter(r.holders.iter().cloned())))
            .map(|(name, r)| r.info_for(name, &caller))
            .filter(|info| filters.matches(&Walked(info)))
            .collect())
    }

    fn cleanup() -> Result<u32, WitError> {
        let lock = records::lock()?;
        let owned: HashSet<u64> = records::current()?.values().map(|r| r.id).collect();
        let removed = tree::cleanup(&owned);
        drop(lock);
        removed
    }

    fn apply(
        key: String,
        blob: String,
        media_type: String,
        max_size: u64,
    ) -> Result<String, WitError> {
        let caller = Caller::current();
        let d = Digest::parse(&blob)?;
        records::current()?.owned(&key, &caller)?;
        store::require_visible(&d, &caller)?;
        apply::apply_as_base(&key, &d, &media_type, max_size).map(|d| d.to_string())
    }

    fn tree_of_layer(blob: String, media_type: String) -> Result<LayerTree, WitError> {
        let d = Digest::parse(&blob)?;
        store::require_visible(&d, &Caller::current())?;
        layers::tree_of(&d, &media_type).map(|(info, _)| info)
    }

    fn apply_delta(
        key: String,
        diff_id: String,
        tree: String,
        pack: Option<String>,
        bases: Vec<(String, String)>,
        max_size: u64,
    ) -> Result<String, WitError> {
        let caller = Caller::current();
        let visible = |d: &str| -> Result<Digest> {
            let d = Digest::parse(d)?;
            store::require_visible(&d, &caller)?;
            Ok(d)
        };
        let diff_id = Digest::parse(&diff_id)?;
        let tree = visible(&tree)?;
        let pack = pack.as_deref().map(visible).transpose()?;
        let all = records::current()?;
        all.owned(&key, &caller)?;
        let bases = bases
            .into_iter()
            .map(|(base, base_tree)| {
                all.visible(&base, &caller)?;
                Ok((base, visible(&base_tree)?))
            })
            .collect::<Result<Vec<_>>>()?;
        layers::apply(&key, &diff_id, &tree, pack.as_ref(), &bases, max_size).map(|d| d.to_string())
    }

    fn diff(key: String, holder: Option<String>) -> Result<Layer, WitError> {
        let caller = Caller::current();
        let holder = caller.holder_for(holder)?;
        records::current()?.owned(&key, &caller)?;
        diff::diff(&key, &holder)
    }
}
