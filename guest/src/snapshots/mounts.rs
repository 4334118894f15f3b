//! The mounts of a snapshot, as containerd's overlay snapshotter gives
//! them; paths are relative to the store root (the host makes them
//! absolute).

use crate::bindings::exports::kist::content::snapshots::Mount;
use crate::shared::error::Result;
use crate::snapshots::records::{Lookup, Record, Snapshots, State};
use crate::snapshots::tree;

fn bind(path: String, read_only: bool) -> Mount {
    Mount {
        type_: "bind".into(),
        source: path,
        options: vec!["rbind".into(), if read_only { "ro" } else { "rw" }.into()],
    }
}

/// The mounts of `record` (an active snapshot or a view).
pub fn of(snapshots: &Snapshots, record: &Record) -> Result<Vec<Mount>> {
    let parents = snapshots.parent_ids(record)?;
    let read_only = record.kind == State::View;
    if parents.is_empty() {
        return Ok(vec![bind(tree::fs_path(record.id), read_only)]);
    }
    if read_only && parents.len() == 1 {
        return Ok(vec![bind(tree::fs_path(parents[0]), true)]);
    }
    let lower = parents
        .iter()
        .map(|&id| tree::fs_path(id))
        .collect::<Vec<_>>()
        .join(":");
    let mut options = Vec::new();
    if !read_only {
        options.push(format!("workdir={}", tree::work_path(record.id)));
        options.push(format!("upperdir={}", tree::fs_path(record.id)));
    }
    options.push(format!("lowerdir={lower}"));
    Ok(vec![Mount {
        type_: "overlay".into(),
        source: "overlay".into(),
        options,
    }])
}
