//! Retention: holders, references, the cache, leases, expiring ingests,
//! quotas with eviction, collections beside writers, and stores from
//! before holds existed — through the real component.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kist::{Error, LeaseResource, Limit, RemovedKind, Settings, Store};
use kist_tests::{FakeClock, Harness, bytes, digests, open_embedded, sha256};

/// Runs a whole collection; returns what it removed, by kind.
fn gc(store: &Store) -> Vec<(RemovedKind, String)> {
    store
        .retention()
        .collect(false)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.kind, r.name)
        })
        .collect()
}

fn on_disk(h: &Harness, d: &str) -> bool {
    let (alg, hex) = d.split_once(':').unwrap();
    h.path().join("blobs").join(alg).join(hex).exists()
}

fn set_ttls(store: &Store, cache: u64, ingest: u64) {
    let retention = store.retention();
    let settings = retention.settings().unwrap();
    retention
        .set_settings(Settings {
            cache_ttl_seconds: cache,
            ingest_ttl_seconds: ingest,
            ..settings
        })
        .unwrap();
}

/// Deleting releases: the blob is no longer shown, stays cached until a
/// collection (after the cache TTL, counted from the release), and comes
/// back without a byte sent when something holds it again.
#[test]
fn released_blobs_are_cached_then_collected() {
    let clock = FakeClock::new();
    let h = Harness::new(open_embedded);
    let store = clock.open(h.path());
    set_ttls(&store, 3600, 86_400);
    let d = store.put_with(b"cached", None, &[("k", "v")]).unwrap();
    assert_eq!(store.info(&d).unwrap().holders, ["default"]);
    assert_eq!(store.delete(&d).unwrap(), Vec::<String>::new());
    assert!(matches!(store.info(&d), Err(Error::NotFound)));
    assert!(digests(&store, &[]).is_empty());
    let cached: Vec<String> = store
        .walk_cached(&[])
        .unwrap()
        .map(|i| i.unwrap().digest)
        .collect();
    assert_eq!(cached, std::slice::from_ref(&d));
    assert!(gc(&store).is_empty(), "within its cache TTL");
    assert!(on_disk(&h, &d));
    // A writer declaring the digest takes it back: nothing to send.
    let back = store.writer("again", None, Some(&d));
    assert!(matches!(back, Err(Error::AlreadyExists)));
    assert!(
        store.info(&d).unwrap().labels.is_empty(),
        "labels went with the release"
    );
    store.delete(&d).unwrap();
    clock.advance(Duration::from_secs(1800));
    store.hold(&d).unwrap();
    store.delete(&d).unwrap();
    clock.advance(Duration::from_secs(3000));
    assert!(
        gc(&store).is_empty(),
        "the TTL counts from the last release"
    );
    clock.advance(Duration::from_secs(700));
    assert_eq!(gc(&store), [(RemovedKind::Blob, d.clone())]);
    assert!(!on_disk(&h, &d));
}

/// A blob two holders hold stays until both release it; `rm` of one says
/// who still holds it.
#[test]
fn shared_content_stays_until_every_holder_releases_it() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let registry = store.as_holder("registry/library/alpine");
    let d = store.put(b"shared").unwrap();
    registry.put(b"shared").unwrap();
    assert_eq!(
        store.info(&d).unwrap().holders,
        ["default", "registry/library/alpine"]
    );
    assert_eq!(store.delete(&d).unwrap(), ["registry/library/alpine"]);
    assert!(matches!(store.delete(&d), Err(Error::NotFound)));
    assert!(gc(&store).is_empty());
    assert_eq!(store.get(&d).unwrap(), b"shared");
    registry.delete(&d).unwrap();
    assert_eq!(gc(&store), [(RemovedKind::Blob, d)]);
}

/// A held blob keeps what its `containerd.io/gc.ref.content*` labels name,
/// transitively; released, it keeps nothing.
#[test]
fn references_keep_blobs_until_the_referrer_goes() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let layer = store.put(b"layer").unwrap();
    let config = store.put(b"config").unwrap();
    let manifest = store
        .put_with(
            b"manifest",
            None,
            &[
                ("containerd.io/gc.ref.content.l.0", &layer),
                ("containerd.io/gc.ref.content.config", &config),
            ],
        )
        .unwrap();
    let index = store
        .put_with(
            b"index",
            None,
            &[("containerd.io/gc.ref.content.m.0", &manifest)],
        )
        .unwrap();
    for d in [&layer, &config, &manifest] {
        store.delete(d).unwrap();
    }
    assert!(gc(&store).is_empty(), "the index reaches all of them");
    for d in [&layer, &config, &manifest] {
        assert!(on_disk(&h, d));
    }
    store.delete(&index).unwrap();
    let removed: BTreeSet<String> = gc(&store).into_iter().map(|(_, d)| d).collect();
    assert_eq!(removed, BTreeSet::from([layer, config, manifest, index]));
}

/// `containerd.io/gc.root` holds a blob until the label goes.
#[test]
fn the_gc_root_label_holds() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let d = store
        .put_with(b"root", None, &[("containerd.io/gc.root", "x")])
        .unwrap();
    assert_eq!(store.delete(&d).unwrap(), ["label/containerd.io/gc.root"]);
    assert!(gc(&store).is_empty());
    store.label(&d, &[("containerd.io/gc.root", None)]).unwrap();
    assert_eq!(gc(&store), [(RemovedKind::Blob, d)]);
}

/// Leases hold what is written through them and what is added to them,
/// until they are deleted or expire; a flat lease keeps just its blobs.
#[test]
fn leases_hold_until_deleted_or_expired() {
    let clock = FakeClock::new();
    let h = Harness::new(open_embedded);
    let store = clock.open(h.path());
    let leases = store.leases();
    let lease = leases
        .create(Some("pull-1"), Some(Duration::from_secs(3600)), &[])
        .unwrap();
    assert!(matches!(
        leases.create(Some("pull-1"), None, &[]),
        Err(Error::AlreadyExists)
    ));
    let leased = store.with_lease(&lease.id);
    let layer = leased.put(b"leased layer").unwrap();
    assert_eq!(store.info(&layer).unwrap().holders, ["lease/pull-1"]);
    let other = store.put(b"added").unwrap();
    leases
        .add_resource("pull-1", &LeaseResource::Content(other.clone()))
        .unwrap();
    store.delete(&other).unwrap();
    assert_eq!(leases.resources("pull-1").unwrap().len(), 1 + 1);
    assert!(gc(&store).is_empty());
    clock.advance(Duration::from_secs(3601));
    assert!(
        matches!(store.info(&layer), Err(Error::NotFound)),
        "expired"
    );
    let removed = gc(&store);
    assert!(
        removed.contains(&(RemovedKind::Lease, "pull-1".into())),
        "{removed:?}"
    );
    assert!(
        removed.contains(&(RemovedKind::Blob, layer.clone())),
        "{removed:?}"
    );
    assert!(removed.contains(&(RemovedKind::Blob, other)), "{removed:?}");
    assert!(matches!(leases.get("pull-1"), Err(Error::NotFound)));

    // A flat lease holds its blob, not what its labels reference.
    let flat = leases
        .create(Some("flat"), None, &[("containerd.io/gc.flat", "")])
        .unwrap();
    assert!(flat.flat);
    let child = store.put(b"child").unwrap();
    let parent = store
        .with_lease("flat")
        .put_with(b"parent", None, &[("containerd.io/gc.ref.content", &child)])
        .unwrap();
    store.delete(&child).unwrap();
    assert_eq!(gc(&store), [(RemovedKind::Blob, child)]);
    assert!(on_disk(&h, &parent));
    leases.delete("flat").unwrap();
    assert_eq!(gc(&store), [(RemovedKind::Blob, parent)]);
}

/// An ingest idle past the ingest TTL is aborted by a collection, unless a
/// lease holds it; its commit is then held by the lease.
#[test]
fn ingests_expire_unless_a_lease_holds_them() {
    let clock = FakeClock::new();
    let h = Harness::new(open_embedded);
    let store = clock.open(h.path());
    set_ttls(&store, 0, 3600);
    let mut w = store.writer("abandoned", None, None).unwrap();
    w.write_all(b"half").unwrap();
    drop(w);
    store.leases().create(Some("slow"), None, &[]).unwrap();
    let leased = store.with_lease("slow");
    let mut w = leased.writer("slow-upload", None, None).unwrap();
    w.write_all(b"slow ").unwrap();
    drop(w);
    clock.advance(Duration::from_secs(2 * 3600));
    let removed = gc(&store);
    assert_eq!(removed, [(RemovedKind::Ingest, "abandoned".into())]);
    let mut w = leased.writer("slow-upload", None, None).unwrap();
    w.write_all(b"but sure").unwrap();
    let d = w.commit(None, None, &[]).unwrap();
    assert_eq!(store.info(&d).unwrap().holders, ["lease/slow"]);
    let resources = store.leases().resources("slow").unwrap();
    assert!(
        matches!(&resources[..], [LeaseResource::Content(c)] if *c == d),
        "{resources:?}"
    );
}

/// A write that would cross the store's quota evicts cached content,
/// oldest last use first, and only as much as it needs; what cannot fit
/// fails with the quota's name, and nothing stored is lost.
#[test]
fn quotas_evict_cached_content_oldest_first() {
    let clock = FakeClock::new();
    let h = Harness::new(open_embedded);
    let store = clock.open(h.path());
    set_ttls(&store, 30 * 86_400, 86_400);
    store
        .retention()
        .set_quota(None, Limit::Bytes(1000 << 10))
        .unwrap();
    let blob = |i: u64| bytes(200 << 10, i);
    let kept = store.put(&blob(0)).unwrap();
    let cached: Vec<String> = (1..=3)
        .map(|i| {
            let d = store.put(&blob(i)).unwrap();
            clock.advance(Duration::from_secs(60));
            store.delete(&d).unwrap();
            d
        })
        .collect();
    // Restored by a hold: live again, so never evicted.
    store.hold(&cached[0]).unwrap();
    let big = store.put(&bytes(380 << 10, 9)).unwrap();
    assert!(on_disk(&h, &cached[0]), "held again");
    assert!(!on_disk(&h, &cached[1]), "the oldest cached goes first");
    assert!(on_disk(&h, &cached[2]), "no more than needed");
    for d in [&kept, &cached[0], &big] {
        assert_eq!(sha256(&store.get(d).unwrap()), *d);
    }
    // Nothing cached is left to evict: the write fails, naming the quota.
    store.delete(&cached[2]).ok();
    let err = store.put(&bytes(600 << 10, 10)).unwrap_err();
    assert!(
        matches!(&err, Error::NoSpace(m) if m.contains("the store's quota")),
        "{err}"
    );
    let mut w = store.writer("too-big", Some(600 << 10), None);
    assert!(
        matches!(w, Err(Error::NoSpace(_))),
        "a declared size is reserved"
    );
    w = store.writer("unsized", None, None);
    let mut w = w.unwrap();
    w.write_all(&bytes(100 << 10, 11)).unwrap();
    assert!(matches!(
        w.write_all(&bytes(600 << 10, 12)),
        Err(Error::NoSpace(_))
    ));
    assert_eq!(
        w.status().unwrap().offset,
        100 << 10,
        "the failed write left nothing"
    );
    for d in [&kept, &cached[0], &big] {
        assert_eq!(sha256(&store.get(d).unwrap()), *d);
    }
}

/// A quota on a holder prefix counts what those holders hold or released
/// last, and no one else's.
#[test]
fn holder_quotas_count_their_holders_only() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    set_ttls(&store, 86_400, 86_400);
    store
        .retention()
        .set_quota(Some("layers"), Limit::Bytes(500 << 10))
        .unwrap();
    let layers = store.as_holder("layers");
    let first = layers.put(&bytes(400 << 10, 1)).unwrap();
    let err = layers.put(&bytes(200 << 10, 2)).unwrap_err();
    assert!(
        matches!(&err, Error::NoSpace(m) if m.contains("holders layers*")),
        "{err}"
    );
    store.put(&bytes(2 << 20, 3)).unwrap();
    // Released by layers, still counted against it: evicted for the next.
    layers.delete(&first).unwrap();
    layers.put(&bytes(200 << 10, 2)).unwrap();
    assert!(!on_disk(&h, &first));
    let usage = store.retention().usage().unwrap();
    assert_eq!(usage.quotas[0].used, 200 << 10);
    assert!(usage.filesystem.is_some());
    store
        .retention()
        .set_quota(Some("layers"), Limit::Percent(40))
        .unwrap();
}

/// A store laid out by kist 0.1 opens unchanged: its blobs are held by
/// `default`, except those its storer created, which their artifacts hold
/// (and one no artifact names is cached).
#[test]
fn stores_from_before_holds_are_migrated() {
    let h = Harness::new(open_embedded);
    let root = h.path();
    let hex = |d: &str| d["sha256:".len()..].to_owned();
    let write = |path: &str, bytes: &[u8]| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    write(
        "index.json",
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
    );
    let user = sha256(b"user's");
    let archive = sha256(b"an archive");
    let orphan = sha256(b"an old archive");
    for (d, bytes) in [
        (&user, &b"user's"[..]),
        (&archive, b"an archive"),
        (&orphan, b"an old archive"),
    ] {
        write(&format!("blobs/sha256/{}", hex(d)), bytes);
    }
    for d in [&archive, &orphan] {
        write(
            &format!("labels/sha256/{}", hex(d)),
            br#"{"labels":{"kist.storer/managed":"true"},"updated":[1700000000,0]}"#,
        );
    }
    write(
        "artifacts/bucket/ns/b/object",
        br#"{"kind":"Bucket","namespace":"ns","name":"b","uid":"u","current":"a.tar.gz"}"#,
    );
    write(
        "artifacts/bucket/ns/b/files/a.tar.gz",
        format!(
            r#"{{"revision":"r1","digest":"{archive}","size":10,"updated":[1700000000,0],"seq":0,"metadata":{{}}}}"#
        )
        .as_bytes(),
    );
    let store = h.store();
    assert_eq!(store.info(&user).unwrap().holders, ["default"]);
    let info = store.info(&archive).unwrap();
    assert_eq!(info.holders, ["artifact/bucket/ns/b/a.tar.gz"]);
    assert!(info.labels.is_empty(), "the storer's mark is gone");
    assert!(matches!(store.info(&orphan), Err(Error::NotFound)));
    assert_eq!(gc(&store), [(RemovedKind::Blob, orphan)]);
    let storer = store.storer();
    storer.verify("bucket/ns/b/a.tar.gz").unwrap();
    storer
        .remove_object(&kist::Object::new("Bucket", "ns", "b", "u"))
        .unwrap();
    assert_eq!(gc(&store), [(RemovedKind::Blob, archive)]);
    assert!(kist_tests::fsck(&store, false).is_empty());
}

/// Eight writers hold, reference and release blobs that share content
/// while a collector loops: a blob a writer holds is always there, and
/// once all is released the last collection (past the grace a write's
/// references get) leaves nothing.
#[test]
fn collections_beside_writers_lose_nothing_held() {
    let clock = FakeClock::new();
    let h = Harness::new(open_embedded);
    let store = clock.open(h.path());
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                gc(&store);
                runs += 1;
            }
            runs
        })
    };
    let lost = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.as_holder(&format!("writer-{w}"));
            let lost = Arc::clone(&lost);
            std::thread::spawn(move || {
                let mut held: Vec<String> = Vec::new();
                let mut x = 0x9e37_79b9u64 + w;
                for step in 0..120u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let content = bytes(1000 + (x % 16) as usize, x % 16);
                    match x % 4 {
                        // Release one of ours.
                        0 if !held.is_empty() => {
                            let d = held.swap_remove((x as usize / 4) % held.len());
                            store.delete(&d).unwrap();
                        }
                        // A blob referencing one of ours, held by us.
                        1 if !held.is_empty() => {
                            let target = held[(x as usize / 4) % held.len()].clone();
                            let data = format!("ref {w} {step} {target}");
                            let labels = [("containerd.io/gc.ref.content", target.as_str())];
                            held.push(store.put_with(data.as_bytes(), None, &labels).unwrap());
                        }
                        // Through a writer, or in one put.
                        2 => {
                            let mut writer =
                                store.writer(&format!("w{w}-{step}"), None, None).unwrap();
                            writer.write_all(&content).unwrap();
                            match writer.commit(None, None, &[]) {
                                Ok(d) => held.push(d),
                                Err(Error::AlreadyExists) => {
                                    let d = sha256(&content);
                                    if !held.contains(&d) {
                                        held.push(d);
                                    }
                                }
                                Err(e) => panic!("commit: {e}"),
                            }
                        }
                        _ => {
                            let d = store.put(&content).unwrap();
                            if !held.contains(&d) {
                                held.push(d);
                            }
                        }
                    }
                    for d in &held {
                        if store.get(d).is_err() {
                            lost.lock().unwrap().push(d.clone());
                        }
                    }
                }
                for d in held {
                    store.delete(&d).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let runs = collector.join().unwrap();
    assert!(runs > 3, "the collector ran {runs} times");
    assert!(
        lost.lock().unwrap().is_empty(),
        "lost: {:?}",
        lost.lock().unwrap()
    );
    clock.advance(Duration::from_secs(600));
    gc(&store);
    let left: Vec<_> = std::fs::read_dir(h.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left after the last collection: {left:?}");
    assert!(kist_tests::fsck(&store, false).is_empty());
}

/// `kist` processes for four holders store and release shared files while
/// another process collects in a loop: what a holder holds is always there.
#[test]
fn collections_beside_kist_processes_lose_nothing_held() {
    let h = Harness::new(open_embedded);
    let files = tempfile::tempdir().unwrap();
    let contents: Vec<(std::path::PathBuf, String)> = (0..6u64)
        .map(|i| {
            let path = files.path().join(format!("f{i}"));
            let data = bytes(50_000 + i as usize, i);
            std::fs::write(&path, &data).unwrap();
            (path, sha256(&data))
        })
        .collect();
    let kist = |holder: &str| {
        let mut c = std::process::Command::new(kist_tests::kist_bin());
        c.arg("--store")
            .arg(h.path())
            .args(["--as", holder])
            .env_remove("KIST_STORE");
        c
    };
    assert!(kist("default").arg("df").status().unwrap().success());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                let out = kist("default").arg("gc").output().unwrap();
                assert!(out.status.success(), "{out:?}");
                runs += 1;
            }
            runs
        });
        // Stops the collector however the workers end (a failed one too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let stopper = Stop(&stop);
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (contents, kist) = (&contents, &kist);
                s.spawn(move || {
                    let holder = format!("p{w}");
                    let mut held = BTreeSet::new();
                    for step in 0..24usize {
                        let (path, digest) = &contents[(w * 7 + step * 5) % contents.len()];
                        if step % 3 == 2 && held.remove(digest) {
                            let out = kist(&holder).args(["rm", digest]).output().unwrap();
                            assert!(out.status.success(), "{out:?}");
                        } else {
                            // Its own ref: two writers of one file would share
                            // the default one (and one would wait its turn).
                            let out = kist(&holder)
                                .args(["ingest", "--ref", &format!("{holder}-{step}")])
                                .arg(path)
                                .output()
                                .unwrap();
                            assert!(out.status.success(), "{out:?}");
                            held.insert(digest.clone());
                        }
                        for d in &held {
                            let out = kist(&holder).args(["get", d, "-o", "/dev/null"]).output();
                            assert!(out.unwrap().status.success(), "{holder} lost {d}");
                        }
                    }
                    for d in &held {
                        assert!(kist(&holder).args(["rm", d]).status().unwrap().success());
                    }
                })
            })
            .collect();
        let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        drop(stopper);
        assert!(collector.join().unwrap() > 1);
        for j in joined {
            j.unwrap();
        }
    });
    assert!(kist("default").arg("gc").status().unwrap().success());
    let store = h.store();
    assert!(digests(&store, &[]).is_empty());
    assert_eq!(
        std::fs::read_dir(h.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

/// The retention commands: leases, `ingest --lease`, holders in `info`
/// and `ls`, `rm` saying who still holds, `ls --cached`, `gc --dry-run`,
/// quotas, settings and `df`, with JSON.
#[test]
fn retention_commands() {
    let h = Harness::new(open_embedded);
    let kist = || {
        let mut c = assert_cmd::Command::new(kist_tests::kist_bin());
        c.arg("--store").arg(h.path()).env_remove("KIST_STORE");
        c
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let out = kist()
            .args(["--format", "json"])
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    let d = sha256(b"shared");
    kist()
        .args(["ingest", "-"])
        .write_stdin(b"shared".to_vec())
        .assert()
        .success();
    kist()
        .args(["--as", "registry/x", "ingest", "-"])
        .write_stdin(b"shared".to_vec())
        .assert()
        .success();
    assert_eq!(
        json(&["info", &d])["holders"],
        serde_json::json!(["default", "registry/x"])
    );
    kist()
        .args(["rm", &d])
        .assert()
        .success()
        .stderr(predicates::str::contains("still held by registry/x"));
    kist()
        .args(["rm", &d])
        .assert()
        .failure()
        .stderr(predicates::str::contains("held by registry/x"));
    kist()
        .args(["--as", "registry/x", "rm", &d])
        .assert()
        .success();
    assert_eq!(json(&["ls", "--cached", "-q"]), serde_json::json!([d]));
    let dry = json(&["gc", "--dry-run"]);
    assert_eq!(dry["bytes_freed"], 6);
    assert!(
        h.path().join("blobs/sha256").join(&d[7..]).exists(),
        "a dry run removes nothing"
    );

    let lease = json(&[
        "lease", "create", "--id", "pull", "--expire", "1h", "--label", "a=b",
    ]);
    assert_eq!(lease[0]["id"], "pull");
    let leased = sha256(b"leased");
    kist()
        .args(["ingest", "--lease", "pull", "-"])
        .write_stdin(b"leased".to_vec())
        .assert()
        .success();
    assert_eq!(
        json(&["info", &leased])["holders"],
        serde_json::json!(["lease/pull"])
    );
    assert_eq!(json(&["lease", "ls"])[0]["labels"]["a"], "b");
    kist().args(["lease", "rm", "pull"]).assert().success();
    assert!(json(&["lease", "ls"]).as_array().unwrap().is_empty());
    let removed = json(&["gc"]);
    assert_eq!(removed["bytes_freed"], 6 + 6, "{removed}");

    kist().args(["quota", "set", "10M"]).assert().success();
    kist()
        .args(["quota", "set", "--holder", "layers", "40%"])
        .assert()
        .success();
    let quotas = json(&["quota", "ls"]);
    assert_eq!(quotas[0]["limit"], (10u64 << 20).to_string());
    assert_eq!(quotas[1]["limit"], "40%");
    kist()
        .args(["--as", "layers", "ingest", "-"])
        .write_stdin(bytes(11 << 20, 1))
        .assert()
        .failure()
        .stderr(predicates::str::contains("the store's quota"));
    kist().args(["quota", "rm"]).assert().success();
    kist()
        .args(["config", "set", "cache-ttl", "90m"])
        .assert()
        .success();
    assert_eq!(json(&["config", "ls"])["cache_ttl_seconds"], 5400);
    kist()
        .args(["config", "set", "bogus", "1s"])
        .assert()
        .failure();
    let df = json(&["df"]);
    assert_eq!(df["quotas"].as_array().unwrap().len(), 1);
    assert!(df["filesystem"]["total"].as_u64().unwrap() > 0);
}

/// `kist serve` collects on its own, every `--gc-interval`.
#[test]
fn serve_collects_on_an_interval() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let d = store.put(b"soon gone").unwrap();
    store.delete(&d).unwrap();
    let _server = kist_tests::Server::start_with(h.path(), &["--gc-interval", "1s"]);
    let blob = h.path().join("blobs/sha256").join(&d[7..]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while blob.exists() {
        assert!(std::time::Instant::now() < deadline, "not collected");
        std::thread::sleep(Duration::from_millis(100));
    }
}
