//! containerd's snapshotter testsuite (snapshots/testsuite), case by case,
//! on kist's snapshots through the real component, each mounting for real
//! (as root) and checking what the mounts show.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kist::{Error, SnapshotKind, Snapshots};
use kist_tests::trees::{Mounted, assert_same, require_root, snapshot_trees};
use kist_tests::{Harness, open_embedded};

/// The testsuite's `opt`: every snapshot carries a gc.root label.
const ROOT: (&str, &str) = ("containerd.io/gc.root", "2026-11-26T00:00:00Z");

fn setup() -> (Harness, Snapshots) {
    require_root();
    let h = Harness::new(open_embedded);
    let s = h.store().snapshots();
    (h, s)
}

fn write(root: &Path, path: &str, data: &str, mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(root: &Path, path: &str, mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn remove_all(root: &Path, path: &str) {
    let p = root.join(path.trim_start_matches('/'));
    if p.is_dir() {
        std::fs::remove_dir_all(p).unwrap();
    } else {
        std::fs::remove_file(p).unwrap();
    }
}

/// Prepares `key` over `parent`, mounts it and runs `apply` in it.
fn prepare_and_apply(s: &Snapshots, key: &str, parent: Option<&str>, apply: impl Fn(&Path)) {
    let mounts = s.prepare(key, parent, &[ROOT]).unwrap();
    assert!(!mounts.is_empty(), "prepare gives mounts");
    let m = Mounted::new(&mounts);
    apply(m.path());
}

/// containerd's `checkSnapshots`: each applier becomes a committed layer
/// over the previous one, and a view of it must show exactly what applying
/// all appliers so far to a plain directory gives.
fn check_snapshots(s: &Snapshots, appliers: &[fn(&Path)]) {
    let reference = tempfile::tempdir().unwrap();
    std::fs::set_permissions(reference.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut parent: Option<String> = None;
    for (i, apply) in appliers.iter().enumerate() {
        let key = format!("preparing-{i}");
        prepare_and_apply(s, &key, parent.as_deref(), apply);
        let name = format!("committed-{i}");
        s.commit(&name, &key, &[ROOT]).unwrap();
        apply(reference.path());
        let view = s.view(&format!("view-{i}"), Some(&name), &[ROOT]).unwrap();
        let m = Mounted::new(&view);
        assert_same(m.path(), reference.path());
        parent = Some(name);
    }
}

#[test]
fn basic() {
    let (_h, s) = setup();
    let initial = |p: &Path| {
        write(p, "/foo", "foo\n", 0o777);
        mkdir(p, "/a/b/c", 0o755);
    };
    let diff = |p: &Path| {
        write(p, "/bar", "bar\n", 0o777);
        write(p, "/foo", "bar\n", 0o777);
        remove_all(p, "/a/b");
    };
    prepare_and_apply(&s, "preparing", None, initial);
    s.commit("committed", "preparing", &[ROOT]).unwrap();
    let si = s.stat("committed").unwrap();
    assert_eq!(
        (si.parent.as_deref(), si.kind),
        (None, SnapshotKind::Committed)
    );
    assert!(
        matches!(s.stat("preparing"), Err(Error::NotFound)),
        "the key goes at commit"
    );

    let expected = tempfile::tempdir().unwrap();
    std::fs::set_permissions(expected.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    initial(expected.path());
    {
        let m = Mounted::new(&s.prepare("nextlayer", Some("committed"), &[ROOT]).unwrap());
        assert_same(m.path(), expected.path());
        diff(m.path());
    }
    let ni = s.stat("nextlayer").unwrap();
    assert_eq!(
        (ni.parent.as_deref(), ni.kind),
        (Some("committed"), SnapshotKind::Active)
    );
    s.commit("committed-next", "nextlayer", &[ROOT]).unwrap();
    let si2 = s.stat("committed-next").unwrap();
    assert_eq!(
        (si2.parent.as_deref(), si2.kind),
        (Some("committed"), SnapshotKind::Committed)
    );
    let walked = s.walk(&[]).unwrap();
    let walked = format!("{walked:?}");
    assert!(
        walked.contains(&format!("{si:?}")) && walked.contains(&format!("{si2:?}")),
        "walk gives what stat gives"
    );

    diff(expected.path());
    {
        let m = Mounted::new(
            &s.view("nextnextlayer", Some("committed-next"), &[ROOT])
                .unwrap(),
        );
        assert_same(m.path(), expected.path());
    }
    s.remove("nextnextlayer").unwrap();
    assert!(matches!(
        s.remove("committed"),
        Err(Error::FailedPrecondition(_))
    ));
    s.remove("committed-next").unwrap();
    s.remove("committed").unwrap();
}

#[test]
fn stat_active() {
    let (_h, s) = setup();
    prepare_and_apply(&s, "preparing", None, |p| write(p, "foo", "foo\n", 0o777));
    let si = s.stat("preparing").unwrap();
    assert_eq!(si.name, "preparing");
    assert_eq!((si.kind, si.parent), (SnapshotKind::Active, None));
}

#[test]
fn stat_committed() {
    let (_h, s) = setup();
    prepare_and_apply(&s, "preparing", None, |p| write(p, "foo", "foo\n", 0o777));
    s.commit("committed", "preparing", &[ROOT]).unwrap();
    let si = s.stat("committed").unwrap();
    assert_eq!(si.name, "committed");
    assert_eq!((si.kind, si.parent), (SnapshotKind::Committed, None));
}

#[test]
fn transitivity() {
    let (_h, s) = setup();
    prepare_and_apply(&s, "preparing", None, |p| write(p, "foo", "foo\n", 0o777));
    s.commit("snapA", "preparing", &[ROOT]).unwrap();
    prepare_and_apply(&s, "next", Some("snapA"), |p| {
        write(p, "foo", "foo bar\n", 0o777)
    });
    s.commit("snapB", "next", &[ROOT]).unwrap();
    let b = s.stat("snapB").unwrap();
    assert_eq!(b.parent.as_deref(), Some("snapA"));
    assert_eq!(s.stat(b.parent.as_deref().unwrap()).unwrap().parent, None);
}

#[test]
fn prepare_view() {
    let (_h, s) = setup();
    s.prepare("preparing", None, &[ROOT]).unwrap();
    s.commit("snapA", "preparing", &[ROOT]).unwrap();
    s.prepare("newlayer", Some("snapA"), &[ROOT]).unwrap();
    assert!(matches!(
        s.view("newlayer", Some("snapA"), &[ROOT]),
        Err(Error::AlreadyExists)
    ));
    s.prepare("prepLayer", Some("snapA"), &[ROOT]).unwrap();
    assert!(matches!(
        s.prepare("prepLayer", Some("snapA"), &[ROOT]),
        Err(Error::AlreadyExists)
    ));
    s.view("viewLayer", Some("snapA"), &[ROOT]).unwrap();
    assert!(matches!(
        s.view("viewLayer", Some("snapA"), &[ROOT]),
        Err(Error::AlreadyExists)
    ));
    // And the parent rules.
    assert!(matches!(
        s.prepare("x", Some("missing"), &[]),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        s.prepare("y", Some("newlayer"), &[]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        s.commit("z", "viewLayer", &[]),
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        s.commit("snapA", "newlayer", &[]),
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(
        s.commit("w", "missing", &[]),
        Err(Error::NotFound)
    ));
}

/// The testsuite's base set: c1 <- c2 <- a1, a2, v1 (of c2), v2.
fn base_snapshots(s: &Snapshots) {
    s.prepare("c1-a", None, &[ROOT]).unwrap();
    s.commit("c1", "c1-a", &[ROOT]).unwrap();
    s.prepare("c2-a", Some("c1"), &[ROOT]).unwrap();
    s.commit("c2", "c2-a", &[ROOT]).unwrap();
    s.prepare("a1", Some("c2"), &[ROOT]).unwrap();
    s.prepare("a2", None, &[ROOT]).unwrap();
    s.view("v1", Some("c2"), &[ROOT]).unwrap();
    s.view("v2", None, &[ROOT]).unwrap();
}

fn labels(info: &kist::SnapshotInfo) -> Vec<(String, String)> {
    info.labels
        .iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn update() {
    let (_h, s) = setup();
    let t1 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    base_snapshots(&s);
    let cases = [
        ("c1", SnapshotKind::Committed, None),
        ("c2", SnapshotKind::Committed, Some("c1")),
        ("a1", SnapshotKind::Active, Some("c2")),
        ("a2", SnapshotKind::Active, None),
        ("v1", SnapshotKind::View, Some("c2")),
        ("v2", SnapshotKind::View, None),
    ];
    for (name, kind, parent) in cases {
        let mut st = s.stat(name).unwrap();
        assert!(st.created_at.seconds >= t1, "{name}: created now");
        let at = |t: kist::Datetime| (t.seconds, t.nanoseconds);
        assert_eq!(
            at(st.created_at),
            at(st.updated_at),
            "{name}: not updated yet"
        );
        assert_eq!((st.kind, st.parent.as_deref()), (kind, parent), "{name}");
        let created = st.created_at;
        let expected = [("l1", "v1"), ("l2", "v2"), ("l3", "v3"), ROOT];
        st.parent = Some("doesnotexist".into());
        st.labels = kist::labels(&expected);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let st = s.update(&st, &[]).unwrap();
        assert_eq!(at(st.created_at), at(created), "{name}: created stays");
        assert!(at(st.updated_at) > at(created), "{name}: updated moves");
        assert_eq!(
            (st.kind, st.parent.as_deref()),
            (kind, parent),
            "{name}: only labels change"
        );
        assert_eq!(labels(&st), owned(&expected));

        let mut st = st;
        st.labels = kist::labels(&[("l1", "updated"), ("l4", "v4")]);
        let st = s.update(&st, &["labels.l1", "labels.l2"]).unwrap();
        assert_eq!(labels(&st), owned(&[("l1", "updated"), ("l3", "v3"), ROOT]));

        let mut st = st;
        st.labels = kist::labels(&[("l4", "v4"), ROOT]);
        let st = s.update(&st, &["labels"]).unwrap();
        assert_eq!(labels(&st), owned(&[("l4", "v4"), ROOT]));

        let mut st = st;
        st.parent = Some("doesnotexist".into());
        assert!(matches!(
            s.update(&st, &["parent"]),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn remove() {
    let (_h, s) = setup();
    s.prepare("committed-a", None, &[ROOT]).unwrap();
    s.commit("committed-1", "committed-a", &[ROOT]).unwrap();
    s.prepare("reuse-1", Some("committed-1"), &[ROOT]).unwrap();
    s.remove("reuse-1").unwrap();
    s.view("reuse-1", Some("committed-1"), &[ROOT]).unwrap();
    s.remove("reuse-1").unwrap();
    s.prepare("reuse-1", None, &[ROOT]).unwrap();
    s.remove("committed-1").unwrap();
    s.commit("committed-1", "reuse-1", &[ROOT]).unwrap();
    assert!(matches!(s.remove("missing"), Err(Error::NotFound)));
}

#[test]
fn walk() {
    let (_h, s) = setup();
    base_snapshots(&s);
    let names = |filters: &[&str]| -> Vec<String> {
        s.walk(filters)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    assert_eq!(names(&[]), ["a1", "a2", "c1", "c2", "v1", "v2"]);
    assert_eq!(names(&["kind==committed"]), ["c1", "c2"]);
    assert_eq!(
        names(&["kind==view", "kind==active"]),
        ["a1", "a2", "v1", "v2"]
    );
    assert_eq!(names(&["parent==c2"]), ["a1", "v1"]);
    assert_eq!(names(&["name==c1"]), ["c1"]);
    // As containerd's: every snapshot has a parent field, empty when it
    // has none (containerd finds a remote snapshot with `parent==""`).
    assert_eq!(names(&["parent==\"\""]), ["a2", "c1", "v2"]);
    assert_eq!(names(&["parent!=\"\""]), ["a1", "c2", "v1"]);
    let mut a2 = s.stat("a2").unwrap();
    a2.labels = kist::labels(&[("team", "x")]);
    s.update(&a2, &["labels.team"]).unwrap();
    assert_eq!(names(&["labels.team==x"]), ["a2"]);
    assert_eq!(names(&["labels.\"containerd.io/gc.root\""]).len(), 6);
    assert!(matches!(s.walk(&["=="]), Err(Error::InvalidArgument(_))));
}

#[test]
fn layer_file_update() {
    let (_h, s) = setup();
    check_snapshots(
        &s,
        &[
            |p| {
                write(p, "/foo", "foo\n", 0o777);
                mkdir(p, "/a", 0o755);
                write(p, "/a/bar", "bar\n", 0o644);
            },
            |p| {
                write(p, "/foo", "foo\nbar\n", 0o777);
                write(p, "/a/bar", "bar\nbaz\n", 0o600);
            },
            |p| {
                write(p, "/foo", "baz\n", 0o644);
                std::fs::set_permissions(p.join("a"), std::fs::Permissions::from_mode(0o700))
                    .unwrap();
            },
        ],
    );
}

#[test]
fn remove_directory_in_lower_layer() {
    let (_h, s) = setup();
    check_snapshots(
        &s,
        &[
            |p| {
                mkdir(p, "/lib", 0o700);
                write(p, "/lib/hidden", "hidden", 0o644);
            },
            |p| remove_all(p, "/lib"),
            |p| {
                mkdir(p, "/lib", 0o755);
                write(p, "/lib/not-hidden", "not-hidden", 0o644);
            },
            |p| write(p, "/lib/newfile", "new", 0o644),
        ],
    );
}

#[test]
fn chown() {
    let (_h, s) = setup();
    check_snapshots(
        &s,
        &[
            |p| {
                mkdir(p, "/opt", 0o711);
                mkdir(p, "/opt/a", 0o700);
                write(p, "/opt/a/b", "x", 0o644);
            },
            |p| {
                std::os::unix::fs::chown(p.join("opt"), Some(1), Some(1)).unwrap();
                std::os::unix::fs::chown(p.join("opt/a/b"), Some(2), Some(3)).unwrap();
            },
            |p| write(p, "/opt/a/c", "c", 0o644),
        ],
    );
}

#[test]
fn directory_permission_on_commit() {
    let (_h, s) = setup();
    check_snapshots(
        &s,
        &[
            |p| {
                mkdir(p, "/dir-1", 0o700);
                mkdir(p, "/dir-2", 0o700);
                std::os::unix::fs::chown(p.join("dir-2"), Some(10), Some(20)).unwrap();
                mkdir(p, "/dir-3", 0o750);
            },
            |p| {
                write(p, "/dir-1/f", "f", 0o644);
                mkdir(p, "/dir-2/sub", 0o755);
                std::fs::set_permissions(p.join("dir-3"), std::fs::Permissions::from_mode(0o1777))
                    .unwrap();
            },
        ],
    );
}

#[test]
fn remove_intermediate_snapshot() {
    let (_h, s) = setup();
    prepare_and_apply(&s, "base", None, |_| {});
    s.commit("committed-base", "base", &[ROOT]).unwrap();
    s.prepare("intermediate", Some("committed-base"), &[ROOT])
        .unwrap();
    s.commit("committed-inter", "intermediate", &[ROOT])
        .unwrap();
    s.prepare("toplayer", Some("committed-inter"), &[ROOT])
        .unwrap();
    assert!(matches!(
        s.remove("committed-inter"),
        Err(Error::FailedPrecondition(_))
    ));
    assert!(
        s.stat("committed-inter").is_ok(),
        "a refused removal removes nothing"
    );
    s.remove("toplayer").unwrap();
    s.remove("committed-inter").unwrap();
    s.remove("committed-base").unwrap();
}

#[test]
fn deleted_files_in_child_snapshot() {
    let (_h, s) = setup();
    check_snapshots(
        &s,
        &[
            |p| {
                write(p, "/foo", "foo\n", 0o777);
                write(p, "/foobar", "foobar\n", 0o777);
            },
            |p| remove_all(p, "/foobar"),
            |_| {},
        ],
    );
}

#[test]
fn move_file_from_lower_layer() {
    let (_h, s) = setup();
    check_snapshots(
        &s,
        &[
            |p| {
                mkdir(p, "/dir1", 0o700);
                write(p, "/dir1/f1", "Hello", 0o644);
                mkdir(p, "/dir2", 0o700);
                write(p, "/dir2/f2", "...", 0o644);
            },
            |p| {
                mkdir(p, "/dir3", 0o700);
                write(p, "/dir3/f1", "Hello", 0o644);
                remove_all(p, "/dir1");
                std::fs::hard_link(p.join("dir2/f2"), p.join("dir3/f2")).unwrap();
                remove_all(p, "/dir2/f2");
            },
        ],
    );
}

/// `mv`: a rename, or where overlay refuses to rename a directory that
/// is in a lower layer (EXDEV, without `redirect_dir`), a copy and a removal.
fn mv(root: &Path, from: &str, to: &str) {
    let (from, to) = (root.join(from), root.join(to));
    let status = std::process::Command::new("mv")
        .arg(&from)
        .arg(&to)
        .status()
        .unwrap();
    assert!(status.success(), "mv {} {}", from.display(), to.display());
}

#[test]
fn rename() {
    let (_h, s) = setup();
    check_snapshots(
        &s,
        &[
            |p| {
                mkdir(p, "/dir1", 0o700);
                mkdir(p, "/somefiles", 0o700);
                write(p, "/somefiles/f1", "was here first!", 0o644);
                write(p, "/somefiles/f2", "nothing interesting", 0o644);
            },
            |p| {
                mv(p, "dir1", "dir2");
                write(p, "/somefiles/f1-overwrite", "new content 1", 0o644);
                std::fs::rename(p.join("somefiles/f1-overwrite"), p.join("somefiles/f1")).unwrap();
                std::fs::rename(p.join("somefiles/f2"), p.join("somefiles/f3")).unwrap();
            },
            |p| mv(p, "somefiles", "moved"),
        ],
    );
}

#[test]
fn view_readonly() {
    let (_h, s) = setup();
    s.prepare("preparing", None, &[ROOT]).unwrap();
    s.commit("committed", "preparing", &[ROOT]).unwrap();
    let m = Mounted::new(&s.view("view", Some("committed"), &[ROOT]).unwrap());
    let err = std::fs::write(m.join("testfile"), "testcontent").expect_err("a view is read-only");
    assert_eq!(err.raw_os_error(), Some(30), "EROFS, got {err}");
    drop(m);
    s.remove("view").unwrap();
    s.remove("committed").unwrap();
    // A view of several layers is an overlay without an upper: read-only too.
    s.prepare("p2", None, &[]).unwrap();
    s.commit("c-1", "p2", &[]).unwrap();
    s.prepare("p3", Some("c-1"), &[]).unwrap();
    s.commit("c-2", "p3", &[]).unwrap();
    let m = Mounted::new(&s.view("v2", Some("c-2"), &[]).unwrap());
    assert!(std::fs::write(m.join("t"), "x").is_err());
}

#[test]
fn stat_in_walk() {
    let (_h, s) = setup();
    base_snapshots(&s);
    for info in s.walk(&[]).unwrap() {
        assert_eq!(
            format!("{:?}", s.stat(&info.name).unwrap()),
            format!("{info:?}")
        );
    }
}

#[test]
fn close_twice() {
    let (h, s) = setup();
    s.prepare("closeTwice-prepare", None, &[ROOT]).unwrap();
    s.commit("closeTwice", "closeTwice-prepare", &[ROOT])
        .unwrap();
    s.remove("closeTwice").unwrap();
    // Closing is dropping the handles, twice over; a new host sees the
    // same state and works on.
    let t = s.clone();
    drop(s);
    drop(t);
    let s = h.store().snapshots();
    assert!(s.walk(&[]).unwrap().is_empty());
    s.prepare("again", None, &[]).unwrap();
}

#[test]
fn root_permission() {
    let (_h, s) = setup();
    let m = Mounted::new(&s.prepare("preparing", None, &[ROOT]).unwrap());
    let mode = std::fs::metadata(m.path()).unwrap().mode() & 0o777;
    assert_eq!(
        mode, 0o755,
        "an empty snapshot's root is 0755, got {mode:o}"
    );
}

#[test]
fn mount_128_layers() {
    let (_h, s) = setup();
    let mut parent: Option<String> = None;
    for i in 0..128 {
        let key = format!("default/1/extract-{i} sha256:{}", "a".repeat(64));
        prepare_and_apply(&s, &key, parent.as_deref(), |p| {
            std::fs::write(p.join("top-most"), format!("layer {i}")).unwrap();
            std::fs::write(p.join(format!("layer-{i}")), "").unwrap();
        });
        let name = format!("sha256:{i:064}");
        s.commit(&name, &key, &[]).unwrap();
        parent = Some(name);
    }
    let mounts = s.prepare("top", parent.as_deref(), &[]).unwrap();
    let lowerdir = mounts[0]
        .options
        .iter()
        .find(|o| o.starts_with("lowerdir="))
        .unwrap();
    assert_eq!(lowerdir.matches(':').count(), 127, "128 lower layers");
    assert!(
        mounts[0].options.join(",").len() > 4096,
        "with absolute paths the options pass a page: the long-chain path is what is tested"
    );
    let m = Mounted::new(&mounts);
    assert_eq!(
        std::fs::read_to_string(m.join("top-most")).unwrap(),
        "layer 127"
    );
    for i in 0..128 {
        assert!(
            m.join(format!("layer-{i}")).exists(),
            "layer {i} is in the chain"
        );
    }
    std::fs::write(m.join("written"), "by the container").unwrap();
    drop(m);
    let usage = s.usage("top").unwrap();
    assert!(
        usage.inodes >= 2 && usage.size > 0,
        "usage counts the upper only: {usage:?}"
    );
    assert!(usage.inodes < 10, "parents are excluded: {usage:?}");
}

/// What a collection removed of kind snapshot.
fn collected_snapshots(store: &kist::Store) -> Vec<String> {
    store
        .retention()
        .collect(false)
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|r| r.kind == kist::RemovedKind::Snapshot)
        .map(|r| r.name)
        .collect()
}

#[test]
fn snapshots_join_the_retention_graph() {
    require_root();
    let h = Harness::new(open_embedded);
    let store = h.store();
    let lease = store.leases().create(Some("pull"), None, &[]).unwrap();
    let leased = store.with_lease(&lease.id).snapshots();
    leased.prepare("extract", None, &[]).unwrap();
    leased.commit("layer", "extract", &[]).unwrap();
    leased.prepare("extract-2", None, &[]).unwrap();
    leased.commit("referenced", "extract-2", &[]).unwrap();
    let s = store.snapshots();
    s.prepare("mine", None, &[]).unwrap();
    s.prepare("container", Some("layer"), &[]).unwrap();
    assert_eq!(s.stat("layer").unwrap().holders, ["lease/pull"]);
    // A blob keeps a snapshot through containerd's label.
    let config = store
        .put_with(
            b"{}",
            None,
            &[("containerd.io/gc.ref.snapshot.kist", "referenced")],
        )
        .unwrap();
    assert!(
        collected_snapshots(&store).is_empty(),
        "the lease holds them"
    );

    store.leases().delete(&lease.id).unwrap();
    assert!(
        collected_snapshots(&store).is_empty(),
        "a child and a label keep them"
    );
    s.remove("container").unwrap();
    assert_eq!(
        collected_snapshots(&store),
        ["layer"],
        "nothing keeps the parent now"
    );
    store.delete(&config).unwrap();
    assert_eq!(
        collected_snapshots(&store),
        ["referenced"],
        "the label's blob was released"
    );
    let left: Vec<String> = s.walk(&[]).unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(left, ["mine"], "what `default` holds stays");
    assert_eq!(snapshot_trees(h.path()).len(), 1, "trees went too");
}

/// The updates in the store's snapshot journal: one JSON array of
/// changes per line after the header.
fn journal_updates(root: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(root.join("snapshots/snapshots.journal")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The records the store at `root` has: its base file with its journal
/// replayed over it, as any reader reads them.
fn replayed_records(root: &Path) -> serde_json::Map<String, serde_json::Value> {
    let base: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("snapshots/snapshots.json")).unwrap())
            .unwrap();
    let mut items = base["items"].as_object().unwrap().clone();
    for update in journal_updates(root) {
        for change in update.as_array().unwrap() {
            if let Some(set) = change.get("set") {
                items.insert(set[0].as_str().unwrap().to_owned(), set[1].clone());
            } else {
                items.remove(change["remove"].as_str().unwrap());
            }
        }
    }
    items
}

fn names(s: &Snapshots) -> Vec<String> {
    let mut names: Vec<String> = s.walk(&[]).unwrap().into_iter().map(|i| i.name).collect();
    names.sort();
    names
}

/// Proves: snapshot records are a base file plus a journal of updates. A
/// call appends one line for all it changed (a commit's move from key to
/// name is one line, so a crash never leaves neither), a call that fails
/// appends nothing, hundreds of updates fold into the base while another
/// instance keeps reading the same records, and a store whose metadata is
/// only the file earlier versions wrote (`next` and `items`) opens with
/// its snapshots and gives new ones fresh trees.
#[test]
fn snapshot_records_are_a_journaled_base() {
    let (h, s) = setup();
    s.prepare("a-active", None, &[]).unwrap();
    let before = journal_updates(h.path()).len();
    s.commit("a", "a-active", &[]).unwrap();
    let updates = journal_updates(h.path());
    assert_eq!(updates.len(), before + 1, "a commit is one update");
    let changes = updates.last().unwrap().as_array().unwrap();
    assert_eq!(
        changes.len(),
        2,
        "the key goes and the name comes: {changes:?}"
    );

    let journal = h.path().join("snapshots/snapshots.journal");
    let size = std::fs::metadata(&journal).unwrap().len();
    assert!(matches!(
        s.prepare("a", None, &[]),
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(
        s.commit("b", "missing", &[]),
        Err(Error::NotFound)
    ));
    assert!(s.prepare("b", Some("missing"), &[]).is_err());
    assert!(matches!(s.remove("missing"), Err(Error::NotFound)));
    assert_eq!(
        std::fs::metadata(&journal).unwrap().len(),
        size,
        "failed calls append nothing"
    );

    let other = open_embedded(h.path()).snapshots();
    for i in 0..300 {
        let parent = (i % 10 != 0).then(|| format!("n-{}", i - 1));
        s.prepare(&format!("k-{i}"), parent.as_deref(), &[])
            .unwrap();
        s.commit(&format!("n-{i}"), &format!("k-{i}"), &[]).unwrap();
        if i % 50 == 0 {
            assert_eq!(
                names(&other),
                names(&s),
                "after {i}: another instance agrees"
            );
        }
    }
    assert!(
        journal_updates(h.path()).len() < 300,
        "the journal was folded into the base"
    );
    assert_eq!(names(&other), names(&s));

    // What an earlier kist left: the records in snapshots.json alone.
    let records = replayed_records(h.path());
    assert_eq!(records.len(), 301);
    let top = records
        .values()
        .map(|r| r["id"].as_u64().unwrap())
        .max()
        .unwrap();
    let old = serde_json::json!({"next": top + 1, "items": records});
    std::fs::write(h.path().join("snapshots/snapshots.json"), old.to_string()).unwrap();
    std::fs::remove_file(&journal).unwrap();
    let reopened = open_embedded(h.path()).snapshots();
    assert_eq!(
        names(&reopened),
        names(&s),
        "an older store's records are read"
    );
    let trees = snapshot_trees(h.path());
    reopened.prepare("c", Some("n-299"), &[]).unwrap();
    let new: Vec<String> = snapshot_trees(h.path())
        .into_iter()
        .filter(|t| !trees.contains(t))
        .collect();
    assert_eq!(new.len(), 1, "one new tree: {new:?}");
    assert!(
        new[0].parse::<u64>().unwrap() > top,
        "{new:?} is above {top}"
    );
    assert!(
        kist_tests::fsck(&h.store(), false).is_empty(),
        "fsck is clean"
    );
}
