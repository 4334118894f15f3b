//! containerd with kist as its content store and snapshotter: a private
//! containerd (Debian's, with runc) whose proxy plugins are a `kist serve
//! --containerd` socket, both daemons in temp dirs and stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kist::Store;
use kist_tests::containerd::{Containerd, KistSocket as Plugin};
use kist_tests::oci::{Image, busybox_layer};
use kist_tests::trees::require_root;
use kist_tests::{Harness, bytes, fsck, kist_bin, open_embedded, sha256};

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn busybox(dir: &Path) -> (Image, PathBuf) {
    let image = Image::with_layers(vec![busybox_layer()], None);
    let archive = dir.join("busybox.tar");
    image.write_archive(&archive, "docker.io/library/busybox:kist");
    (image, archive)
}

const NAME: &str = "docker.io/library/busybox:kist";

/// `ctr images import --snapshotter kistsnap ARCHIVE`, which must succeed.
fn import(c: &Containerd, archive: &Path, what: &str) {
    let archive = archive.to_str().unwrap();
    ok(
        c.ctr(&["images", "import", "--snapshotter", "kistsnap", archive]),
        what,
    );
}

/// `ctr run --rm --snapshotter kistsnap IMAGE ID /bin/busybox echo WORD`;
/// its output.
fn run_echo(c: &Containerd, image: &str, id: &str, word: &str) -> String {
    let args = [
        "run",
        "--rm",
        "--snapshotter",
        "kistsnap",
        image,
        id,
        "/bin/busybox",
        "echo",
        word,
    ];
    ok(c.ctr(&args), "run")
}

/// containerd imports an image into kist and runs a container on kist's
/// snapshots; `ctr snapshots` sees them; the content is containerd's.
#[test]
fn containerd_imports_and_runs_busybox_on_kist() {
    require_root();
    let h = Harness::new(open_embedded);
    let plugin = Plugin::start(&h);
    let c = Containerd::with_kist(&plugin.socket);
    let (image, archive) = busybox(c.dir());
    import(&c, &archive, "import");
    let hello = run_echo(&c, NAME, "t1", "hello");
    assert_eq!(hello, "hello\n");
    let store = Store::open(&plugin.store).unwrap();
    for blob in image.blobs() {
        let info = store.info(&blob.digest).unwrap();
        assert!(
            info.holders.contains(&"containerd".to_owned()),
            "{}: {:?}",
            blob.digest,
            info.holders
        );
    }
    let listed = ok(
        c.ctr(&["snapshots", "--snapshotter", "kistsnap", "ls"]),
        "snapshots ls",
    );
    let chain = listed
        .lines()
        .nth(1)
        .expect("a snapshot")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(chain.starts_with("sha256:"), "{listed}");
    let info = ok(
        c.ctr(&["snapshots", "--snapshotter", "kistsnap", "info", &chain]),
        "info",
    );
    assert!(info.contains("\"Kind\": \"Committed\""), "{info}");
    let usage = ok(
        c.ctr(&["snapshots", "--snapshotter", "kistsnap", "usage", &chain]),
        "usage",
    );
    assert!(usage.contains(&chain), "{usage}");
    ok(
        c.ctr(&[
            "snapshots",
            "--snapshotter",
            "kistsnap",
            "prepare",
            "mine",
            &chain,
        ]),
        "prepare",
    );
    let mounts = ok(
        c.ctr(&[
            "snapshots",
            "--snapshotter",
            "kistsnap",
            "mounts",
            "/mnt",
            "mine",
        ]),
        "mounts",
    );
    assert!(
        mounts.contains("overlay") && mounts.contains(h.path().to_str().unwrap()),
        "{mounts}"
    );
    // kist sees the same snapshots (under containerd's `<ns>/<id>/` keys),
    // held by containerd.
    let walked = store.snapshots().walk(&[]).unwrap();
    let committed = walked
        .iter()
        .find(|i| i.name.ends_with(&chain))
        .expect("the layer's snapshot in kist");
    assert_eq!(committed.holders, ["containerd"]);
}

/// containerd's garbage collection through the proxy removes only what
/// containerd holds: kist's own blobs, and blobs both hold, stay.
#[test]
fn containerd_gc_leaves_kist_content_alone() {
    require_root();
    let h = Harness::new(open_embedded);
    let plugin = Plugin::start(&h);
    let store = h.store();
    let native = store
        .put(b"stored with kist, before containerd came")
        .unwrap();
    let c = Containerd::with_kist(&plugin.socket);
    let (image, archive) = busybox(c.dir());
    let layer = &image.layers[0].digest;
    import(&c, &archive, "import");
    store.hold(layer).unwrap(); // kist's default holder shares the layer
    let ingest = "kist-native-ingest";
    let mut w = store.writer(ingest, None, None).unwrap();
    w.write_all(b"half").unwrap();
    drop(w);
    ok(c.ctr(&["images", "rm", "--sync", NAME]), "images rm --sync");
    assert!(
        store.info(&native).is_ok(),
        "kist's own blob survives containerd's GC"
    );
    assert_eq!(
        store.info(layer).unwrap().holders,
        ["default"],
        "the shared layer stays, kist's alone"
    );
    assert!(
        matches!(store.info(&image.config.digest), Err(kist::Error::NotFound)),
        "containerd's config is released"
    );
    assert_eq!(
        store.status(ingest).unwrap().offset,
        4,
        "kist's ingest is not aborted"
    );
    assert!(
        store.snapshots().walk(&[]).unwrap().is_empty(),
        "containerd's snapshots are removed"
    );
    assert!(fsck(&store, false).is_empty());
}

/// `ctr content ingest/ls/get/rm/active` through kist; an ingest whose
/// `ctr` is killed resumes.
#[test]
fn ctr_content_commands_go_through_kist() {
    require_root();
    let h = Harness::new(open_embedded);
    let plugin = Plugin::start(&h);
    let c = Containerd::with_kist(&plugin.socket);
    let data = bytes(8 << 20, 7);
    let digest = sha256(&data);
    let file = c.dir().join("data");
    std::fs::write(&file, &data).unwrap();
    let ingest = |reference: &str| {
        let mut cmd = Command::new(kist_tests::peer("ctr"));
        cmd.arg("--address")
            .arg(c.dir().join("containerd.sock"))
            .args(["content", "ingest", "--expected-digest", &digest, reference])
            .stdin(std::fs::File::open(&file).unwrap());
        cmd
    };
    // A ctr killed mid-way leaves an active ingest; the next one resumes it.
    let mut slow = ingest("resumable")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = slow.stdin.take().unwrap();
        stdin.write_all(&data[..3 << 20]).unwrap();
        stdin.flush().unwrap();
        let start = Instant::now();
        while !ok(c.ctr(&["content", "active"]), "active").contains("resumable") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no active ingest"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        slow.kill().unwrap();
        slow.wait().unwrap();
    }
    let status = ingest("resumable").output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let listed = ok(c.ctr(&["content", "ls", "-q"]), "ls");
    assert!(listed.contains(&digest), "{listed}");
    let got = c.ctr(&["content", "get", &digest]);
    assert!(got.status.success());
    assert_eq!(
        sha256(&got.stdout),
        digest,
        "ctr content get gives the bytes back"
    );
    ok(c.ctr(&["content", "rm", &digest]), "rm");
    assert!(!ok(c.ctr(&["content", "ls", "-q"]), "ls").contains(&digest));
    assert!(
        ok(c.ctr(&["content", "active"]), "active").lines().count() <= 1,
        "no ingest left"
    );
}

/// `ctr images pull` from kist's own registry into kist through containerd.
#[test]
fn containerd_pulls_from_kist_serve_into_kist() {
    require_root();
    let registry = Harness::new(open_embedded);
    let server = kist_tests::Server::start(registry.path());
    let host = server.base.split("://").nth(1).unwrap().to_owned();
    let (image, _) = busybox(registry.path().parent().unwrap());
    let layout = registry.path().parent().unwrap().join("layout");
    image.write_layout(&layout, "v1");
    let reference = format!("{host}/lib/busybox:v1");
    ok(
        Command::new(kist_tests::peer("skopeo"))
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap(),
        "skopeo copy into kist serve",
    );
    let h = Harness::new(open_embedded);
    let plugin = Plugin::start(&h);
    let c = Containerd::with_kist(&plugin.socket);
    ok(
        c.ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "kistsnap",
            &reference,
        ]),
        "pull",
    );
    let hello = run_echo(&c, &reference, "t2", "pulled");
    assert_eq!(hello, "pulled\n");
    assert!(
        Store::open(&plugin.store)
            .unwrap()
            .info(&image.layers[0].digest)
            .is_ok()
    );
}

/// `kist serve` killed during an import: containerd reports an error, the
/// import after a restart succeeds, and the store is clean.
#[test]
fn a_killed_plugin_recovers() {
    require_root();
    let h = Harness::new(open_embedded);
    let mut plugin = Plugin::start(&h);
    let c = Containerd::with_kist(&plugin.socket);
    // A big layer so the kill lands mid-import.
    let big = kist_tests::tar_gz(&[kist_tests::Entry::File("big", &bytes(64 << 20, 3))]);
    let image = Image::with_layers(vec![busybox_layer(), big], None);
    let archive = c.dir().join("big.tar");
    image.write_archive(&archive, NAME);
    let interrupted = Command::new(kist_tests::peer("ctr"))
        .arg("--address")
        .arg(c.dir().join("containerd.sock"))
        .args(["images", "import", "--snapshotter", "kistsnap"])
        .arg(&archive)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    plugin.kill();
    let failed = interrupted.wait_with_output().unwrap();
    assert!(
        !failed.status.success(),
        "the import fails while kist is gone"
    );
    plugin.restart(&h);
    import(&c, &archive, "import again");
    let hello = run_echo(&c, NAME, "t3", "back");
    assert_eq!(hello, "back\n");
    let store = h.store();
    let problems = fsck(&store, true);
    assert!(
        problems.iter().all(|p| p.repaired.is_some()),
        "{problems:?}"
    );
    assert!(fsck(&store, false).is_empty());
}

/// The socket is the owner's alone (0600); a second server on a socket in
/// use is refused, and a stale socket (its server killed) is replaced.
#[test]
fn the_socket_is_private_and_never_stolen() {
    let h = Harness::new(open_embedded);
    let mut first = Plugin::start(&h);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&first.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let second = Command::new(kist_bin())
        .arg("--store")
        .arg(h.path())
        .args(["serve", "--no-http", "--containerd"])
        .arg(&first.socket)
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "a second server on a live socket is refused"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("something listens"));
    assert!(
        std::os::unix::net::UnixStream::connect(&first.socket).is_ok(),
        "the first still serves"
    );
    first.kill(); // SIGKILL: the socket file stays, stale
    assert!(first.socket.exists());
    first.restart(&h);
    assert!(
        std::os::unix::net::UnixStream::connect(&first.socket).is_ok(),
        "a stale socket is replaced"
    );
}
