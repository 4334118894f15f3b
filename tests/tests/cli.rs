//! The `kist` binary: output, exit codes (0 ok, 1 error, 2 not found),
//! JSON for every command, and resuming interrupted ingests.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kist_tests::{Harness, bytes, interrupted_ingest, kist_bin, open_embedded, sha256};
use serde_json::Value;

fn kist(store: &Path) -> Command {
    let mut c = Command::new(kist_bin());
    c.arg("--store").arg(store).env_remove("KIST_STORE");
    c
}

fn json(store: &Path, args: &[&str]) -> Value {
    let out = kist(store)
        .args(["--format", "json"])
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out)))
}

/// Ingest prints the digest sha256sum would; get, get -o and info agree.
#[test]
fn ingest_get_info() {
    let h = Harness::new(open_embedded);
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("data");
    let data = bytes(3 << 20, 21);
    std::fs::write(&file, &data).unwrap();
    let digest = sha256(&data);
    let ingest_prints_digest = |extra: &[&str]| {
        kist(h.path())
            .arg("ingest")
            .args(extra)
            .arg(&file)
            .assert()
            .success()
            .stdout(format!("{digest}\n"));
    };
    ingest_prints_digest(&[]);
    kist(h.path())
        .args(["get", &digest])
        .assert()
        .success()
        .stdout(data.clone());
    let out = files.path().join("out");
    kist(h.path())
        .args(["get", &digest, "-o"])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let written = json(h.path(), &["get", &digest, "-o", out.to_str().unwrap()]);
    assert_eq!(written["size"].as_u64(), Some(data.len() as u64));
    // A device is written in place, never renamed over.
    let null = Path::new("/dev/null");
    kist(h.path())
        .args(["get", &digest, "-o"])
        .arg(null)
        .assert()
        .success();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &std::fs::metadata(null).unwrap().file_type()
    ));
    let info = json(h.path(), &["info", &digest]);
    assert_eq!(
        (info["digest"].as_str(), info["size"].as_u64()),
        (Some(digest.as_str()), Some(data.len() as u64))
    );
    kist(h.path())
        .args(["info", &digest])
        .assert()
        .success()
        .stdout(predicates::str::contains("size     3145728"));
    // Already stored: success, same digest; also when declared up front.
    ingest_prints_digest(&[]);
    ingest_prints_digest(&["--expected-digest", &digest]);
    kist(h.path())
        .args(["ingest", "-"])
        .write_stdin(b"from stdin".to_vec())
        .assert()
        .success()
        .stdout(format!("{}\n", sha256(b"from stdin")));
}

/// Errors are one line on stderr; not found exits 2, other errors 1.
#[test]
fn exit_codes_and_errors() {
    let h = Harness::new(open_embedded);
    let absent = sha256(b"absent");
    for args in [
        vec!["info", absent.as_str()],
        vec!["get", absent.as_str()],
        vec!["rm", absent.as_str()],
        vec!["abort", "no-such-ref"],
    ] {
        let out = kist(h.path())
            .args(&args)
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        assert_eq!(
            String::from_utf8(out).unwrap().lines().count(),
            1,
            "{args:?}"
        );
    }
    kist(h.path())
        .args(["info", "sha256:nothex"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("invalid argument"));
    kist(h.path())
        .args(["ls", "labels.a=="])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("filter"));
    kist(h.path())
        .args(["label", &absent, "novalue"])
        .assert()
        .code(1);
    // A wrong declared digest fails, and the ingest is kept for a retry.
    kist(h.path())
        .args([
            "ingest",
            "--ref",
            "wrong",
            "--expected-digest",
            &absent,
            "-",
        ])
        .write_stdin(b"content".to_vec())
        .assert()
        .code(1)
        .stderr(predicates::str::contains("digest mismatch"));
    assert_eq!(json(h.path(), &["active"])[0]["ref"], "wrong");
    kist(h.path()).args(["abort", "wrong"]).assert().success();
    assert_eq!(json(h.path(), &["active"]), Value::Array(vec![]));
}

/// ls with filters, labels set and removed, rm; JSON for each.
#[test]
fn labels_listing_and_removal() {
    let h = Harness::new(open_embedded);
    let a = sha256(b"a");
    let b = sha256(b"b");
    kist(h.path())
        .args(["ingest", "--label", "app=web", "--label", "tier=front", "-"])
        .write_stdin("a")
        .assert()
        .success();
    kist(h.path())
        .args(["ingest", "-"])
        .write_stdin("b")
        .assert()
        .success();
    kist(h.path())
        .args(["ls", "-q", "labels.app==web"])
        .assert()
        .success()
        .stdout(format!("{a}\n"));
    let listed = json(h.path(), &["ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let labelled = json(h.path(), &["label", &b, "app=db", "x.y=z"]);
    assert_eq!(labelled["labels"]["app"], "db");
    let labelled = json(h.path(), &["label", &b, "x.y="]);
    assert_eq!(labelled["labels"], serde_json::json!({"app": "db"}));
    let mut both = [a.clone(), b.clone()];
    both.sort();
    assert_eq!(
        json(h.path(), &["ls", "-q", "labels.app"]),
        serde_json::json!(both),
        "sorted by digest"
    );
    kist(h.path())
        .args(["ls"])
        .assert()
        .success()
        .stdout(predicates::str::contains("app=web,tier=front"));
    assert_eq!(json(h.path(), &["rm", &a])[0]["done"], a);
    kist(h.path())
        .args(["rm", &a, &b])
        .assert()
        .code(2)
        .stdout(format!("{b}\n"));
    kist(h.path())
        .args(["ls", "-q"])
        .assert()
        .success()
        .stdout("");
}

/// The store defaults to $KIST_STORE, else $XDG_DATA_HOME/kist.
#[test]
fn default_store_locations() {
    let h = Harness::new(open_embedded);
    let xdg = tempfile::tempdir().unwrap();
    let cases = [
        ("KIST_STORE", h.path(), h.path().to_path_buf()),
        ("XDG_DATA_HOME", xdg.path(), xdg.path().join("kist")),
    ];
    for (var, value, root) in cases {
        Command::new(kist_bin())
            .env_remove("KIST_STORE")
            .env(var, value)
            .args(["ingest", "-"])
            .write_stdin(var)
            .assert()
            .success();
        let blob = root.join("blobs/sha256").join(&sha256(var.as_bytes())[7..]);
        assert!(blob.is_file(), "{var}: no {}", blob.display());
    }
}

/// An ingest killed with SIGKILL half way resumes where it stopped when
/// the same command runs again: the first half is not sent twice.
#[test]
fn killed_stdin_ingest_resumes() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let data = bytes(4 << 20, 22);
    let mut child = std::process::Command::new(kist_bin())
        .arg("--store")
        .arg(h.path())
        .args(["ingest", "--ref", "killed", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(&data[..1 << 20])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.status("killed").map_or(true, |s| s.offset < 1 << 20) {
        assert!(Instant::now() < deadline, "the first half never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(store.status("killed").unwrap().offset, 1 << 20);
    kist(h.path())
        .args(["ingest", "--ref", "killed", "-"])
        .write_stdin(data.clone())
        .assert()
        .success()
        .stdout(format!("{}\n", sha256(&data)));
    assert!(store.list_statuses(&[]).unwrap().is_empty());
}

/// `kist ingest FILE` killed part way resumes from the ingest's offset
/// when re-run (the default ref follows the file).
#[test]
fn killed_file_ingest_resumes() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("big");
    let data = bytes(256 << 20, 23);
    std::fs::write(&file, &data).unwrap();
    let digest = sha256(&data);
    let offset = interrupted_ingest(&store, h.path(), &[file.as_os_str()], data.len() as u64);
    let active = json(h.path(), &["active"]);
    assert_eq!(active[0]["offset"].as_u64(), Some(offset));
    assert_eq!(active[0]["total"].as_u64(), Some(data.len() as u64));
    kist(h.path())
        .arg("ingest")
        .arg(&file)
        .assert()
        .success()
        .stdout(format!("{digest}\n"));
    assert!(
        store.list_statuses(&[]).unwrap().is_empty(),
        "the resumed ingest was consumed"
    );
}

/// `kist artifact`: archive, list, get, extract, verify, gc and rm, with
/// JSON output and exit codes.
#[test]
fn artifact_commands() {
    let h = Harness::new(open_embedded);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a.txt"), "a").unwrap();
    std::fs::write(src.join("skip.log"), "x").unwrap();
    let owner = [
        "--kind",
        "GitRepository",
        "--namespace",
        "ns",
        "--name",
        "repo",
    ];
    for revision in ["main@sha1:1", "main@sha1:2", "main@sha1:3"] {
        std::fs::write(src.join("rev"), revision).unwrap();
        let out = json(
            h.path(),
            &[
                &[
                    "artifact",
                    "archive",
                    src.to_str().unwrap(),
                    "--revision",
                    revision,
                    "--ignore",
                    "*.log",
                    "-m",
                    "team=a",
                ][..],
                &owner[..],
            ]
            .concat(),
        );
        assert_eq!(out[0]["revision"], revision);
    }
    let listed = json(
        h.path(),
        &[
            "artifact",
            "ls",
            "--hostname",
            "sc",
            "revision==main@sha1:2",
        ],
    );
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(
        listed[0]["url"],
        "http://sc/gitrepository/ns/repo/main-sha1-2.tar.gz"
    );
    assert_eq!(listed[0]["metadata"]["team"], "a");

    let tarball = kist(h.path())
        .args(["artifact", "get", "gitrepository/ns/repo/latest.tar.gz"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(tarball[..2], [0x1f, 0x8b], "a gzip stream");
    let dest = work.path().join("dest");
    kist(h.path())
        .args(["artifact", "extract", "gitrepository/ns/repo/latest.tar.gz"])
        .arg(&dest)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(dest.join("rev")).unwrap(),
        "main@sha1:3"
    );
    assert!(!dest.join("skip.log").exists());
    kist(h.path())
        .args(["artifact", "verify"])
        .assert()
        .success();

    let removed = json(
        h.path(),
        &["artifact", "gc", "--retain", "2", "--ttl", "1h"],
    );
    assert_eq!(removed[0]["revision"], "main@sha1:1");
    assert_eq!(
        json(h.path(), &["artifact", "ls"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A corrupted blob fails verification with exit 1.
    let digest = listed[0]["digest"].as_str().unwrap().replace("sha256:", "");
    std::fs::write(h.path().join("blobs/sha256").join(digest), "junk").unwrap();
    kist(h.path()).args(["artifact", "verify"]).assert().code(1);
    kist(h.path())
        .args(["artifact", "get", "gitrepository/ns/repo/nope.tar.gz"])
        .assert()
        .code(2);
    let gone = json(h.path(), &[&["artifact", "rm"][..], &owner[..]].concat());
    assert_eq!(gone.as_array().unwrap().len(), 2);
    assert_eq!(
        json(h.path(), &["ls"]).as_array().unwrap().len(),
        0,
        "blobs freed"
    );
}
