//! Where the store's snapshot trees are mounted, from the kernel's own
//! table (`/proc/self/mountinfo`): what keeps `snapshot rm` from removing a
//! tree in use, and `unmount` from unmounting what is not a snapshot.

use std::path::{Path, PathBuf};

/// One mount of the table: where it is, and what it shows.
struct Entry {
    /// Its mount point.
    target: PathBuf,
    /// The directory of its filesystem it shows (a bind mount's source,
    /// as a path within that filesystem).
    root: String,
    /// Its filesystem type and super options (overlay's `lowerdir=`,
    /// `upperdir=`, `workdir=`).
    fstype: String,
    options: String,
}

/// The mount table; empty where there is none to read.
fn table() -> Vec<Entry> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines().filter_map(parse).collect()
}

/// One line of `mountinfo`: `id parent dev root target options [tags] -
/// fstype source superoptions`, paths with `\ooo` escapes.
fn parse(line: &str) -> Option<Entry> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    let fstype = right.next()?.to_owned();
    let _source = right.next()?;
    Some(Entry {
        root: unescape(left.get(3)?),
        target: PathBuf::from(unescape(left.get(4)?)),
        fstype,
        options: unescape(right.next().unwrap_or_default()),
    })
}

/// `mountinfo`'s octal escapes (`\040` for a space) undone.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(u8::is_ascii_digit));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let n = d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
                out.push(n as u8);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Entry {
    /// Whether the mount shows `tree` or what is below it: an overlay with
    /// it as a layer, or a bind mount of it (its root a path in the same
    /// filesystem that `tree` ends with).
    fn uses(&self, tree: &str) -> bool {
        if self.fstype == "overlay" {
            return self
                .options
                .split(',')
                .filter_map(|o| o.split_once('=').map(|(_, v)| v))
                .flat_map(|v| v.split(':'))
                .any(|dir| dir == tree || dir.starts_with(&format!("{tree}/")));
        }
        self.root.len() > 1
            && (tree.ends_with(&self.root) || self.root.starts_with(&format!("{tree}/")))
    }
}

/// Where `tree` (a snapshot's directory, absolute) is mounted.
pub(crate) fn mounted_at(tree: &str) -> Vec<PathBuf> {
    table()
        .into_iter()
        .filter(|e| e.uses(tree))
        .map(|e| e.target)
        .collect()
}

/// Whether what is mounted at `target` shows a tree under `snapshots`
/// (the store's snapshots directory, absolute).
pub(crate) fn is_snapshot_mount(target: &Path, snapshots: &str) -> bool {
    table()
        .iter()
        .filter(|e| e.target == target)
        .any(|e| e.uses(snapshots))
}
