//! Defects a hostile pass found in round 1's kist (issue 19). Each test
//! reproduced its defect against that code before the fix went in.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use assert_cmd::Command as Cmd;
use kist::{ArchiveOptions, Error, ExtractOptions, Object, Source};
use kist_tests::{
    Entry, Harness, Server, bytes, fsck, interrupted_ingest, kist_bin, open_embedded, sha256,
    tar_gz,
};
use predicates::str::contains;
use serde_json::Value;

fn kist(store: &Path) -> Cmd {
    let mut c = Cmd::new(kist_bin());
    c.arg("--store").arg(store).env_remove("KIST_STORE");
    c
}

fn object() -> Object {
    Object::new("Bucket", "ns", "b", "u")
}

fn blob_file(h: &Harness, digest: &str) -> std::path::PathBuf {
    h.path()
        .join("blobs/sha256")
        .join(&digest["sha256:".len()..])
}

fn quarantined(h: &Harness) -> Vec<String> {
    let dir = h.path().join("quarantine/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// --- Data loss and integrity -----------------------------------------

/// A file rewritten with other bytes of the same size, its mtime put
/// back (`touch -r`), is never resumed into the old ingest: the digest is
/// the new content's, and the old partial ingest is gone.
#[test]
fn resume_of_a_rewritten_file_never_mixes_contents() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f");
    let old = bytes(64 << 20, 1);
    std::fs::write(&file, &old).unwrap();
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    interrupted_ingest(&store, h.path(), &[file.as_os_str()], old.len() as u64);

    let new = bytes(64 << 20, 2);
    std::fs::write(&file, &new).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    kist(h.path())
        .arg("ingest")
        .arg(&file)
        .assert()
        .success()
        .stdout(format!("{}\n", sha256(&new)));
    assert!(
        store.list_statuses(&[]).unwrap().is_empty(),
        "the stale partial ingest of the old content is left behind"
    );
}

/// With an explicit `--ref`, a resume first checks that the ingest holds
/// the source's first bytes, and starts over when it does not.
#[test]
fn resume_with_an_explicit_ref_checks_what_the_ingest_holds() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f");
    let old = bytes(64 << 20, 3);
    std::fs::write(&file, &old).unwrap();
    let args = ["--ref".as_ref(), "mine".as_ref(), file.as_os_str()];
    interrupted_ingest(&store, h.path(), &args, old.len() as u64);
    let new = bytes(64 << 20, 4);
    std::fs::write(&file, &new).unwrap();
    kist(h.path())
        .args(["ingest", "--ref", "mine"])
        .arg(&file)
        .assert()
        .success()
        .stdout(format!("{}\n", sha256(&new)))
        .stderr(contains("starting over"));
}

/// Names the layout cannot hold (a leading dot would hide the object from
/// every listing, `.tmp` is where archives are built) are refused.
#[test]
fn artifact_names_starting_with_a_dot_are_refused() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let d = store.put(b"bytes").unwrap();
    for (kind, namespace, name) in [
        ("Bucket", ".hidden", "b"),
        (".tmp", "ns", "b"),
        ("Bucket", "ns", ".b"),
        ("Bucket", "ns", "b."),
        ("Bucket", "-ns", "b"),
    ] {
        let o = Object::new(kind, namespace, name, "u");
        let r = storer.reconcile_artifact(&o, "r", "f.bin", Source::Blob(&d), &[]);
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{kind}/{namespace}/{name}: {r:?}"
        );
    }
    assert!(!h.path().join("artifacts/bucket").exists());
    assert!(!h.path().join("artifacts/.tmp/ns").exists());
}

/// `d/.wh..` and `d/.wh...` would white out `d/.` and `d/..` (the
/// destination itself): refused before anything is touched.
#[test]
fn whiteouts_of_dot_and_dot_dot_are_refused() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    std::fs::create_dir_all(dest.join("d")).unwrap();
    std::fs::write(dest.join("precious"), b"keep me").unwrap();
    let options = ExtractOptions {
        whiteouts: true,
        ..Default::default()
    };
    for whiteout in ["d/.wh..", "d/.wh...", ".wh..", ".wh.", "d/.wh./x"] {
        let archive = tar_gz(&[Entry::File("d/new", b"n"), Entry::File(whiteout, b"")]);
        let d = store.put(&archive).unwrap();
        let a = storer
            .reconcile_artifact(&object(), "r", "w.tar.gz", Source::Blob(&d), &[])
            .unwrap();
        let r = storer.extract(&a.path, "", &dest, &options);
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{whiteout}: {r:?}"
        );
        assert_eq!(std::fs::read(dest.join("precious")).unwrap(), b"keep me");
        assert!(!dest.join("d/new").exists(), "{whiteout}: nothing written");
    }
}

/// A truncated blob, or something that is not a regular file where a
/// blob should be, is replaced by the verified bytes when the content is
/// stored again (file, stdin, declared digest, library put), the damaged
/// copy moved to quarantine; reading a damaged blob is an error, never
/// short data with success.
#[test]
fn storing_content_again_heals_a_damaged_blob() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f");
    let data = bytes(1 << 20, 5);
    std::fs::write(&file, &data).unwrap();
    let d = sha256(&data);
    let truncate = || {
        std::fs::File::options()
            .write(true)
            .open(blob_file(&h, &d))
            .unwrap()
            .set_len(100)
            .unwrap();
    };
    let healed = |how: &str, copies: usize| {
        assert_eq!(std::fs::read(blob_file(&h, &d)).unwrap(), data, "{how}");
        assert_eq!(
            quarantined(&h).len(),
            copies,
            "{how}: the damaged copy is kept"
        );
    };
    kist(h.path()).arg("ingest").arg(&file).assert().success();

    truncate();
    kist(h.path())
        .args(["get", &d])
        .assert()
        .code(1)
        .stderr(contains("damaged"));
    let out = work.path().join("out");
    kist(h.path())
        .args(["get", &d, "-o"])
        .arg(&out)
        .assert()
        .code(1);
    assert!(!out.exists(), "a damaged blob is never written out");
    assert!(matches!(store.get(&d), Err(Error::Corrupt(_))));
    kist(h.path()).arg("ingest").arg(&file).assert().success();
    healed("ingest FILE", 1);

    truncate();
    kist(h.path())
        .args(["ingest", "-"])
        .write_stdin(data.clone())
        .assert()
        .success();
    healed("ingest -", 2);

    truncate();
    kist(h.path())
        .args(["ingest", "--expected-digest", &d])
        .arg(&file)
        .assert()
        .success();
    healed("ingest --expected-digest", 3);

    truncate();
    store.put(&data).unwrap();
    healed("put", 4);

    std::fs::remove_file(blob_file(&h, &d)).unwrap();
    std::fs::create_dir(blob_file(&h, &d)).unwrap();
    store.put(&data).unwrap();
    healed("a directory in the blob's place", 5);
}

/// Two repairs of the same digest in one second keep both damaged copies.
#[test]
fn quarantine_keeps_every_damaged_copy() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let d = store.put(b"precious").unwrap();
    for round in 0..3 {
        std::fs::write(blob_file(&h, &d), format!("rot {round}")).unwrap();
        assert_eq!(fsck(&store, true).len(), 1);
        store.put(b"precious").unwrap();
    }
    let copies = quarantined(&h);
    assert_eq!(copies.len(), 3, "{copies:?}");
    let mut contents: Vec<Vec<u8>> = copies
        .iter()
        .map(|n| std::fs::read(h.path().join("quarantine/sha256").join(n)).unwrap())
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        [b"rot 0".to_vec(), b"rot 1".to_vec(), b"rot 2".to_vec()]
    );
}

// --- Security ------------------------------------------------------------

/// `l -> .` then `m -> l/..` looks one level deep but resolves to the
/// parent: archive and extract resolve links through earlier links.
#[test]
fn symlinks_are_resolved_through_earlier_links() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"f").unwrap();
    symlink(".", src.join("l")).unwrap();
    symlink("l/..", src.join("m")).unwrap();
    let r = storer.archive(&src, &ArchiveOptions::default());
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    // A link through a link that stays inside is still fine.
    std::fs::remove_file(src.join("m")).unwrap();
    std::fs::create_dir(src.join("sub")).unwrap();
    symlink("../l/f", src.join("sub/ok")).unwrap();
    storer.archive(&src, &ArchiveOptions::default()).unwrap();

    let dest = work.path().join("dest");
    for entries in [
        vec![Entry::Symlink("l", "."), Entry::Symlink("m", "l/..")],
        vec![
            Entry::Dir("a"),
            Entry::Symlink("a/up", ".."),
            Entry::Symlink("b", "a/up/.."),
        ],
        vec![Entry::Symlink("l", "."), Entry::File("l/../escaped", b"x")],
        vec![Entry::Symlink("d", "."), Entry::Symlink("d/e", "../..")],
    ] {
        let d = store.put(&tar_gz(&entries)).unwrap();
        let a = storer
            .reconcile_artifact(&object(), "r", "l.tar.gz", Source::Blob(&d), &[])
            .unwrap();
        let r = storer.extract(&a.path, "", &dest, &ExtractOptions::default());
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
        assert!(!dest.join("l").exists() && !dest.join("b").exists());
        assert!(!work.path().join("escaped").exists());
    }
}

/// A store with one artifact of `size` random bytes, served as `PATH`.
fn store_with_artifact(h: &Harness, size: usize) {
    let store = h.store();
    let d = store.put(&bytes(size, 6)).unwrap();
    store
        .storer()
        .reconcile_artifact(&object(), "r", "big.bin", Source::Blob(&d), &[])
        .unwrap();
}

const PATH: &str = "bucket/ns/b/big.bin";

/// A connection that asks for `path` and never reads the answer (the
/// server may refuse it: one address has only so many connections).
fn stalled(server: &Server, path: &str) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = write!(s, "GET /{path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    kb * 1024
}

/// 600 clients that request a 32 MiB artifact and never read it neither
/// freeze `kist serve` nor swell it: another client (another address)
/// downloads the artifact in full meanwhile.
#[test]
fn stalled_downloads_do_not_freeze_serve() {
    let h = Harness::new(open_embedded);
    store_with_artifact(&h, 32 << 20);
    let server = Server::start(h.path());
    let stalls: Vec<TcpStream> = (0..600).map(|_| stalled(&server, PATH)).collect();
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .args(["--interface", "127.0.0.2"])
        .arg(server.url(PATH))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (32u64 << 20).to_string()
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let rss = rss(server.pid());
    assert!(rss < 400 << 20, "kist serve grew to {} MiB", rss >> 20);
    drop(stalls);
}

/// With a download stalled, SIGTERM stops `kist serve` within its
/// shutdown timeout, and a second signal stops it at once.
#[test]
fn shutdown_has_a_deadline_and_a_second_signal_exits() {
    let h = Harness::new(open_embedded);
    store_with_artifact(&h, 32 << 20);
    let signal = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        assert!(ok.unwrap().success());
    };
    let exits_within = |server: &mut Server, limit: Duration| {
        let started = Instant::now();
        while started.elapsed() < limit {
            if server.child().try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };

    let mut server = Server::start_with(h.path(), &["--shutdown-timeout", "1s"]);
    let _stall = stalled(&server, PATH);
    std::thread::sleep(Duration::from_millis(500));
    signal(server.pid());
    assert!(
        exits_within(&mut server, Duration::from_secs(5)),
        "ignored its deadline"
    );

    let mut server = Server::start(h.path());
    let _stall = stalled(&server, PATH);
    std::thread::sleep(Duration::from_millis(500));
    signal(server.pid());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !exits_within(&mut server, Duration::ZERO),
        "left at the first signal"
    );
    signal(server.pid());
    assert!(
        exits_within(&mut server, Duration::from_secs(2)),
        "second signal ignored"
    );
}

// --- Smaller defects -----------------------------------------------------

/// An archive that takes longer than the call deadline still completes
/// (its deadline grows with the tree), and a temporary file an earlier
/// build left behind is removed by the next one.
#[test]
fn long_archives_outlive_the_call_deadline_and_leave_no_temp_files() {
    let h = Harness::new(|dir| {
        kist::Store::builder(dir)
            .call_timeout(Duration::from_millis(300))
            .open()
            .unwrap()
    });
    let storer = h.store().storer();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("big"), bytes(96 << 20, 7)).unwrap();
    let started = Instant::now();
    storer
        .reconcile_artifact(
            &object(),
            "r",
            "a.tar.gz",
            Source::Directory(work.path(), ArchiveOptions::default()),
            &[],
        )
        .unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(300),
        "not a long archive"
    );

    let tmp = h.path().join("artifacts/.tmp");
    std::fs::write(tmp.join("1-2-0"), b"left by a crash").unwrap();
    storer
        .archive(work.path(), &ArchiveOptions::default())
        .unwrap();
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

/// A wrong declared digest drops the ingest `kist ingest FILE` made (a
/// plain retry then works), and a bad label fails before any byte is
/// copied.
#[test]
fn failed_ingests_leave_nothing_to_trip_over() {
    let h = Harness::new(open_embedded);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f");
    std::fs::write(&file, bytes(1 << 20, 8)).unwrap();
    let wrong = sha256(b"something else");
    kist(h.path())
        .args(["ingest", "--expected-digest", &wrong])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(contains("digest mismatch"));
    let store = h.store();
    assert!(store.list_statuses(&[]).unwrap().is_empty());
    kist(h.path()).arg("ingest").arg(&file).assert().success();

    let other = work.path().join("g");
    std::fs::write(&other, bytes(1 << 20, 9)).unwrap();
    kist(h.path())
        .args(["ingest", "--label", "a b=1"])
        .arg(&other)
        .assert()
        .code(1)
        .stderr(contains("label"));
    assert!(store.list_statuses(&[]).unwrap().is_empty());
}

/// An ingest nobody wrote to for a day is reported by fsck.
#[test]
fn fsck_reports_stale_ingests() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let mut w = store.writer("forgotten", None, None).unwrap();
    w.write_all(b"half").unwrap();
    drop(w);
    let ingest = std::fs::read_dir(h.path().join("ingest"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(ingest.join("data"))
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let problems = fsck(&store, false);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, kist::ProblemKind::StaleIngest);
    assert!(problems[0].detail.contains("forgotten"), "{problems:?}");
}

/// A path too long to be a ref still gets a default ref, so it can be
/// ingested (and resumed) without `--ref`.
#[test]
fn very_long_paths_get_a_default_ref() {
    let h = Harness::new(open_embedded);
    let work = tempfile::tempdir().unwrap();
    let mut dir = work.path().to_path_buf();
    for i in 0..12 {
        dir.push(format!("{i:02}-{}", "d".repeat(90)));
    }
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f");
    assert!(file.as_os_str().len() > 1100);
    std::fs::write(&file, b"deep").unwrap();
    kist(h.path())
        .arg("ingest")
        .arg(&file)
        .assert()
        .success()
        .stdout(format!("{}\n", sha256(b"deep")));
}

/// One damaged label file spoils neither the listing of the other blobs
/// nor a rewrite of that blob's labels.
#[test]
fn a_damaged_label_file_spoils_only_its_blob() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let digests: Vec<String> = (0..3)
        .map(|i| store.put_with(&[i], None, &[("n", "v")]).unwrap())
        .collect();
    let broken = &digests[1];
    std::fs::write(
        h.path()
            .join("labels/sha256")
            .join(&broken["sha256:".len()..]),
        b"{not json",
    )
    .unwrap();
    let out = kist(h.path())
        .args(["ls", "-q"])
        .assert()
        .code(1)
        .stderr(contains(&broken["sha256:".len()..]))
        .get_output()
        .stdout
        .clone();
    let listed = String::from_utf8(out).unwrap();
    for d in [&digests[0], &digests[2]] {
        assert!(listed.contains(d.as_str()), "{listed}");
    }
    kist(h.path())
        .args(["label", broken, "fixed=yes"])
        .assert()
        .success();
    let labels = store.info(broken).unwrap().labels;
    assert_eq!(labels.len(), 1);
    assert_eq!(
        (labels[0].key.as_str(), labels[0].value.as_str()),
        ("fixed", "yes")
    );
}

/// fsck reports store parts that are symlinks and goes on checking the
/// rest; a symlinked `locks` names itself in the error.
#[test]
fn fsck_reports_symlinked_store_parts() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    store.put(b"x").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("index.json"), b"{\"manifests\":[]}").unwrap();
    std::fs::remove_file(h.path().join("index.json")).unwrap();
    symlink(
        elsewhere.path().join("index.json"),
        h.path().join("index.json"),
    )
    .unwrap();
    std::fs::remove_dir(h.path().join("blobs/sha512")).unwrap();
    symlink(elsewhere.path(), h.path().join("blobs/sha512")).unwrap();
    std::fs::write(blob_file(&h, &sha256(b"x")), b"rot").unwrap();
    let out = kist(h.path())
        .arg("fsck")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("index.json"), "{printed}");
    assert!(printed.contains("blobs/sha512"), "{printed}");
    assert!(
        printed.contains("corrupt-blob"),
        "went on to the blobs: {printed}"
    );

    let other = Harness::new(open_embedded);
    std::fs::create_dir(elsewhere.path().join("locks")).unwrap();
    symlink(elsewhere.path().join("locks"), other.path().join("locks")).unwrap();
    kist(other.path())
        .args(["ingest", "-"])
        .write_stdin(b"x".to_vec())
        .assert()
        .code(1)
        .stderr(contains("locks"));
}

/// `get -o` creates files as the umask says and keeps an existing file's
/// mode.
#[test]
fn get_output_honours_the_umask_and_keeps_modes() {
    let h = Harness::new(open_embedded);
    let d = h.store().put(b"content").unwrap();
    let work = tempfile::tempdir().unwrap();
    let new = work.path().join("new");
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 022 && exec "$0" --store "$1" get "$2" -o "$3""#)
        .arg(kist_bin())
        .arg(h.path())
        .arg(&d)
        .arg(&new)
        .status()
        .unwrap();
    assert!(status.success());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&new), 0o644);
    let existing = work.path().join("existing");
    std::fs::write(&existing, b"old").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
    kist(h.path())
        .args(["get", &d, "-o"])
        .arg(&existing)
        .assert()
        .success();
    assert_eq!(mode(&existing), 0o640);
    assert_eq!(std::fs::read(&existing).unwrap(), b"content");
}

/// Flux OCIRepository revisions (`latest@sha256:...`) get a default file
/// name that is not the alias, and file names may contain `\`.
#[test]
fn awkward_revisions_and_file_names_archive() {
    let h = Harness::new(open_embedded);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join(r"back\slash"), b"b").unwrap();
    let revision = format!("latest@{}", sha256(b"r"));
    kist(h.path())
        .args(["artifact", "archive"])
        .arg(&src)
        .args([
            "--kind",
            "OCIRepository",
            "--namespace",
            "ns",
            "--name",
            "n",
        ])
        .args(["--revision", &revision])
        .assert()
        .success();
    let out = work.path().join("out");
    kist(h.path())
        .args(["artifact", "extract", "ocirepository/ns/n/latest.tar.gz"])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(std::fs::read(out.join(r"back\slash")).unwrap(), b"b");
}

/// Declaring a digest that is already stored skips reading the file, and
/// says so.
#[test]
fn an_already_stored_expected_digest_says_so() {
    let h = Harness::new(open_embedded);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f");
    std::fs::write(&file, b"stored").unwrap();
    let d = h.store().put(b"stored").unwrap();
    kist(h.path())
        .args(["ingest", "--expected-digest", &d])
        .arg(&file)
        .assert()
        .success()
        .stdout(format!("{d}\n"))
        .stderr(contains("already stored"));
}

/// `max-size` bounds the entries an extraction creates, not only their
/// bytes: each entry counts 512 bytes (its tar header).
#[test]
fn extraction_counts_entries_against_max_size() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let names: Vec<String> = (0..2000).map(|i| format!("e{i}")).collect();
    let entries: Vec<Entry<'_>> = names.iter().map(|n| Entry::File(n, b"")).collect();
    let d = store.put(&tar_gz(&entries)).unwrap();
    let a = store
        .storer()
        .reconcile_artifact(&object(), "r", "many.tar.gz", Source::Blob(&d), &[])
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let capped = ExtractOptions {
        max_size: 100 * 512,
        whiteouts: false,
    };
    let r = store.storer().extract(&a.path, "", work.path(), &capped);
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

/// What the README and `--help` promise is what the commands do.
#[test]
fn the_cli_does_what_it_says() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let a = store.put(b"a").unwrap();
    let b = store.put(b"b").unwrap();

    // Labels given when the content is stored already are applied.
    kist(h.path())
        .args(["ingest", "--label", "again=yes", "-"])
        .write_stdin(b"a".to_vec())
        .assert()
        .success();
    assert_eq!(store.info(&a).unwrap().labels.len(), 1);
    // The last change of a key wins, whatever it is.
    kist(h.path())
        .args(["label", &a, "k=1", "k="])
        .assert()
        .success();
    kist(h.path())
        .args(["label", &b, "k=3", "k=4"])
        .assert()
        .success();
    assert!(!store.info(&a).unwrap().labels.iter().any(|l| l.key == "k"));
    assert_eq!(store.info(&b).unwrap().labels[0].value, "4");
    // A usage error is not "not found".
    let usage = kist(h.path())
        .arg("bogus")
        .assert()
        .failure()
        .get_output()
        .clone();
    assert_ne!(usage.status.code(), Some(2));
    // One JSON document per command.
    for args in [
        vec!["rm", a.as_str(), b.as_str()],
        vec!["artifact", "verify"],
    ] {
        let out = kist(h.path())
            .args(["--format", "json"])
            .args(&args)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice::<Value>(&out)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out)));
    }
    // Label keys: the message says what is allowed.
    kist(h.path())
        .args(["ingest", "--label", "a b=1", "-"])
        .write_stdin(b"c".to_vec())
        .assert()
        .code(1)
        .stderr(contains("space"));
    // A huge label set is refused in one line, not a wasm backtrace.
    let huge = "v".repeat(130 << 20);
    let err = store.put_with(b"d", None, &[("k", &huge)]).unwrap_err();
    assert_eq!(err.to_string().lines().count(), 1, "{err}");
}

/// Paths, missing things and pipes: exit codes and messages name what is
/// wrong, and read-only commands create nothing.
#[test]
fn paths_and_pipes_behave() {
    let h = Harness::new(open_embedded);
    let work = tempfile::tempdir().unwrap();
    let d = h.store().put(&bytes(4 << 20, 10)).unwrap();

    // Read-only commands on a mistyped store create nothing.
    let typo = work.path().join("typo");
    for args in [vec!["ls"], vec!["fsck"], vec!["info", d.as_str()]] {
        kist(&typo)
            .args(&args)
            .assert()
            .failure()
            .stderr(contains("typo"));
        assert!(!typo.exists(), "{args:?} created a store");
    }
    // A store path that is a file is named in the error.
    let file = work.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    kist(&file)
        .arg("ls")
        .assert()
        .code(1)
        .stderr(contains("a-file"));
    // Artifacts: a missing one is "not found" and leaves no destination.
    kist(h.path())
        .args(["artifact", "verify", "bucket/ns/none/f.bin"])
        .assert()
        .code(2);
    let dest = work.path().join("dest");
    kist(h.path())
        .args(["artifact", "extract", "bucket/ns/none/f.tar.gz"])
        .arg(&dest)
        .assert()
        .code(2);
    assert!(!dest.exists());
    // `gc --kind` matches kinds as the paths spell them too.
    let storer = h.store().storer();
    let repo = Object::new("GitRepository", "ns", "r", "u");
    for rev in ["1", "2"] {
        let blob = h.store().put(rev.as_bytes()).unwrap();
        storer
            .reconcile_artifact(&repo, rev, &format!("{rev}.bin"), Source::Blob(&blob), &[])
            .unwrap();
    }
    kist(h.path())
        .args(["artifact", "gc", "--retain", "1", "--kind", "gitrepository"])
        .assert()
        .success();
    assert_eq!(storer.list(&[]).unwrap().len(), 1);
    // A closed pipe ends `get` quietly.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --store "$1" get "$2" | head -c 10 >/dev/null"#)
        .arg(kist_bin())
        .arg(h.path())
        .arg(&d)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Broken pipe"),
        "{out:?}"
    );
    // Process substitution and /dev/stdin are read as streams.
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#""$0" --store "$1" ingest <(printf substituted)"#)
        .arg(kist_bin())
        .arg(h.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sha256(b"substituted")
    );
    kist(h.path())
        .args(["ingest", "/dev/stdin"])
        .write_stdin(b"piped".to_vec())
        .assert()
        .success()
        .stdout(format!("{}\n", sha256(b"piped")));
}

/// `If-None-Match` compares weakly (RFC 9110), and a method other than
/// GET or HEAD on an artifact is 405 with `Allow`.
#[test]
fn serve_matches_etags_weakly_and_answers_405() {
    let h = Harness::new(open_embedded);
    store_with_artifact(&h, 1000);
    let server = Server::start(h.path());
    let etag = ureq::get(&server.url(PATH))
        .call()
        .unwrap()
        .header("etag")
        .unwrap()
        .to_owned();
    let weak = ureq::get(&server.url(PATH))
        .set("If-None-Match", &format!("W/{etag}"))
        .call()
        .unwrap();
    assert_eq!(weak.status(), 304);
    let post = match ureq::post(&server.url(PATH)).call() {
        Err(ureq::Error::Status(_, r)) | Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(post.status(), 405);
    assert_eq!(post.header("allow"), Some("GET,HEAD"));
    let mut rest = Vec::new();
    post.into_reader().read_to_end(&mut rest).unwrap();
}
