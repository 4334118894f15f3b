//! Test support for snapshots: real mounts (as root) that unmount when
//! dropped, and trees described for comparison.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kist::mount::Mount;

/// Fails the test, clearly, when not run as root: mounts need it.
pub fn require_root() {
    // The owner of /proc/self is the effective user.
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        euid, 0,
        "snapshot tests mount overlays and need root (CI runs as root); run `sudo ./test.sh snapshots::`"
    );
}

/// The snapshot trees in the store at `root` (`snapshots/<number>`),
/// leaving out the metadata files beside them.
pub fn snapshot_trees(root: &Path) -> Vec<String> {
    let mut trees: Vec<String> = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.parse::<u64>().is_ok())
        .collect();
    trees.sort();
    trees
}

/// A mount that is undone when dropped (also when the test fails).
pub struct Mounted {
    target: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Mounted {
    /// Performs `mounts` on a fresh temporary directory.
    pub fn new(mounts: &[Mount]) -> Self {
        let dir = tempfile::tempdir().expect("mount point");
        kist::mount::mount(mounts, dir.path()).expect("mounting");
        Self {
            target: dir.path().to_path_buf(),
            _dir: Some(dir),
        }
    }

    /// Performs `mounts` on `target`, an existing directory of the test's.
    pub fn at(mounts: &[Mount], target: &Path) -> Self {
        kist::mount::mount(mounts, target).expect("mounting");
        Self {
            target: target.to_path_buf(),
            _dir: None,
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// `path` inside the mount.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        self.target.join(path)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = kist::mount::unmount(&self.target) {
            eprintln!("unmounting {}: {e}", self.target.display());
        }
    }
}

/// What a tree holds, path by path: kind, permission bits, owner, and
/// content (file data, link target, device number). Times are left out:
/// overlay's copy-up and the kernel change directory times.
pub type Described = BTreeMap<String, String>;

/// Describes the tree at `root` (not following symlinks).
pub fn describe(root: &Path) -> Described {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Described) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        let rel = path
            .strip_prefix(root)
            .expect("inside")
            .display()
            .to_string();
        let kind = meta.file_type();
        let what = if kind.is_dir() {
            "dir".to_owned()
        } else if kind.is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(&path).expect("readlink").display()
            )
        } else if kind.is_char_device() {
            format!("char {}", meta.rdev())
        } else if kind.is_fifo() {
            "fifo".to_owned()
        } else {
            format!(
                "file {:?}",
                String::from_utf8_lossy(&std::fs::read(&path).expect("read"))
            )
        };
        let mode = if kind.is_symlink() {
            0
        } else {
            meta.mode() & 0o7777
        };
        out.insert(
            rel,
            format!("{what} {mode:o} {}:{}", meta.uid(), meta.gid()),
        );
        if kind.is_dir() {
            walk(root, &path, out);
        }
    }
}

/// Asserts two trees hold the same, naming the first differences.
pub fn assert_same(actual: &Path, expected: &Path) {
    let (a, e) = (describe(actual), describe(expected));
    if a != e {
        let mut diffs = Vec::new();
        for (k, v) in &e {
            match a.get(k) {
                None => diffs.push(format!("missing {k}: {v}")),
                Some(w) if w != v => diffs.push(format!("{k}: {w}, expected {v}")),
                _ => {}
            }
        }
        for (k, v) in &a {
            if !e.contains_key(k) {
                diffs.push(format!("unexpected {k}: {v}"));
            }
        }
        panic!(
            "{} differs from {}:\n  {}",
            actual.display(),
            expected.display(),
            diffs.join("\n  ")
        );
    }
}
