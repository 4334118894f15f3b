//! Exclusivity and consistency under concurrent use: threads sharing a
//! store, and separate `kist` processes on one store directory.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kist::Error;
use kist_tests::{Harness, bytes, digests, kist_bin, open_embedded, sha256};

/// Threads racing for one ref never hold it at the same time.
#[test]
fn threads_never_share_a_ref() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let held = Arc::new(AtomicBool::new(false));
    let (granted, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (store, held, granted, refused) = (store.clone(), &held, &granted, &refused);
            s.spawn(move || {
                for _ in 0..20 {
                    match store.writer("contended", None, None) {
                        Ok(w) => {
                            assert!(
                                !held.swap(true, Ordering::SeqCst),
                                "two writers held one ref"
                            );
                            std::thread::sleep(Duration::from_millis(1));
                            held.store(false, Ordering::SeqCst);
                            drop(w);
                            granted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(Error::Unavailable) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    assert!(granted.load(Ordering::SeqCst) > 0);
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the race never happened"
    );
}

/// Committing the same content from many refs at once stores it once;
/// every committer sees success or already-exists.
#[test]
fn same_content_committed_concurrently() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let data = bytes(2 << 20, 5);
    std::thread::scope(|s| {
        for i in 0..6 {
            let (store, data) = (store.clone(), &data);
            s.spawn(move || {
                let mut w = store.writer(&format!("same-{i}"), None, None).unwrap();
                w.write_all(data).unwrap();
                match w.commit(None, Some(&sha256(data)), &[]) {
                    Ok(d) => assert_eq!(d, sha256(data)),
                    Err(Error::AlreadyExists) => {}
                    Err(e) => panic!("{e}"),
                }
            });
        }
    });
    assert_eq!(digests(&store, &[]), vec![sha256(&data)]);
    assert_eq!(store.get(&sha256(&data)).unwrap(), data);
    assert!(
        store.list_statuses(&[]).unwrap().is_empty(),
        "every ingest was consumed"
    );
}

/// Concurrent label updates of one blob are serialised: none is lost, and
/// walks running meanwhile always see a complete blob.
#[test]
fn no_lost_label_updates_while_walking() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let d = store.put(b"labelled").unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let walker = s.spawn(|| {
            let mut walks = 0;
            while !stop.load(Ordering::SeqCst) {
                for info in store.walk(&[]).unwrap() {
                    assert_eq!(info.unwrap().size, 8);
                }
                walks += 1;
            }
            walks
        });
        let writers: Vec<_> = (0..6)
            .map(|t| {
                let store = store.clone();
                let d = d.clone();
                s.spawn(move || {
                    for i in 0..15 {
                        store
                            .label(&d, &[(&format!("t{t}"), Some(&i.to_string()))])
                            .unwrap();
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        stop.store(true, Ordering::SeqCst);
        assert!(walker.join().unwrap() > 0);
    });
    let labels = store.info(&d).unwrap().labels;
    assert_eq!(labels.len(), 6, "{labels:?}");
    assert!(labels.iter().all(|l| l.value == "14"), "{labels:?}");
}

/// A ref held by a writer in this process is refused to a `kist` process,
/// and one `kist` process's ingest is refused to another.
#[test]
fn processes_exclude_each_other() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let kist = || {
        let mut c = Command::new(kist_bin());
        c.arg("--store").arg(h.path());
        c
    };
    let held = store.writer("held-here", None, None).unwrap();
    let out = kist()
        .args(["ingest", "--ref", "held-here", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unavailable"),
        "{out:?}"
    );
    drop(held);

    let mut first = kist()
        .args(["ingest", "--ref", "shared", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = first.stdin.take().unwrap();
    input.write_all(b"first half ").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.status("shared").map_or(true, |s| s.offset == 0) {
        assert!(
            Instant::now() < deadline,
            "the first process never started its ingest"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = kist()
        .args(["ingest", "--ref", "shared", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(String::from_utf8_lossy(&second.stderr).contains("unavailable"));
    input.write_all(b"second half").unwrap();
    drop(input);
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        sha256(b"first half second half")
    );
}

/// A reader opened before a delete keeps reading the whole old blob; a
/// reader racing deletes and re-puts sees either not-found or every byte.
#[test]
fn readers_survive_deletes() {
    use std::io::Read;
    let h = Harness::new(open_embedded);
    let store = h.store();
    let data = bytes(2 << 20, 11);
    let d = store.put(&data).unwrap();

    let mut reader = store.reader(&d).unwrap();
    let mut head = vec![0; 256 << 10];
    reader.read_exact(&mut head).unwrap();
    store.delete(&d).unwrap();
    assert!(matches!(store.info(&d), Err(Error::NotFound)));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert!(head == data, "the open reader lost bytes to the delete");

    let stop = AtomicBool::new(false);
    let (whole, missing) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..3 {
            let (store, data, d) = (store.clone(), &data, &d);
            let (stop, whole, missing) = (&stop, &whole, &missing);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match store.reader(d) {
                        Ok(mut r) => {
                            let mut got = Vec::new();
                            r.read_to_end(&mut got).unwrap();
                            assert!(got == *data, "a reader saw {} partial bytes", got.len());
                            whole.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(Error::NotFound) => {
                            missing.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
        for _ in 0..25 {
            match store.put(&data) {
                Ok(_) | Err(Error::AlreadyExists) => {}
                Err(e) => panic!("{e}"),
            }
            std::thread::sleep(Duration::from_millis(5));
            match store.delete(&d) {
                Ok(_) | Err(Error::NotFound) => {}
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(
        whole.load(Ordering::SeqCst) > 0,
        "no read ever found the blob"
    );
    assert!(
        missing.load(Ordering::SeqCst) > 0,
        "no read ever raced a delete"
    );
}

/// Walks while writers commit blobs see only complete blobs: every listed
/// size and content matches the digest.
#[test]
fn walks_see_only_committed_blobs() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let walker = s.spawn(|| {
            let mut seen = 0;
            while !stop.load(Ordering::SeqCst) {
                for info in store.walk(&[]).unwrap() {
                    let info = info.unwrap();
                    let got = store.get(&info.digest).unwrap();
                    assert_eq!(got.len() as u64, info.size);
                    assert_eq!(sha256(&got), info.digest, "a listed blob was incomplete");
                    seen += 1;
                }
            }
            seen
        });
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..12 {
                        let data = bytes(256 << 10, t * 100 + i);
                        let mut w = store
                            .writer(&format!("walked-{t}-{i}"), None, None)
                            .unwrap();
                        for chunk in data.chunks(16 << 10) {
                            w.write_all(chunk).unwrap();
                        }
                        w.commit(None, Some(&sha256(&data)), &[]).unwrap();
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        stop.store(true, Ordering::SeqCst);
        assert!(walker.join().unwrap() > 0, "the walker never saw a blob");
    });
    assert_eq!(digests(&store, &[]).len(), 36);
}

/// Of several `kist` processes started on one ref, exactly one ingests it
/// and the others are refused; processes on different refs all succeed.
#[test]
fn processes_race_for_refs() {
    let h = Harness::new(open_embedded);
    let ingest = |reference: &str| {
        Command::new(kist_bin())
            .arg("--store")
            .arg(h.path())
            .args(["ingest", "--ref", reference, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The winner waits on its open stdin, so every loser must give up first.
    let mut racers: Vec<_> = (0..4).map(|_| ingest("raced")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    while refused < racers.len() - 1 {
        assert!(Instant::now() < deadline, "the losers never gave up");
        refused = racers
            .iter_mut()
            .map(|c| c.try_wait().unwrap().is_some())
            .filter(|&exited| exited)
            .count();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut wins = 0;
    for mut racer in racers {
        let mut input = racer.stdin.take().unwrap();
        let _ = input.write_all(b"raced content");
        drop(input);
        let out = racer.wait_with_output().unwrap();
        if out.status.success() {
            assert_eq!(
                String::from_utf8(out.stdout).unwrap().trim(),
                sha256(b"raced content")
            );
            wins += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("unavailable"),
                "{out:?}"
            );
        }
    }
    assert_eq!(wins, 1, "one ref had {wins} writers");

    let separate: Vec<_> = (0..4).map(|i| (i, ingest(&format!("own-{i}")))).collect();
    for (i, mut child) in separate {
        let data = format!("content {i}");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(data.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            sha256(data.as_bytes())
        );
    }
    assert_eq!(digests(&h.store(), &[]).len(), 5);
}
