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
