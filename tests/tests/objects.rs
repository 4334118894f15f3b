//! The `objects` capability against a real Ceph RGW started by the test:
//! a component names objects only under its store's prefix, gets the
//! contract a store in object storage relies on, and races for a key
//! with exactly one winner. The component is `tests/hostile`, whose
//! `store.info(name)` runs the probe `name` and reports in an `io` error.

use std::time::Duration;

use kist::{Error, Store};
use kist_tests::rgw::Rgw;
use kist_tests::{hostile_component, open_embedded};

/// A store directory laid out by the real store, opened with the hostile
/// component and, if given, a bucket.
fn hostile(dir: &std::path::Path, bucket: Option<kist::ObjectBucket>) -> Store {
    open_embedded(dir).put(b"real data").unwrap();
    let builder = Store::builder(dir)
        .component(hostile_component())
        .memory_limit(256 << 20)
        .call_timeout(Duration::from_secs(120));
    match bucket {
        Some(bucket) => builder.object_bucket(bucket),
        None => builder,
    }
    .open()
    .expect("kist loads the hostile component")
}

/// Runs `probe` and returns its report.
fn report(store: &Store, probe: &str) -> String {
    match store.info(probe) {
        Err(Error::Io(report)) => report,
        other => panic!("{probe}: unexpected answer {other:?}"),
    }
}

/// Proves: keys out of the prefix (`..`, absolute, empty segments,
/// encoded dots, control and non-ASCII characters, over-long), listings
/// outside it, directories and read-only files as descriptors, offsets
/// that wrap and bodies over the limits are all refused with the right
/// error and leave the hash alone; everything the component wrote lies
/// under its prefix and the object planted beside it is untouched.
#[test]
fn a_component_stays_under_its_prefix() {
    let rgw = Rgw::start();
    rgw.create_bucket("kist");
    rgw.put("kist", "other/secret", b"not yours");
    let dir = tempfile::tempdir().unwrap();
    let store = hostile(dir.path(), Some(rgw.bucket("s3://kist/stores/a")));

    let escapes = report(&store, "objects-escapes");
    let refused = escapes.matches("refused: ").count();
    assert!(
        !escapes.contains("ESCAPED") && !escapes.contains("WRONG"),
        "{escapes}"
    );
    assert_eq!(refused, 14 * 7 - 1 + 6, "{escapes}");

    let contract = report(&store, "objects-contract");
    assert!(contract.starts_with("contract held"), "{contract}");

    let keys = rgw.keys("kist");
    assert!(keys.contains(&"other/secret".to_owned()), "{keys:?}");
    for key in keys.iter().filter(|k| *k != "other/secret") {
        assert!(
            key.starts_with("stores/a/"),
            "{key} written outside the prefix"
        );
    }
    assert!(keys.contains(&"stores/a/records/a".to_owned()), "{keys:?}");
    assert_eq!(rgw.get("kist", "other/secret"), b"not yours");
}

/// Proves: sixteen `if-absent` puts of one key at once, from four stores
/// (as four nodes would), have exactly one winner.
#[test]
fn if_absent_puts_race_to_one_winner() {
    let rgw = Rgw::start();
    rgw.create_bucket("kist");
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let stores: Vec<_> = dirs
        .iter()
        .map(|d| hostile(d.path(), Some(rgw.bucket("s3://kist/shared"))))
        .collect();
    let outcomes: Vec<String> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..16)
            .map(|i| {
                let store = &stores[i % stores.len()];
                s.spawn(move || report(store, "objects-race"))
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won = outcomes.iter().filter(|o| *o == "won").count();
    let lost = outcomes.iter().filter(|o| *o == "lost").count();
    assert_eq!((won, lost), (1, 15), "{outcomes:?}");
    assert_eq!(rgw.get("kist", "shared/race/one"), b"racer");
}

/// Proves: a store given no bucket answers `unsupported`, and touches
/// no network.
#[test]
fn without_a_bucket_objects_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let store = hostile(dir.path(), None);
    assert_eq!(
        report(&store, "objects-race"),
        "failed: ObjectError::Unsupported"
    );
}

/// Proves: a bucket that is not there, or credentials the gateway
/// refuses, stop a store from opening with the reason (a missing bucket
/// otherwise answers the first conditional PUT as if its key were
/// missing, and a write failed as "locked by another writer"), through
/// the library and through `kist serve`, which exits instead of
/// listening.
#[test]
fn a_bucket_that_is_not_there_stops_the_store_opening() {
    let rgw = kist_tests::rgw::shared();
    let refused = |url: &str, secret: &str| {
        rgw.bucket_signed_with(url, secret)
            .err()
            .map(|e| e.to_string())
    };
    let missing = refused("s3://not-created/p", &rgw.secret_key).expect("refused");
    assert!(missing.contains("no such bucket"), "{missing}");
    let forged = refused("s3://shared/p", "not-the-secret").expect("refused");
    assert!(forged.contains("403"), "{forged}");
    assert_eq!(refused("s3://shared/p", &rgw.secret_key), None);

    let node = tempfile::tempdir().unwrap();
    let mut serve = std::process::Command::new(kist_tests::kist_bin())
        .args(["serve", "--store", "s3://not-created/p", "--node-dir"])
        .arg(node.path())
        .args(["--addr", "127.0.0.1:0", "--insecure-no-auth"])
        .env_remove("KIST_STORE")
        .envs(rgw.env())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running kist serve");
    // Read until it exits; a server that listens instead is stopped (by
    // its PID) and fails the test.
    let mut said = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(serve.stderr.take().unwrap())) {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("listening") {
            serve.kill().unwrap();
            break;
        }
    }
    let status = serve.wait().unwrap();
    assert!(!status.success(), "{said}");
    assert!(said.contains("no such bucket"), "{said}");
    assert!(!said.contains("listening"), "{said}");
}

/// Proves: `kist fsck` of a node that has stored nothing yet is clean
/// (its directory is an empty cache of the bucket, not a damaged store),
/// and still finds a used node's missing `index.json`.
#[test]
fn a_new_node_checks_clean() {
    let rgw = kist_tests::rgw::shared();
    let url = "s3://shared/fsck-new-node";
    let node = tempfile::tempdir().unwrap();
    let said = String::from_utf8(rgw.kist(url, node.path(), &["fsck"])).unwrap();
    assert!(!said.contains("bad-layout"), "{said}");

    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("blob");
    std::fs::write(&file, b"stored once").unwrap();
    rgw.kist(url, node.path(), &["ingest", file.to_str().unwrap()]);
    rgw.kist(url, node.path(), &["fsck"]);
    std::fs::remove_file(node.path().join("index.json")).unwrap();
    let out = rgw.kist_output(url, node.path(), &["fsck"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("bad-layout index.json: missing"), "{said}");
}
