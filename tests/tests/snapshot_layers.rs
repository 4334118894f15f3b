//! Layers into snapshots and back: `apply` of real layers (a busybox image
//! built from Debian's busybox-static, run in a chroot; a three-layer
//! chain with deletions and opaque directories in tar, tar+gzip and
//! tar+zstd), `diff` round trips, and hostile layers that must leave
//! nothing behind.

use std::process::Command;

use kist::{Error, Snapshots, Store};
use kist_tests::layer_tar::Layer;
use kist_tests::trees::{Mounted, assert_same, describe, require_root};
use kist_tests::{Harness, open_embedded, peer};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn setup() -> (Harness, Store, Snapshots) {
    require_root();
    let h = Harness::new(open_embedded);
    let store = h.store();
    let s = store.snapshots();
    (h, store, s)
}

/// Applies `blob` into a new snapshot over `parent` and commits it as
/// `name`; returns the diff id.
fn unpack(
    store: &Store,
    name: &str,
    parent: Option<&str>,
    blob: &[u8],
    media_type: &str,
) -> String {
    let s = store.snapshots();
    let digest = store.put(blob).unwrap();
    let key = format!("extract {name}");
    s.prepare(&key, parent, &[]).unwrap();
    let diff_id = s.apply(&key, &digest, media_type).unwrap();
    s.commit(name, &key, &[]).unwrap();
    diff_id
}

#[test]
fn a_busybox_image_runs_on_its_snapshots() {
    let (_h, store, s) = setup();
    let layer = kist_tests::oci::busybox_layer();
    let diff_id = unpack(&store, "busybox", None, &layer, GZIP);
    let mut gz = flate2::read::GzDecoder::new(&layer[..]);
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut gz, &mut tar).unwrap();
    assert_eq!(
        diff_id,
        kist_tests::sha256(&tar),
        "the diff id is the uncompressed tar's digest"
    );

    let m = Mounted::new(&s.prepare("container", Some("busybox"), &[]).unwrap());
    let out = Command::new("chroot")
        .arg(m.path())
        .args([
            "/bin/sh",
            "-c",
            "echo made > /tmp/file && ls /bin | wc -l && cat /tmp/file",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "busybox in the snapshot (needs Debian's busybox-static): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let applets: usize = text.lines().next().unwrap().trim().parse().unwrap();
    assert!(applets > 100, "the applets are there: {text}");
    assert!(text.ends_with("made\n"));
    drop(m);
    // What the container wrote is in its own tree, not the image's.
    let usage = s.usage("container").unwrap();
    assert!(
        usage.inodes >= 3,
        "the container's upper holds /tmp/file: {usage:?}"
    );
    let image = s.view("image", Some("busybox"), &[]).unwrap();
    let m = Mounted::new(&image);
    assert!(!m.join("tmp/file").exists());
}

/// Three layers: a base, one that deletes and replaces (whiteouts, an
/// opaque directory), one that adds back; in three compressions.
fn chain(store: &Store) {
    let base = Layer::new()
        .dir("etc", 0o755)
        .file("etc/os-release", b"ID=kist\n", 0o644)
        .file("etc/passwd", b"root:x:0:0\n", 0o644)
        .dir("var/lib/app", 0o750)
        .file("var/lib/app/data", b"v1", 0o600)
        .file("var/lib/app/old", b"old", 0o600)
        .owned("home/user/notes", b"mine", 1000, 1000)
        .symlink("usr/bin/env", "/bin/busybox")
        .hardlink("etc/passwd-", "etc/passwd");
    unpack(store, "l1", None, &base.gzip(), GZIP);
    let second = Layer::new()
        .file("etc/.wh.passwd-", b"", 0)
        .dir("var/lib/app", 0o750)
        .file("var/lib/app/.wh..wh..opq", b"", 0)
        .file("var/lib/app/data", b"v2", 0o600)
        .file("home/.wh.user", b"", 0)
        .file("etc/os-release", b"ID=kist\nVERSION=2\n", 0o644);
    unpack(store, "l2", Some("l1"), &second.tar(), TAR);
    let third = Layer::new()
        .dir("home/user", 0o700)
        .file("home/user/new", b"new", 0o644)
        .file("etc/.wh.os-release", b"", 0);
    unpack(store, "l3", Some("l2"), &third.zstd(), ZSTD);
}

#[test]
fn a_chain_of_layers_mounts_with_deletions_and_opaque_directories() {
    let (_h, store, s) = setup();
    chain(&store);
    let m = Mounted::new(&s.view("view", Some("l3"), &[]).unwrap());
    let tree = describe(m.path());
    let shown: Vec<String> = tree.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let expected = [
        "etc dir 755 0:0",
        "etc/passwd file \"root:x:0:0\\n\" 644 0:0",
        "home dir 755 0:0",
        "home/user dir 700 0:0",
        "home/user/new file \"new\" 644 0:0",
        "usr dir 755 0:0",
        "usr/bin dir 755 0:0",
        "usr/bin/env link -> /bin/busybox 0 0:0",
        "var dir 755 0:0",
        "var/lib dir 755 0:0",
        "var/lib/app dir 750 0:0",
        "var/lib/app/data file \"v2\" 600 0:0",
    ];
    assert_eq!(shown, expected, "the chain's view");
    drop(m);
    // Each layer's own view.
    let m = Mounted::new(&s.view("v1", Some("l1"), &[]).unwrap());
    assert_eq!(std::fs::read(m.join("var/lib/app/old")).unwrap(), b"old");
    let notes = std::fs::metadata(m.join("home/user/notes")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&notes),
        1000,
        "owners are kept"
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(m.join("etc/passwd")).unwrap()),
        2
    );
    let mtime = std::os::unix::fs::MetadataExt::mtime(
        &std::fs::metadata(m.join("etc/os-release")).unwrap(),
    );
    assert_eq!(mtime, 1_700_000_000, "times are kept");
}

#[test]
fn diffs_are_deterministic_and_apply_back_to_the_same_tree() {
    let (_h, store, s) = setup();
    chain(&store);
    {
        let m = Mounted::new(&s.prepare("work", Some("l3"), &[]).unwrap());
        let p = m.path();
        std::fs::write(p.join("etc/passwd"), "root:x:0:0\nuser:x:1000:1000\n").unwrap();
        std::fs::remove_dir_all(p.join("var/lib/app")).unwrap();
        std::fs::create_dir(p.join("var/lib/app")).unwrap();
        std::fs::write(p.join("var/lib/app/fresh"), "fresh").unwrap();
        std::fs::remove_file(p.join("usr/bin/env")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", p.join("usr/bin/relative")).unwrap();
        std::fs::hard_link(p.join("home/user/new"), p.join("home/user/new-link")).unwrap();
        std::os::unix::fs::chown(p.join("home/user/new"), Some(7), Some(8)).unwrap();
        let status = Command::new(peer("busybox"))
            .args(["mkfifo"])
            .arg(p.join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let first = s.diff("work").unwrap();
    let again = s.diff("work").unwrap();
    assert_eq!(
        first.digest, again.digest,
        "the same tree gives the same bytes"
    );
    assert_eq!(first.diff_id, again.diff_id);

    s.prepare("replay", Some("l3"), &[]).unwrap();
    let diff_id = s.apply("replay", &first.digest, GZIP).unwrap();
    assert_eq!(
        diff_id, first.diff_id,
        "apply computes the diff id diff stored"
    );
    assert_eq!(
        s.diff("replay").unwrap().digest,
        first.digest,
        "a replayed diff diffs the same"
    );
    s.commit("replayed", "replay", &[]).unwrap();
    s.commit("worked", "work", &[]).unwrap();
    let a = Mounted::new(&s.view("va", Some("worked"), &[]).unwrap());
    let b = Mounted::new(&s.view("vb", Some("replayed"), &[]).unwrap());
    assert_same(b.path(), a.path());
    assert!(
        !a.join("var/lib/app/data").exists(),
        "the opaque directory hides the lower data"
    );
}

/// Applies a hostile layer and checks it is refused, typed, with nothing
/// left: the snapshot's tree empty, no build left, nothing outside.
fn refused(store: &Store, h: &Harness, name: &str, layer: Vec<u8>, max: u64) -> Error {
    let s = store.snapshots();
    let digest = store.put(&layer).unwrap();
    s.prepare(name, None, &[]).unwrap();
    let err = s
        .apply_with_limit(name, &digest, "", max)
        .expect_err(&format!("{name} must be refused"));
    assert!(
        matches!(err, Error::InvalidArgument(_) | Error::TooLarge(_)),
        "{name}: a typed refusal, got {err:?}"
    );
    let usage = s.usage(name).unwrap();
    assert_eq!(usage.inodes, 1, "{name}: the tree is left empty");
    let outside: Vec<_> = std::fs::read_dir(h.path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["store"], "{name}: nothing beside the store");
    for dir in std::fs::read_dir(h.path().join("snapshots")).unwrap() {
        let dir = dir.unwrap().path();
        assert!(
            !dir.join("apply").exists(),
            "{name}: no build left in {}",
            dir.display()
        );
    }
    err
}

#[test]
fn hostile_layers_are_refused_and_leave_nothing() {
    let (h, store, _s) = setup();
    let cap = 1 << 30;
    use tar::EntryType::{Block, Char, Link, Regular, Symlink};
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "absolute",
            Layer::new().raw(Regular, "/etc/evil", "", b"x").tar(),
        ),
        (
            "dotdot",
            Layer::new().raw(Regular, "../evil", "", b"x").tar(),
        ),
        (
            "inner-dotdot",
            Layer::new().raw(Regular, "a/../../evil", "", b"x").tar(),
        ),
        (
            "through-symlink",
            Layer::new()
                .symlink("l", "/etc")
                .raw(Regular, "l/evil", "", b"x")
                .tar(),
        ),
        (
            "through-relative-symlink",
            Layer::new()
                .symlink("up", "../../..")
                .raw(Regular, "up/evil", "", b"x")
                .tar(),
        ),
        (
            "hardlink-outside",
            Layer::new().raw(Link, "pw", "/etc/passwd", b"").tar(),
        ),
        (
            "hardlink-dotdot",
            Layer::new().raw(Link, "pw", "../../../blobs", b"").tar(),
        ),
        (
            "hardlink-unknown",
            Layer::new().raw(Link, "pw", "nothing", b"").tar(),
        ),
        (
            "hardlink-through-symlink",
            Layer::new()
                .symlink("l", "/etc")
                .raw(Link, "pw", "l/passwd", b"")
                .tar(),
        ),
        (
            "char-device",
            Layer::new().raw(Char, "dev/null", "", b"").tar(),
        ),
        (
            "block-device",
            Layer::new().raw(Block, "dev/sda", "", b"").tar(),
        ),
        (
            "whiteout-dotdot",
            Layer::new().raw(Regular, "a/.wh...", "", b"").tar(),
        ),
        (
            "symlink-then-dir",
            Layer::new()
                .symlink("d", "/tmp")
                .raw(Regular, "d/x/y", "", b"")
                .tar(),
        ),
        (
            "symlink-target-nul",
            Layer::new().raw(Symlink, "ok", "", b"").tar(),
        ),
    ];
    for (name, layer) in cases {
        refused(&store, &h, name, layer, cap);
    }
    // Tar bombs against the cap: large data, and many small entries.
    let big = Layer::new().file("big", &vec![0u8; 2 << 20], 0o644).gzip();
    let err = refused(&store, &h, "bomb-data", big, 1 << 20);
    assert!(matches!(err, Error::TooLarge(_)));
    let mut many = Layer::new();
    for i in 0..5000 {
        many = many.file(&format!("f{i}"), b"", 0o644);
    }
    let err = refused(&store, &h, "bomb-entries", many.tar(), 1 << 20);
    assert!(matches!(err, Error::TooLarge(_)));
}

#[test]
fn apply_needs_an_empty_active_snapshot() {
    let (_h, store, s) = setup();
    let layer = store
        .put(&Layer::new().file("a", b"a", 0o644).tar())
        .unwrap();
    s.prepare("p", None, &[]).unwrap();
    s.apply("p", &layer, TAR).unwrap();
    assert!(
        matches!(s.apply("p", &layer, TAR), Err(Error::FailedPrecondition(_))),
        "not empty"
    );
    s.commit("c", "p", &[]).unwrap();
    assert!(
        matches!(s.apply("c", &layer, TAR), Err(Error::FailedPrecondition(_))),
        "committed"
    );
    s.view("v", Some("c"), &[]).unwrap();
    assert!(
        matches!(s.apply("v", &layer, TAR), Err(Error::FailedPrecondition(_))),
        "a view"
    );
    s.prepare("q", None, &[]).unwrap();
    assert!(matches!(
        s.apply(
            "q",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            TAR
        ),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        s.apply("q", &layer, "application/json"),
        Err(Error::InvalidArgument(_))
    ));
    let garbage = store
        .put(b"not a tar at all, just some bytes that go on and on")
        .unwrap();
    assert!(matches!(
        s.apply("q", &garbage, GZIP),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        s.apply("missing", &layer, TAR),
        Err(Error::NotFound)
    ));
}

/// `kist snapshot ...`: ctr's argument order, JSON for every command, and
/// mount/umount performing the mounts.
#[test]
fn the_snapshot_cli_works_end_to_end() {
    require_root();
    let h = Harness::new(open_embedded);
    let kist = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(kist_tests::kist_bin())
            .arg("--store")
            .arg(h.path())
            .env_remove("KIST_STORE")
            .args(["--format", "json", "snapshot"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "snapshot {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let layer = Layer::new()
        .dir("etc", 0o755)
        .file("etc/motd", b"hello\n", 0o644)
        .gzip();
    let digest = h.store().put(&layer).unwrap();

    let mounts = kist(&["prepare", "extract", "--label", "team=x"]);
    assert_eq!(mounts[0]["type"], "bind");
    assert!(
        mounts[0]["source"].as_str().unwrap().starts_with('/'),
        "absolute paths"
    );
    let applied = kist(&["apply", "extract", &digest]);
    assert!(applied["diff_id"].as_str().unwrap().starts_with("sha256:"));
    kist(&["commit", "base", "extract"]);
    let mounts = kist(&["prepare", "work", "base"]);
    assert_eq!(mounts[0]["type"], "overlay");
    assert_eq!(kist(&["mounts", "work"]), mounts);
    let info = kist(&["info", "work"]);
    assert_eq!(
        (info[0]["parent"].as_str(), info[0]["kind"].as_str()),
        (Some("base"), Some("active"))
    );
    let target = tempfile::tempdir().unwrap();
    let t = target.path().to_str().unwrap();
    kist(&["mount", "work", t]);
    assert_eq!(
        std::fs::read(target.path().join("etc/motd")).unwrap(),
        b"hello\n"
    );
    std::fs::write(target.path().join("new"), "new").unwrap();
    kist(&["umount", t]);
    let layer = kist(&["diff", "work"]);
    assert!(layer["size"].as_u64().unwrap() > 0);
    kist(&["view", "look", "base"]);
    let labelled = kist(&["label", "work", "team=y", "stage=test"]);
    assert_eq!(labelled[0]["labels"]["stage"], "test");
    kist(&["label", "work", "stage="]);
    let listed = kist(&["ls", "labels.team==y"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(kist(&["ls", "kind==committed"])[0]["name"], "base");
    let usage = kist(&["usage", "work"]);
    assert!(usage[0]["inodes"].as_u64().unwrap() >= 2);
    assert_eq!(kist(&["usage"]).as_array().unwrap().len(), 3);
    // A parent with children is refused, with containerd's error.
    let out = Command::new(kist_tests::kist_bin())
        .arg("--store")
        .arg(h.path())
        .args(["snapshot", "rm", "base"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed precondition"));
    kist(&["rm", "work", "look", "base"]);
    std::fs::create_dir(h.path().join("snapshots/999")).unwrap();
    assert_eq!(kist(&["cleanup"])["removed"], 1);
    assert_eq!(kist(&["ls"]).as_array().unwrap().len(), 0);
}
