//! Crash consistency: `kist ingest` killed with SIGKILL at random moments
//! (while writing, committing, saving labels), then run again, always ends
//! with the right blob, a clean `fsck` and no leftovers.
//!
//! `kist artifact archive` gets the same treatment.
//!
//! `KIST_CRASH_ITERATIONS` sets the number of ingest kills (default 100)
//! and `KIST_CRASH_ARCHIVES` of archive kills (default 20) for long soak
//! runs; `KIST_CRASH_SEED` replays a run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kist_tests::trees::Mounted;
use kist_tests::{Harness, bytes, collect, fsck, kist_bin, open_embedded, sha256, tree};

/// Size of each ingested file: a few write chunks, so kills land in every
/// phase of an ingest.
const FILE_SIZE: usize = 8 << 20;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

/// A reproducible delay in `0..span` (xorshift on `seed`).
fn next_delay(seed: &mut u64, span: std::time::Duration) -> std::time::Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    span.mul_f64((*seed % 10_000) as f64 / 10_000.0)
}

/// `kist --store STORE ARGS...`.
fn kist_on(store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(kist_bin());
    c.arg("--store")
        .arg(store)
        .env_remove("KIST_STORE")
        .args(args);
    c
}

fn ingest(store: &Path, file: &Path, label: &str) -> Command {
    let mut c = kist_on(store, &["ingest", "--label", label]);
    c.arg(file).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Where a kill left the store, for the report.
#[derive(Debug, Default)]
struct Landed {
    before_start: u64,
    mid_ingest: u64,
    committed: u64,
}

/// Proves: no kill point loses data, leaves a damaged store or leaks files.
#[test]
fn killed_ingests_recover() {
    let iterations = env_number("KIST_CRASH_ITERATIONS", 100);
    let mut seed = env_number("KIST_CRASH_SEED", 0x5eed);
    eprintln!("crash test: {iterations} kills, KIST_CRASH_SEED={seed}");
    let h = Harness::new(open_embedded);
    let store = h.store();
    let files = tempfile::tempdir().unwrap();
    let base = bytes(FILE_SIZE, 1);

    // How long one uncontended ingest takes; kills are spread over 0..1.2×.
    // Timed the second time: the first may compile the component for the
    // CLI (a cold cache), which would stretch every kill delay tenfold.
    let mut span = Duration::ZERO;
    for probe in [0xffu8, 0xfe] {
        let mut data = base.clone();
        data[0] = probe;
        let file = files.path().join(format!("probe-{probe}"));
        std::fs::write(&file, &data).unwrap();
        let start = Instant::now();
        let out = ingest(h.path(), &file, "probe=1").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        span = start.elapsed().mul_f64(1.2);
        store.delete(&sha256(&data)).unwrap();
    }

    // Where a kill lands depends on the machine's load: on a busy one more
    // land before or after the ingest, so kills go on (up to three times
    // as many) until a quarter of the planned ones landed mid-ingest.
    let mut landed = Landed::default();
    let enough = |landed: &Landed| landed.mid_ingest >= iterations / 4;
    for i in 0..iterations * 3 {
        if i >= iterations && enough(&landed) {
            break;
        }
        let mut data = base.clone();
        data[..8].copy_from_slice(&i.to_le_bytes());
        let digest = sha256(&data);
        let file = files.path().join(format!("file-{i}"));
        std::fs::write(&file, &data).unwrap();
        let label = format!("iteration={i}");

        let delay = next_delay(&mut seed, span);
        let mut child = ingest(h.path(), &file, &label).spawn().unwrap();
        std::thread::sleep(delay);
        child.kill().ok(); // SIGKILL; it may have finished already
        child.wait().unwrap();
        match (
            store.info(&digest).is_ok(),
            store.list_statuses(&[]).unwrap().len(),
        ) {
            (true, _) => landed.committed += 1,
            (false, 0) => landed.before_start += 1,
            (false, _) => landed.mid_ingest += 1,
        }

        let out = ingest(h.path(), &file, &label).output().unwrap();
        let context = format!("kill {i} after {delay:?}");
        assert!(
            out.status.success(),
            "{context}: re-run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            digest,
            "{context}"
        );
        let info = store.info(&digest).unwrap();
        assert_eq!(info.size, FILE_SIZE as u64, "{context}");
        assert_eq!(info.labels.len(), 1, "{context}: labels {:?}", info.labels);
        let problems = fsck(&store, false);
        assert!(problems.is_empty(), "{context}: fsck found {problems:?}");
        let leftovers: Vec<_> = tree(h.path())
            .into_iter()
            .filter(|p| p.starts_with("ingest/") || p.contains("/."))
            .collect();
        assert!(leftovers.is_empty(), "{context}: leftovers {leftovers:?}");
        store.delete(&digest).unwrap();
        // Released bytes go at the next collection; later checks re-hash
        // every blob, so make it now.
        collect(&store);
        std::fs::remove_file(&file).unwrap();
    }
    eprintln!("crash test: kills landed {landed:?}");
    assert!(
        enough(&landed),
        "too few kills landed mid-ingest to prove anything: {landed:?}"
    );
}

fn archive(store: &Path, dir: &Path, i: u64) -> Command {
    let mut c = Command::new(kist_bin());
    c.arg("--store")
        .arg(store)
        .env_remove("KIST_STORE")
        .args([
            "artifact",
            "archive",
            "--kind",
            "Bucket",
            "--namespace",
            "ns",
            "--name",
            "b",
        ])
        .args([
            "--revision",
            &format!("r{i}"),
            "--file",
            &format!("{i}.tar.gz"),
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Proves: a killed archive leaves at most a temporary file that fsck
/// reports and repairs, never a half-recorded artifact; the re-run records
/// it and GC leaves exactly the current artifact and its blob.
#[test]
fn killed_archives_recover() {
    let iterations = env_number("KIST_CRASH_ARCHIVES", 20);
    let mut seed = env_number("KIST_CRASH_SEED", 0x5eed);
    let h = Harness::new(open_embedded);
    let store = h.store();
    let storer = store.storer();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("big"), bytes(FILE_SIZE / 4, 3)).unwrap();
    // Revisions 0 and 1 are probes; the second is timed (the first may
    // compile the component).
    let mut span = std::time::Duration::ZERO;
    for probe in 0..2 {
        let start = Instant::now();
        let out = archive(h.path(), src.path(), probe).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        span = start.elapsed().mul_f64(1.2);
    }
    let (mut temps_repaired, mut recorded_before_rerun) = (0, 0);
    for i in 2..iterations + 2 {
        std::fs::write(src.path().join("iteration"), i.to_string()).unwrap();
        let delay = next_delay(&mut seed, span);
        let mut child = archive(h.path(), src.path(), i).spawn().unwrap();
        std::thread::sleep(delay);
        child.kill().ok();
        child.wait().unwrap();
        let context = format!("archive kill {i} after {delay:?}");
        if storer
            .get(&format!("bucket/ns/b/{i}.tar.gz"))
            .unwrap()
            .is_some()
        {
            recorded_before_rerun += 1;
        }
        for p in store.check(true).unwrap() {
            let p = p.unwrap();
            // A kill between saving a new blob's labels and its rename
            // leaves the labels alone: an orphan, by design.
            assert!(
                matches!(
                    p.kind,
                    kist::ProblemKind::TempFile | kist::ProblemKind::OrphanLabels
                ),
                "{context}: {p:?}"
            );
            assert!(p.repaired.is_some(), "{context}: {p:?}");
            temps_repaired += 1;
        }

        let out = archive(h.path(), src.path(), i).output().unwrap();
        assert!(
            out.status.success(),
            "{context}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let current = storer.get("bucket/ns/b/latest.tar.gz").unwrap().unwrap();
        assert_eq!(current.revision, format!("r{i}"), "{context}");
        storer.verify(&current.path).unwrap();
        let object = kist::Object::new("Bucket", "ns", "b", "default");
        let policy = kist::RetentionPolicy {
            max_count: 1,
            ttl_seconds: None,
        };
        storer.reconcile_storage(&object, policy).unwrap();
        collect(&store);
        assert_eq!(
            kist_tests::digests(&store, &[]),
            std::slice::from_ref(&current.digest),
            "{context}"
        );
        let problems = fsck(&store, false);
        assert!(problems.is_empty(), "{context}: fsck found {problems:?}");
    }
    eprintln!(
        "archive crash test: {iterations} kills, {recorded_before_rerun} had recorded, \
         {temps_repaired} temporary files repaired"
    );
    assert!(
        temps_repaired > 0,
        "no kill landed mid-archive: the test proved nothing"
    );
}

/// Proves: `kist gc` killed at any moment loses nothing held, and the
/// next collection finishes the job: what was due is gone and `fsck` is
/// clean. `KIST_CRASH_GCS` sets the number of kills (default 20).
#[test]
fn killed_collections_recover() {
    let iterations = env_number("KIST_CRASH_GCS", 20);
    let mut seed = env_number("KIST_CRASH_SEED", 0x6c6c);
    let h = Harness::new(open_embedded);
    let store = h.store();
    let kist = |args: &[&str]| {
        let mut c = kist_on(h.path(), args);
        c.stdout(Stdio::null());
        c
    };
    // Idle ingests expire at once, so collections abort them too.
    assert!(
        kist(&["config", "set", "ingest-ttl", "0s"])
            .status()
            .unwrap()
            .success()
    );
    // Held blobs, each referencing a released one the collections must keep.
    let mut held = Vec::new();
    for i in 0..50u64 {
        let child = store.put(&bytes(3000, 10_000 + i)).unwrap();
        let parent = store
            .put_with(
                &bytes(2000, 20_000 + i),
                None,
                &[("containerd.io/gc.ref.content", child.as_str())],
            )
            .unwrap();
        store.delete(&child).unwrap();
        held.push((parent, child));
    }
    let garbage = |round: u64| {
        for i in 0..300 {
            let d = store.put(&bytes(1000, round * 1000 + i)).unwrap();
            store.delete(&d).unwrap();
        }
        for i in 0..5 {
            let mut w = store.writer(&format!("r{round}-{i}"), None, None).unwrap();
            w.write_all(&bytes(5000, i)).unwrap();
        }
    };
    garbage(1);
    let start = Instant::now();
    assert!(kist(&["gc"]).status().unwrap().success());
    let span = start.elapsed().mul_f64(1.2);
    let mut killed = 0;
    for round in 2..iterations + 2 {
        garbage(round);
        let mut child = kist(&["gc"]).spawn().unwrap();
        std::thread::sleep(next_delay(&mut seed, span));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
        for (parent, child) in &held {
            assert_eq!(
                sha256(&store.get(parent).unwrap()),
                *parent,
                "round {round}"
            );
            assert!(
                h.path().join("blobs/sha256").join(&child[7..]).exists(),
                "round {round}: a referenced blob went"
            );
        }
    }
    eprintln!("killed {killed} of {iterations} collections mid-way");
    assert!(killed > 0, "no collection was killed mid-way");
    assert!(kist(&["gc"]).status().unwrap().success());
    assert!(fsck(&store, false).is_empty(), "{:?}", fsck(&store, false));
    let blobs = std::fs::read_dir(h.path().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(
        blobs,
        2 * held.len(),
        "only the held blobs and what they reference"
    );
    assert!(store.list_statuses(&[]).unwrap().is_empty());
    assert_eq!(tree(&h.path().join("ingest")), Vec::<String>::new());
}

/// A layer of `files` files of 4 KiB, tar+gzip.
fn many_files_layer(files: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for i in 0..files {
        let mut h = kist_tests::tar_header(tar::EntryType::Regular, 0o644, 4096);
        b.append_data(
            &mut h,
            format!("d{}/f{i}", i % 64),
            &bytes(4096, i as u64)[..],
        )
        .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// Repairs what `fsck` finds, checks it is all repairable and the store
/// clean afterwards; returns how many problems there were.
fn repaired(store: &kist::Store, round: u64) -> usize {
    let problems = fsck(store, true);
    for p in &problems {
        assert!(p.repaired.is_some(), "round {round}: {p:?} is not repaired");
    }
    assert!(
        fsck(store, false).is_empty(),
        "round {round}: clean after repair"
    );
    problems.len()
}

/// Proves: `kist snapshot apply`, `commit` and `rm` killed at any moment
/// leave records and trees consistent: the snapshot is as before the call
/// or as after it, `fsck --repair` removes what a kill left (a half-built
/// tree, a half-removed one), then `fsck` is clean, and the operation run
/// again succeeds. `KIST_CRASH_SNAPSHOTS` sets the rounds (default 8).
#[test]
fn killed_snapshot_operations_recover() {
    kist_tests::trees::require_root();
    let rounds = env_number("KIST_CRASH_SNAPSHOTS", 8);
    let mut seed = env_number("KIST_CRASH_SEED", 0x5a95);
    let h = Harness::new(open_embedded);
    let store = h.store();
    let layer = many_files_layer(3000);
    let digest = store.put(&layer).unwrap();
    let kist = |args: &[&str]| {
        let mut c = kist_on(h.path(), args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    };
    let run = |args: &[&str]| {
        let out = kist(args).output().unwrap();
        assert!(
            out.status.success(),
            "kist {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["snapshot", "prepare", "timing"]);
    let start = Instant::now();
    let diff_id = run(&["snapshot", "apply", "timing", &digest])
        .trim()
        .to_owned();
    let span = start.elapsed().mul_f64(1.2);
    let (mut mid, mut leftovers) = (0, 0);
    let kill = |args: &[&str], seed: &mut u64| -> bool {
        let mut child = kist(args).spawn().unwrap();
        std::thread::sleep(next_delay(seed, span));
        let running = child.try_wait().unwrap().is_none();
        child.kill().ok();
        child.wait().unwrap();
        running
    };
    for round in 0..rounds {
        let key = format!("default/{round}/extract sha256:{}", &digest[7..]);
        let name = format!("layer-{round}");
        run(&["snapshot", "prepare", &key]);
        mid += u32::from(kill(&["snapshot", "apply", &key, &digest], &mut seed));
        // A killed apply leaves the snapshot empty or whole, never half.
        let inodes = store.snapshots().usage(&key).unwrap().inodes;
        assert!(
            inodes == 1 || inodes > 3000,
            "round {round}: {inodes} inodes after a killed apply"
        );
        leftovers += repaired(&store, round);
        if inodes == 1 {
            assert_eq!(store.snapshots().apply(&key, &digest, "").unwrap(), diff_id);
        }
        mid += u32::from(kill(&["snapshot", "commit", &name, &key], &mut seed));
        // Wherever the kill landed, the records are whole.
        let committed = store.snapshots().stat(&name).is_ok();
        let active = store.snapshots().stat(&key).is_ok();
        assert!(
            committed != active,
            "round {round}: exactly one of key and name exists"
        );
        leftovers += repaired(&store, round);
        if active {
            store.snapshots().commit(&name, &key, &[]).unwrap();
        }
        let view = Mounted::new(
            &store
                .snapshots()
                .view(&format!("check-{round}"), Some(&name), &[])
                .unwrap(),
        );
        let files = std::fs::read_dir(view.join("d7")).unwrap().count();
        assert_eq!(
            files,
            3000 / 64 + 1,
            "round {round}: the whole layer is there"
        );
        drop(view);
        store.snapshots().remove(&format!("check-{round}")).unwrap();
        mid += u32::from(kill(&["snapshot", "rm", &name], &mut seed));
        leftovers += repaired(&store, round);
        if store.snapshots().stat(&name).is_ok() {
            store.snapshots().remove(&name).unwrap();
        }
    }
    eprintln!("{mid} kills landed mid-operation; fsck repaired {leftovers} leftovers");
    assert!(
        mid > 0,
        "no kill landed mid-operation: the test proved nothing"
    );
    let trees = kist_tests::trees::snapshot_trees(h.path());
    assert_eq!(trees.len(), 1, "only `timing`'s tree remains: {trees:?}");
}
