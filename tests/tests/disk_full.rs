//! A full disk: writes fail with `no-space`, nothing stored is lost or
//! half visible, and the ingest resumes once space is freed.
//!
//! Runs the store on a small tmpfs this test mounts, so it needs root (CI
//! runs as root); anywhere else it fails and says why.

use std::path::{Path, PathBuf};
use std::process::Command;

use kist::Error;
use kist_tests::{bytes, fsck, kist_bin, sha256, tree};

/// A tmpfs of `size` mounted for the test's lifetime.
struct SmallDisk {
    _parent: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let parent = tempfile::tempdir().unwrap();
        let mount = parent.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs to fill it and needs root for that: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            _parent: parent,
            mount,
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// `kist --store root ingest file`, run to its end.
fn kist_ingest(root: &Path, file: &Path) -> std::process::Output {
    Command::new(kist_bin())
        .arg("--store")
        .arg(root)
        .arg("ingest")
        .arg(file)
        .output()
        .unwrap()
}

fn dot_files(root: &Path) -> Vec<String> {
    tree(root)
        .into_iter()
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with('.')))
        .collect()
}

/// Proves: `no-space` is typed, the writer's offset stays put, stored
/// blobs survive, and freeing space lets the same ingest finish.
#[test]
fn full_disk_then_resume() {
    let disk = SmallDisk::mount("8m");
    let root = disk.mount.join("store");
    std::fs::create_dir(&root).unwrap();
    let store = kist::Store::open(&root).unwrap();
    let kept = bytes(100_000, 1);
    let kept_digest = store.put_with(&kept, None, &[("keep", "yes")]).unwrap();
    // Ballast outside the store, freed later to make room.
    let ballast = disk.mount.join("ballast");
    std::fs::write(&ballast, vec![1u8; 3 << 20]).unwrap();

    let data = bytes(6 << 20, 2);
    let mut writer = store.writer("big", Some(data.len() as u64), None).unwrap();
    let mut written = 0;
    let failure = loop {
        let chunk = &data[written..(written + (256 << 10)).min(data.len())];
        match writer.write_all(chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) => break e,
        }
        assert!(written < data.len(), "the disk never filled up");
    };
    assert!(matches!(failure, Error::NoSpace(_)), "{failure:?}");
    assert_eq!(
        writer.status().unwrap().offset,
        written as u64,
        "all or nothing"
    );

    // While full: a put fails with no-space and leaves nothing behind;
    // committed blobs are intact.
    let put = store.put(&bytes(2 << 20, 3));
    assert!(matches!(put, Err(Error::NoSpace(_))), "{put:?}");
    assert!(dot_files(&root).is_empty(), "{:?}", dot_files(&root));
    assert_eq!(store.get(&kept_digest).unwrap(), kept);
    assert_eq!(store.info(&kept_digest).unwrap().labels.len(), 1);
    // The CLI says so in one line and exits 1.
    let file = disk.mount.parent().unwrap().join("file");
    std::fs::write(&file, bytes(1 << 20, 4)).unwrap();
    let out = kist_ingest(&root, &file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no space"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A copy by the host (tmpfs refuses direct I/O: buffered) fails the
    // same way, all or nothing.
    let mut copier = store.writer("copied", None, None).unwrap();
    let copied = copier.write_from_file(&std::fs::File::open(&file).unwrap(), 0, 1 << 20);
    assert!(matches!(copied, Err(Error::NoSpace(_))), "{copied:?}");
    assert_eq!(copier.status().unwrap().offset, 0, "all or nothing");
    drop(copier);
    store.abort("copied").unwrap();

    // Free space: the same writer goes on from its offset and commits.
    std::fs::remove_file(&ballast).unwrap();
    writer.write_all(&data[written..]).unwrap();
    assert_eq!(writer.commit(None, None, &[]).unwrap(), sha256(&data));
    assert_eq!(store.get(&sha256(&data)).unwrap(), data);
    // With room again, `kist ingest` stores the file through the copier.
    let out = kist_ingest(&root, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = sha256(&std::fs::read(&file).unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&stored));
    let problems = fsck(&store, false);
    assert!(problems.is_empty(), "{problems:?}");
}
