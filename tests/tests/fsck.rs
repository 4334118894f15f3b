//! `Store::check` and `kist fsck`: every kind of damage is reported with
//! its path, a plain check changes nothing, a repair fixes what it says and
//! never deletes a blob's bytes.

use std::path::Path;

use assert_cmd::Command;
use kist::{Problem, ProblemKind};
use kist_tests::{Harness, bytes, fsck, kist_bin, open_embedded, sha256, tree};

fn summary(problems: &[Problem]) -> Vec<(ProblemKind, String, bool)> {
    problems
        .iter()
        .map(|p| (p.kind, p.path.clone(), p.repaired.is_some()))
        .collect()
}

/// The store's files, leaving out the host's lock files (a check takes
/// locks like any writer).
fn contents(root: &Path) -> Vec<String> {
    tree(root)
        .into_iter()
        .filter(|p| !p.starts_with("locks/"))
        .collect()
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// A store in use (blobs, labels, an ingest in progress) is clean.
#[test]
fn healthy_store_is_clean() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    for i in 0..20 {
        store
            .put_with(&bytes(1000 * i, i as u64), None, &[("i", "x")])
            .unwrap();
    }
    let mut w = store.writer("in progress", None, None).unwrap();
    std::io::Write::write_all(&mut w, b"partial").unwrap();
    drop(w);
    assert_eq!(summary(&fsck(&store, false)), vec![]);
}

/// Each kind of damage a crash, bit rot or a stray hand can leave is found
/// by path; a plain check touches nothing; a repair fixes all but strays,
/// keeping damaged bytes in quarantine.
#[test]
fn finds_and_repairs_damage() {
    let h = Harness::new(open_embedded);
    let root = h.path();
    let store = h.store();
    let good = store.put_with(b"good", None, &[("k", "v")]).unwrap();
    let rotten = store.put_with(b"rotten", None, &[("k", "r")]).unwrap();
    let unlabelled = store.put(b"labels get damaged").unwrap();
    let mut w = store.writer("broken", None, None).unwrap();
    std::io::Write::write_all(&mut w, b"half").unwrap();
    drop(w);
    let blobs = root.join("blobs/sha256");
    let labels = root.join("labels/sha256");
    let ghost = sha256(b"never published");
    let ingest_key = std::fs::read_dir(root.join("ingest"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let ingest_key = ingest_key.to_str().unwrap();

    std::fs::write(blobs.join(hex(&rotten)), b"rotteN").unwrap();
    std::fs::write(blobs.join(format!(".{}.put", hex(&ghost))), b"half a put").unwrap();
    std::fs::write(labels.join(format!(".{}.tmp", hex(&good))), b"{").unwrap();
    std::fs::write(
        labels.join(hex(&ghost)),
        br#"{"labels":{},"updated":[0,0]}"#,
    )
    .unwrap();
    std::fs::write(labels.join(hex(&unlabelled)), b"not json").unwrap();
    std::fs::write(root.join(format!("ingest/{ingest_key}/meta")), b"garbage").unwrap();
    std::fs::create_dir(root.join(format!("ingest/{}.new", "a".repeat(64)))).unwrap();
    std::fs::write(blobs.join("README"), b"someone's notes").unwrap();
    std::fs::remove_file(root.join("index.json")).unwrap();

    let before = contents(root);
    let found = fsck(&store, false);
    let expected = vec![
        (ProblemKind::StrayEntry, "blobs/sha256/README".to_owned()),
        (
            ProblemKind::CorruptBlob,
            format!("blobs/sha256/{}", hex(&rotten)),
        ),
        (
            ProblemKind::TempFile,
            format!("blobs/sha256/.{}.put", hex(&ghost)),
        ),
        (ProblemKind::BadLayout, "index.json".to_owned()),
        (
            ProblemKind::TempFile,
            format!("ingest/{}.new", "a".repeat(64)),
        ),
        (ProblemKind::BrokenIngest, format!("ingest/{ingest_key}")),
        (
            ProblemKind::TempFile,
            format!("labels/sha256/.{}.tmp", hex(&good)),
        ),
        (
            ProblemKind::OrphanLabels,
            format!("labels/sha256/{}", hex(&ghost)),
        ),
        (
            ProblemKind::DamagedLabels,
            format!("labels/sha256/{}", hex(&unlabelled)),
        ),
    ];
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_by(|a, b| a.1.cmp(&b.1));
    let got: Vec<_> = summary(&found)
        .into_iter()
        .map(|(k, p, repaired)| {
            assert!(!repaired, "a plain check repaired {p}");
            (k, p)
        })
        .collect();
    assert_eq!(got, expected_sorted);
    let corrupt = found
        .iter()
        .find(|p| p.kind == ProblemKind::CorruptBlob)
        .unwrap();
    assert!(
        corrupt.detail.contains(&sha256(b"rotteN")),
        "{}",
        corrupt.detail
    );
    assert_eq!(contents(root), before, "a plain check changed the store");

    let repaired = fsck(&store, true);
    for p in &repaired {
        assert_eq!(
            p.repaired.is_some(),
            p.kind != ProblemKind::StrayEntry,
            "{:?} {}",
            p.kind,
            p.path
        );
    }
    assert_eq!(repaired.len(), expected.len());
    // The damaged bytes and their labels are kept in quarantine.
    let quarantined: Vec<_> = std::fs::read_dir(root.join("quarantine/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let rotten_copy = quarantined
        .iter()
        .find(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with(hex(&rotten)) && !name.ends_with(".labels")
        })
        .expect("quarantined blob");
    assert_eq!(std::fs::read(rotten_copy).unwrap(), b"rotteN");
    assert_eq!(
        quarantined.len(),
        3,
        "blob, its labels, damaged labels: {quarantined:?}"
    );
    assert!(matches!(store.info(&rotten), Err(kist::Error::NotFound)));
    assert_eq!(store.get(&good).unwrap(), b"good");
    assert_eq!(store.info(&good).unwrap().labels.len(), 1);
    assert!(store.info(&unlabelled).unwrap().labels.is_empty());
    assert!(store.list_statuses(&[]).unwrap().is_empty());
    assert!(root.join("index.json").is_file());
    assert!(blobs.join("README").is_file(), "strays are left alone");

    let after: Vec<_> = summary(&fsck(&store, false))
        .into_iter()
        .map(|(k, p, _)| (k, p))
        .collect();
    assert_eq!(
        after,
        vec![(ProblemKind::StrayEntry, "blobs/sha256/README".into())]
    );
    // The rotten content can be stored again.
    assert_eq!(store.put(b"rotten").unwrap(), rotten);
}

/// A blob larger than one check step is hashed across steps, and damage
/// in its last byte is found.
#[test]
fn large_blob_checked_across_steps() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let data = bytes(300 << 20, 7);
    let digest = store.put(&data).unwrap();
    assert_eq!(summary(&fsck(&store, false)), vec![]);
    let path = h.path().join("blobs/sha256").join(hex(&digest));
    let mut damaged = data;
    *damaged.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    let found = fsck(&store, false);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, ProblemKind::CorruptBlob);
    let mut check = store.check(false).unwrap();
    assert!(check.next().is_some());
    let (checked, hashed) = check.progress().unwrap().unwrap();
    assert_eq!(
        (checked, hashed),
        (3, 300 << 20),
        "layout files + blob, all bytes"
    );
}

/// An ingest whose writer is open is never reported or removed, even when
/// its meta cannot be read, while the writer holds it.
#[test]
fn live_ingest_is_left_alone() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let mut w = store.writer("live", None, None).unwrap();
    std::io::Write::write_all(&mut w, b"abc").unwrap();
    let dir = std::fs::read_dir(h.path().join("ingest"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    std::fs::write(dir.path().join("meta"), b"damaged").unwrap();
    assert_eq!(summary(&fsck(&store, true)), vec![]);
    assert!(dir.path().join("data").is_file());
    drop(w);
    assert_eq!(fsck(&store, true)[0].kind, ProblemKind::BrokenIngest);
}

fn kist(store: &Path) -> Command {
    let mut c = Command::new(kist_bin());
    c.arg("--store").arg(store).env_remove("KIST_STORE");
    c
}

/// `kist fsck` exits 0 on a clean store, 1 with a line per problem, and
/// `--repair` reports what it did.
#[test]
fn cli_fsck() {
    let h = Harness::new(open_embedded);
    let digest = h.store().put(b"blob").unwrap();
    kist(h.path()).arg("fsck").assert().success().stdout("");
    let path = h.path().join("blobs/sha256").join(hex(&digest));
    std::fs::write(&path, b"blub").unwrap();
    let line = format!(
        "corrupt-blob blobs/sha256/{}: content hashes to {}\n",
        hex(&digest),
        sha256(b"blub")
    );
    kist(h.path())
        .arg("fsck")
        .assert()
        .code(1)
        .stdout(line.clone())
        .stderr(predicates::str::contains(
            "fsck found 1 problem(s), repaired 0",
        ));
    let out = kist(h.path())
        .args(["--format", "json", "fsck", "--repair"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json[0]["kind"], "corrupt-blob");
    assert!(
        json[0]["repaired"]
            .as_str()
            .unwrap()
            .starts_with("moved to quarantine/sha256/")
    );
    kist(h.path()).arg("fsck").assert().success();
}

/// A line of `index.journal` damaged in the middle (not a crash: whole
/// updates follow it) loses only its own update: the tags after it stay,
/// a write does not cut them off, fsck names the journal and a repair
/// folds it into `index.json` without the line. A torn last line (a
/// crash's) is no problem.
#[test]
fn a_damaged_journal_line_loses_only_its_update() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let image = kist_tests::oci::Image::new(&[bytes(64, 1)], None);
    let registry = store.registry();
    for (i, blob) in image.blobs().enumerate() {
        let mut w = registry
            .open_upload("app", &format!("u{i:031}"), true)
            .unwrap();
        std::io::Write::write_all(&mut w, &blob.bytes).unwrap();
        w.commit(None, Some(&blob.digest), &[]).unwrap();
    }
    for tag in ["v1", "v2", "v3"] {
        let m = &image.manifest;
        registry
            .put_manifest("app", tag, kist_tests::oci::MANIFEST, m)
            .unwrap();
    }
    let journal = h.path().join("index.journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and a line per tag: {text}");
    assert!(lines[2].contains("app:v2"), "{text}");
    lines[2] = "{\"damaged by hand";
    std::fs::write(&journal, lines.join("\n") + "\n[[\"set\", \"torn").unwrap();
    drop((registry, store));

    let store = h.store();
    let tags = |store: &kist::Store| store.registry().tags("app", None, None).unwrap().names;
    assert_eq!(tags(&store), ["v1", "v3"]);
    let m = &image.manifest;
    store
        .registry()
        .put_manifest("app", "v4", kist_tests::oci::MANIFEST, m)
        .unwrap();
    assert_eq!(tags(&h.store()), ["v1", "v3", "v4"]);
    let found = summary(&fsck(&store, false));
    let damaged = (ProblemKind::DamagedJournal, "index.journal".to_owned());
    assert_eq!(found, [(damaged.0, damaged.1.clone(), false)]);
    assert_eq!(summary(&fsck(&store, true)), [(damaged.0, damaged.1, true)]);
    assert_eq!(summary(&fsck(&store, false)), []);
    assert_eq!(tags(&h.store()), ["v1", "v3", "v4"]);
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap().lines().count(),
        1
    );
}

/// The same for `snapshots/snapshots.journal`: the snapshot whose line is
/// damaged is lost (its tree is an orphan a repair removes), the ones
/// after it stay.
#[test]
fn a_damaged_snapshot_journal_line_loses_only_its_snapshot() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    for key in ["k1", "k2", "k3"] {
        store.snapshots().prepare(key, None, &[]).unwrap();
    }
    let journal = h.path().join("snapshots/snapshots.journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and a line per snapshot: {text}");
    assert!(lines[2].contains("\"k2\""), "{text}");
    lines[2] = "not json";
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    drop(store);

    let store = h.store();
    let snapshots = store.snapshots();
    assert!(snapshots.stat("k1").is_ok() && snapshots.stat("k3").is_ok());
    assert!(matches!(snapshots.stat("k2"), Err(kist::Error::NotFound)));
    let found = summary(&fsck(&store, false));
    let kinds: Vec<_> = found.iter().map(|(k, p, _)| (*k, p.as_str())).collect();
    assert!(
        kinds.contains(&(ProblemKind::DamagedJournal, "snapshots/snapshots.journal")),
        "{found:?}"
    );
    assert!(
        kinds.iter().any(|(k, _)| *k == ProblemKind::OrphanSnapshot),
        "{found:?}"
    );
    assert!(fsck(&store, true).iter().all(|p| p.repaired.is_some()));
    assert_eq!(summary(&fsck(&store, false)), []);
    assert!(snapshots.stat("k1").is_ok() && snapshots.stat("k3").is_ok());
}
