//! What `fsck` checks in `snapshots/`: trees no record owns and builds
//! nobody is running (removed by a repair), records whose tree is gone
//! and an unreadable metadata file (reported), the temporary siblings of
//! the metadata file and its journal (removed by a repair).

use crate::bindings::exports::kist::content::fsck::{Problem, ProblemKind};
use crate::check::fsck::problem;
use crate::shared::error::Result;
use crate::shared::fs::{self, FileType};
use crate::snapshots::records::{self, DIR};
use crate::snapshots::tree;

/// Checks the entry `name` of `snapshots/`, repairing if `repair`.
pub fn entry(name: &str, kind: FileType, repair: bool) -> Result<Option<Problem>> {
    let path = format!("{DIR}/{name}");
    let lock = records::lock()?;
    if name == records::FILE {
        return metadata(&path);
    }
    if name == records::JOURNAL {
        // Its torn tail is ignored as it is read; damage is reported. If
        // the records cannot be read, the metadata file's problem says so.
        let Ok(damaged) = records::damaged() else {
            return Ok(None);
        };
        return crate::check::fsck::damaged_journal(&path, damaged, repair, || {
            records::fold(&lock)
        });
    }
    let removed = |mut p: Problem, gone: bool| {
        if gone {
            p.repaired = Some("removed".into());
        }
        p
    };
    if [records::FILE, records::JOURNAL]
        .map(|f| format!(".{f}.tmp"))
        .contains(&name.to_owned())
    {
        let p = problem(
            ProblemKind::TempFile,
            &path,
            "left by an interrupted snapshot change",
        );
        return Ok(Some(removed(p, repair && fs::remove_file(&path)?)));
    }
    let id = match name.parse::<u64>() {
        Ok(id) if kind == FileType::Directory && id.to_string() == name => id,
        _ => {
            let detail = format!("not written by kist ({kind:?}); left alone");
            return Ok(Some(problem(ProblemKind::StrayEntry, &path, detail)));
        }
    };
    // An apply running now holds this; its tree is not a leftover.
    let Ok(_idle) = tree::apply_lock(id) else {
        return Ok(None);
    };
    let owned = records::current()?.values().any(|r| r.id == id);
    if !owned {
        let p = problem(
            ProblemKind::OrphanSnapshot,
            &path,
            "a tree no snapshot owns",
        );
        return Ok(Some(removed(p, repair && tree::remove_path(&path)?)));
    }
    let build = tree::apply_path(id);
    if fs::stat(&build)?.is_some() {
        let p = problem(
            ProblemKind::OrphanSnapshot,
            &build,
            "a layer apply that was interrupted",
        );
        return Ok(Some(removed(p, repair && tree::remove_path(&build)?)));
    }
    drop(lock);
    Ok(None)
}

/// `snapshots.json`: readable, and every record's tree there.
fn metadata(path: &str) -> Result<Option<Problem>> {
    let all = match records::current() {
        Ok(all) => all,
        Err(e) => {
            let detail = crate::shared::error::message(&e);
            return Ok(Some(problem(ProblemKind::BrokenSnapshot, path, detail)));
        }
    };
    let mut missing = Vec::new();
    for (name, record) in all.iter() {
        if fs::stat(&tree::fs_path(record.id))?.is_none() {
            missing.push(format!("{name:?} (tree {})", record.id));
        }
    }
    Ok((!missing.is_empty()).then(|| {
        let detail = format!("snapshots whose tree is missing: {}", missing.join(", "));
        problem(ProblemKind::BrokenSnapshot, path, detail)
    }))
}
