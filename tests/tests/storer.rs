//! The storer: artifacts, retention, archives and extraction, through the
//! real component.

use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use kist::{
    ArchiveOptions, Artifact, Error, ExtractOptions, Object, RetentionPolicy, Source, Storer,
};
use kist_tests::{Entry, Harness, open_embedded, sha256, tar_gz};

fn repo(uid: &str) -> Object {
    Object::new("GitRepository", "flux-system", "podinfo", uid)
}

/// A small tree with nested dirs, a relative symlink and an ignorable file.
fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("src/deep")).unwrap();
    std::fs::write(root.join("README.md"), "hello\n").unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        root.join("src/deep/data.bin"),
        kist_tests::bytes(100_000, 1),
    )
    .unwrap();
    std::fs::write(root.join("debug.log"), "noise").unwrap();
    symlink("main.rs", root.join("src/link.rs")).unwrap();
    std::fs::create_dir_all(root.join(".git/objects")).unwrap();
    std::fs::write(root.join(".git/HEAD"), "ref: refs/heads/main").unwrap();
}

/// Entry names of a `.tar.gz`.
fn entries(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn archive_of(storer: &Storer, dir: &Path, ignore: &[&str]) -> String {
    let options = ArchiveOptions {
        ignore: ignore.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    storer.archive(dir, &options).expect("archive").0
}

/// The same tree gives the same digest whatever its mtimes, owners, modes
/// and creation order; one changed byte changes it.
#[test]
fn archives_are_deterministic() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    tree(&a);
    // b: created in another order, other times, owners and modes.
    std::fs::create_dir_all(b.join("src/deep")).unwrap();
    std::fs::create_dir_all(b.join(".git")).unwrap();
    std::fs::write(b.join(".git/HEAD"), "something else").unwrap();
    std::fs::write(b.join("debug.log"), "noise").unwrap();
    symlink("main.rs", b.join("src/link.rs")).unwrap();
    std::fs::write(b.join("src/deep/data.bin"), kist_tests::bytes(100_000, 1)).unwrap();
    std::fs::write(b.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(b.join("README.md"), "hello\n").unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let f = std::fs::File::options()
        .write(true)
        .open(b.join("README.md"))
        .unwrap();
    f.set_modified(old).unwrap();
    std::fs::set_permissions(
        b.join("src/main.rs"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::chown(b.join("README.md"), Some(1234), Some(5678)).unwrap();

    let da = archive_of(&storer, &a, &[]);
    let db = archive_of(&storer, &b, &[]);
    assert_eq!(da, db, "same tree, same digest");
    let bytes = store.get(&da).unwrap();
    assert_eq!(sha256(&bytes), da);
    assert_eq!(
        entries(&bytes),
        [
            "README.md",
            "debug.log",
            "src/",
            "src/deep/",
            "src/deep/data.bin",
            "src/link.rs",
            "src/main.rs"
        ],
        "sorted, VCS directory left out"
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    for entry in archive.entries().unwrap() {
        let h = entry.unwrap().header().clone();
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
            (0, 0, 0)
        );
        assert_eq!(h.username().unwrap(), Some(""));
    }

    std::fs::write(b.join("src/main.rs"), "fn main() {}\r").unwrap();
    assert_ne!(archive_of(&storer, &b, &[]), da, "one changed byte");
}

/// Ignore patterns use .gitignore syntax, negation included.
#[test]
fn archives_honour_ignore_patterns() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let work = tempfile::tempdir().unwrap();
    tree(work.path());
    std::fs::write(work.path().join("keep.log"), "kept").unwrap();
    let d = archive_of(
        &store.storer(),
        work.path(),
        &["*.log", "!keep.log", "/src/deep/"],
    );
    assert_eq!(
        entries(&store.get(&d).unwrap()),
        [
            "README.md",
            "keep.log",
            "src/",
            "src/link.rs",
            "src/main.rs"
        ]
    );
    let bad = ArchiveOptions {
        ignore: vec!["[z-a]".into()],
        ..Default::default()
    };
    assert!(matches!(
        store.storer().archive(work.path(), &bad),
        Err(Error::InvalidArgument(_))
    ));
}

/// A link out of the tree, or more bytes than max-size, stores nothing.
#[test]
fn archives_refuse_escaping_links_and_oversize_trees() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let work = tempfile::tempdir().unwrap();
    tree(work.path());
    let small = ArchiveOptions {
        max_size: 1000,
        ..Default::default()
    };
    assert!(matches!(
        store.storer().archive(work.path(), &small),
        Err(Error::TooLarge(_))
    ));
    symlink("../../etc/passwd", work.path().join("src/escape")).unwrap();
    let err = store
        .storer()
        .archive(work.path(), &ArchiveOptions::default());
    assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("outside")));
    assert_eq!(kist_tests::digests(&store, &[]), Vec::<String>::new());
    let tmp = h.path().join("artifacts/.tmp");
    assert_eq!(
        std::fs::read_dir(tmp).unwrap().count(),
        0,
        "no temp file left"
    );
}

/// Reconciling records, aliases and skips work that is already done.
#[test]
fn reconcile_artifact_records_and_is_idempotent() {
    let h = Harness::new(open_embedded);
    let storer = h.store().storer();
    let work = tempfile::tempdir().unwrap();
    tree(work.path());
    let src = Source::Directory(work.path(), ArchiveOptions::default());
    let a = storer
        .reconcile_artifact(
            &repo("u1"),
            "main@sha1:1",
            "1.tar.gz",
            src.clone(),
            &[("k", "v")],
        )
        .unwrap();
    assert_eq!(a.path, "gitrepository/flux-system/podinfo/1.tar.gz");
    assert_eq!(
        a.url("sc.local"),
        "http://sc.local/gitrepository/flux-system/podinfo/1.tar.gz"
    );
    assert_eq!(a.metadata[0].key, "k");
    let again = storer
        .reconcile_artifact(&repo("u1"), "main@sha1:1", "1.tar.gz", src.clone(), &[])
        .unwrap();
    assert_eq!(
        kist::system_time(again.last_update),
        kist::system_time(a.last_update),
        "a no-op: nothing rebuilt"
    );
    let latest = storer
        .get("gitrepository/flux-system/podinfo/latest.tar.gz")
        .unwrap();
    assert_eq!(latest.unwrap().path, a.path);
    assert!(storer.exists(&a.path).unwrap());
    assert!(
        !storer
            .exists("gitrepository/flux-system/podinfo/2.tar.gz")
            .unwrap()
    );
    assert!(matches!(
        storer.get("../x/y/z"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        storer.get("a/b/c"),
        Err(Error::InvalidArgument(_))
    ));
    // A file source, then a blob source.
    std::fs::write(work.path().join("chart.tgz"), b"chart bytes").unwrap();
    let f = storer
        .reconcile_artifact(
            &repo("u1"),
            "v2",
            "chart.tgz",
            Source::File(&work.path().join("chart.tgz")),
            &[],
        )
        .unwrap();
    assert_eq!(f.digest, sha256(b"chart bytes"));
    let b = storer
        .reconcile_artifact(&repo("u1"), "v3", "copy.tgz", Source::Blob(&f.digest), &[])
        .unwrap();
    assert_eq!(b.digest, f.digest);
    assert_eq!(
        storer
            .get("gitrepository/flux-system/podinfo/latest.tgz")
            .unwrap()
            .unwrap()
            .path,
        b.path
    );
    let listed = storer.list(&["revision==v2"]).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(storer.list(&[]).unwrap().len(), 3);
    assert!(matches!(
        storer.reconcile_artifact(&repo("u1"), "v", "latest.tgz", Source::Blob(&f.digest), &[]),
        Err(Error::InvalidArgument(_))
    ));
}

/// Two objects with one name but different uids never share artifacts.
#[test]
fn uids_keep_objects_apart() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let d = store.put(b"old").unwrap();
    storer
        .reconcile_artifact(&repo("old-uid"), "r1", "a.bin", Source::Blob(&d), &[])
        .unwrap();
    let err = storer.reconcile_artifact(&repo("new-uid"), "r1", "a.bin", Source::Blob(&d), &[]);
    assert!(matches!(err, Err(Error::FailedPrecondition(m)) if m.contains("old-uid")));
    assert!(matches!(
        storer.reconcile_storage(
            &repo("new-uid"),
            RetentionPolicy {
                max_count: 1,
                ttl_seconds: None
            }
        ),
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(storer.remove_object(&repo("old-uid")).unwrap().len(), 1);
    storer
        .reconcile_artifact(&repo("new-uid"), "r1", "a.bin", Source::Blob(&d), &[])
        .unwrap();
    assert_eq!(storer.list(&["uid==new-uid"]).unwrap().len(), 1);
}

/// Rewrites the recorded time (and order) of an artifact, as if it had been
/// recorded then.
fn backdate(h: &Harness, file: &str, seconds: u64, seq: Option<u64>) {
    let path = h
        .path()
        .join("artifacts/gitrepository/flux-system/podinfo/files")
        .join(file);
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["updated"] = serde_json::json!([seconds, 0]);
    if let Some(seq) = seq {
        record["seq"] = seq.into();
    }
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
}

/// Records artifacts 1..=n of `repo("u")`, each from its own blob; the last
/// is current.
fn record(storer: &Storer, store: &kist::Store, n: usize) {
    for i in 1..=n {
        let d = store.put(format!("artifact {i}").as_bytes()).unwrap();
        storer
            .reconcile_artifact(
                &repo("u"),
                &format!("r{i}"),
                &format!("{i}.bin"),
                Source::Blob(&d),
                &[],
            )
            .unwrap();
    }
}

/// RetentionPolicy GC of `repo("u")`; returns what it removed.
fn gc(storer: &Storer, max_count: u32, ttl_seconds: Option<u64>) -> Vec<Artifact> {
    storer
        .reconcile_storage(
            &repo("u"),
            RetentionPolicy {
                max_count,
                ttl_seconds,
            },
        )
        .unwrap()
}

fn files(storer: &Storer) -> Vec<String> {
    storer
        .list(&[])
        .unwrap()
        .into_iter()
        .map(|a| a.path.rsplit('/').next().unwrap().to_owned())
        .collect()
}

/// GC keeps the current artifact and the newest others up to the count;
/// expired artifacts do not use up the count (the anchor's double count).
#[test]
fn gc_by_count_and_ttl_counts_correctly() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    record(&storer, &store, 5);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    backdate(&h, "1.bin", now - 7200, None);
    backdate(&h, "2.bin", now - 7200, None);
    let removed = gc(&storer, 3, Some(3600));
    let mut removed: Vec<_> = removed.into_iter().map(|a| a.path).collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            "gitrepository/flux-system/podinfo/1.bin",
            "gitrepository/flux-system/podinfo/2.bin"
        ]
    );
    assert_eq!(files(&storer), ["3.bin", "4.bin", "5.bin"]);
    // By count alone: the current one and the newest other.
    gc(&storer, 2, None);
    assert_eq!(files(&storer), ["4.bin", "5.bin"]);
    // max-count 0 still keeps the current artifact.
    gc(&storer, 0, Some(0));
    assert_eq!(files(&storer), ["5.bin"]);
    assert_eq!(
        storer
            .get("gitrepository/flux-system/podinfo/latest.bin")
            .unwrap()
            .unwrap()
            .revision,
        "r5"
    );
}

/// Equal timestamps never make GC keep or drop the wrong artifact: the
/// recording order decides.
#[test]
fn gc_with_equal_timestamps_uses_recording_order() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    record(&storer, &store, 4);
    for (file, seq) in [("1.bin", 0), ("2.bin", 1), ("3.bin", 2)] {
        backdate(&h, file, 1_700_000_000, Some(seq));
    }
    gc(&storer, 3, None);
    assert_eq!(files(&storer), ["2.bin", "3.bin", "4.bin"]);
}

/// Blobs the storer created are freed with their last artifact; blobs that
/// others stored are not; removing an object removes all its artifacts.
#[test]
fn removal_frees_only_unreferenced_storer_blobs() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("f"), b"shared").unwrap();
    let mine = storer
        .reconcile_artifact(
            &repo("u"),
            "r1",
            "f",
            Source::File(&work.path().join("f")),
            &[],
        )
        .unwrap();
    let other = Object::new("Bucket", "ns", "b", "u2");
    storer
        .reconcile_artifact(&other, "r1", "f", Source::Blob(&mine.digest), &[])
        .unwrap();
    let theirs = store.put(b"someone else's").unwrap();
    storer
        .reconcile_artifact(&repo("u"), "r2", "g", Source::Blob(&theirs), &[])
        .unwrap();

    assert_eq!(storer.remove_object(&repo("u")).unwrap().len(), 2);
    assert!(
        store.info(&mine.digest).is_ok(),
        "still referenced by the bucket"
    );
    assert!(store.info(&theirs).is_ok(), "not created by the storer");
    assert!(
        !h.path()
            .join("artifacts/gitrepository/flux-system/podinfo")
            .exists()
    );
    assert!(matches!(
        storer.remove_object(&repo("u")),
        Err(Error::NotFound)
    ));
    storer.remove_object(&other).unwrap();
    assert!(
        matches!(store.info(&mine.digest), Err(Error::NotFound)),
        "freed with its last artifact"
    );
}

/// Verification catches changed bytes; GC drops such artifacts.
#[test]
fn verify_catches_corruption_and_gc_drops_it() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    record(&storer, &store, 2);
    let first = storer
        .get("gitrepository/flux-system/podinfo/1.bin")
        .unwrap()
        .unwrap();
    storer.verify(&first.path).unwrap();
    let blob = h
        .path()
        .join("blobs/sha256")
        .join(first.digest.trim_start_matches("sha256:"));
    std::fs::write(&blob, b"artifact X").unwrap();
    assert!(matches!(
        storer.verify(&first.path),
        Err(Error::FailedPrecondition(_))
    ));
    let removed = gc(&storer, 10, None);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].path, first.path);
    assert!(matches!(
        storer.verify("gitrepository/flux-system/podinfo/9.bin"),
        Err(Error::NotFound)
    ));
}

/// The artifact lock is exclusive across handles; reconcile waits for it.
#[test]
fn artifact_lock_contention() {
    let h = Harness::new(open_embedded);
    let (one, two) = (h.store().storer(), h.store().storer());
    let held = one.lock(&repo("u"), Duration::ZERO).unwrap();
    assert!(matches!(
        two.lock(&repo("u"), Duration::ZERO),
        Err(Error::Unavailable)
    ));
    let started = std::time::Instant::now();
    let waited = two.lock(&repo("u"), Duration::from_millis(300));
    assert!(
        matches!(waited, Err(Error::Unavailable)),
        "{:?}",
        waited.map(drop)
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    two.lock(&Object::new("Bucket", "ns", "other", "u"), Duration::ZERO)
        .unwrap();
    drop(held);
    two.lock(&repo("u"), Duration::ZERO).unwrap();
}

/// A crafted archive of files: each entry's raw name and content.
fn evil_archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<Entry<'_>> = entries.iter().map(|(n, d)| Entry::File(n, d)).collect();
    tar_gz(&entries)
}

/// Extraction writes the tree back, honours sub-paths and whiteouts, and
/// refuses escapes and oversize archives before writing anything.
#[test]
fn extract_round_trips_and_refuses_escapes_and_oversize() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree(&src);
    let a = storer
        .reconcile_artifact(
            &repo("u"),
            "r1",
            "a.tar.gz",
            Source::Directory(&src, ArchiveOptions::default()),
            &[],
        )
        .unwrap();
    let out = work.path().join("out");
    let n = storer
        .extract(&a.path, "", &out, &ExtractOptions::default())
        .unwrap();
    assert_eq!(n, 6 + 13 + 100_000 + 5);
    assert_eq!(
        std::fs::read(out.join("src/deep/data.bin")).unwrap(),
        kist_tests::bytes(100_000, 1)
    );
    assert_eq!(
        std::fs::read_link(out.join("src/link.rs")).unwrap(),
        Path::new("main.rs")
    );
    let sub = work.path().join("sub");
    storer
        .extract(&a.path, "src/deep", &sub, &ExtractOptions::default())
        .unwrap();
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 1);
    assert!(sub.join("data.bin").exists());
    let capped = ExtractOptions {
        max_size: 1000,
        whiteouts: false,
    };
    let none = work.path().join("none");
    assert!(matches!(
        storer.extract(&a.path, "", &none, &capped),
        Err(Error::TooLarge(_))
    ));
    assert_eq!(
        std::fs::read_dir(&none).unwrap().count(),
        0,
        "nothing written"
    );

    for name in ["../escape", "/etc/evil", "a/../../escape"] {
        let d = store
            .put(&evil_archive(&[("ok", b"fine"), (name, b"evil")]))
            .unwrap();
        let e = storer
            .reconcile_artifact(&repo("u"), "evil", "evil.tar.gz", Source::Blob(&d), &[])
            .unwrap();
        let dest = work.path().join("dest");
        let err = storer.extract(&e.path, "", &dest, &ExtractOptions::default());
        assert!(
            matches!(err, Err(Error::InvalidArgument(_))),
            "{name}: {err:?}"
        );
        assert!(!dest.join("ok").exists(), "{name}: nothing written");
        assert!(!work.path().join("escape").exists());
    }

    let d = store
        .put(&evil_archive(&[("dir/.wh.gone", b""), ("dir/new", b"n")]))
        .unwrap();
    let w = storer
        .reconcile_artifact(&repo("u"), "w", "w.tar.gz", Source::Blob(&d), &[])
        .unwrap();
    let layer = work.path().join("layer");
    std::fs::create_dir_all(layer.join("dir")).unwrap();
    std::fs::write(layer.join("dir/gone"), b"x").unwrap();
    storer
        .extract(
            &w.path,
            "",
            &layer,
            &ExtractOptions {
                whiteouts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(!layer.join("dir/gone").exists());
    assert!(layer.join("dir/new").exists());
    assert!(!layer.join("dir/.wh.gone").exists());
}

/// Reading an artifact's bytes gives exactly the archive that was recorded.
#[test]
fn artifact_bytes_read_back() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let d = store.put(&kist_tests::bytes(3 << 20, 9)).unwrap();
    let a = storer
        .reconcile_artifact(&repo("u"), "r", "big.bin", Source::Blob(&d), &[])
        .unwrap();
    let (artifact, mut reader) = storer
        .open("gitrepository/flux-system/podinfo/latest.bin")
        .unwrap();
    assert_eq!(artifact.path, a.path);
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    assert_eq!(sha256(&bytes), d);
}

/// GC walks every artifact: no silent stop at 1,000 files (the anchor's
/// walk stopped there).
#[test]
fn gc_handles_more_than_a_thousand_artifacts() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    record(&storer, &store, 1);
    let files_dir = h
        .path()
        .join("artifacts/gitrepository/flux-system/podinfo/files");
    let template: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files_dir.join("1.bin")).unwrap()).unwrap();
    for i in 0..1100u64 {
        let mut record = template.clone();
        record["seq"] = (i + 10).into();
        record["revision"] = format!("planted-{i}").into();
        std::fs::write(
            files_dir.join(format!("p{i}.bin")),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
    }
    assert_eq!(storer.list(&[]).unwrap().len(), 1101);
    let removed = gc(&storer, 2, None);
    assert_eq!(removed.len(), 1099);
    let left = files(&storer);
    assert_eq!(
        left,
        ["1.bin", "p1099.bin"],
        "the current one and the newest other"
    );
}

/// Reconciles of one object from several threads serialise on its lock:
/// every artifact is recorded, none lost, and all verify.
#[test]
fn concurrent_reconciles_serialise() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let store = h.store();
            std::thread::spawn(move || {
                let d = store.put(format!("content {i}").as_bytes()).unwrap();
                store
                    .storer()
                    .reconcile_artifact(
                        &repo("u"),
                        &format!("r{i}"),
                        &format!("{i}.bin"),
                        Source::Blob(&d),
                        &[],
                    )
                    .unwrap()
            })
        })
        .collect();
    let recorded: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let storer = store.storer();
    assert_eq!(storer.list(&[]).unwrap().len(), 6);
    for a in &recorded {
        storer.verify(&a.path).unwrap();
    }
    let current = storer
        .get("gitrepository/flux-system/podinfo/latest.bin")
        .unwrap()
        .unwrap();
    assert!(recorded.iter().any(|a| a.path == current.path));
}

/// `fsck --repair` running beside archives never removes a live build's
/// temporary file (builds hold its lock), so every archive succeeds.
#[test]
fn fsck_leaves_live_archives_alone() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("data"), kist_tests::bytes(2 << 20, 5)).unwrap();
    store.put(b"lays the store out").unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let (store, done) = (h.store(), done.clone());
        std::thread::spawn(move || {
            let mut problems = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                problems += store.check(true).unwrap().count();
            }
            problems
        })
    };
    for i in 0..8 {
        std::fs::write(work.path().join("i"), i.to_string()).unwrap();
        store
            .storer()
            .archive(work.path(), &ArchiveOptions::default())
            .unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        checker.join().unwrap(),
        0,
        "fsck saw no problem in a live build"
    );
}
