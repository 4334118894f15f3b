//! The content-store conformance suite (the shape of containerd's
//! `content/testsuite`): each case takes a [`Harness`] on an empty store
//! and checks one part of the contract through the public API. Run it for
//! a store implementation with [`conformance_suite!`](crate::conformance_suite).

use std::io::{Read, Seek, SeekFrom};

use kist::{BlobInfo, Error, Label};

use crate::{Harness, bytes, digests, sha256, sha512, tree};

/// Generates one `#[test]` per conformance case for stores opened by
/// `$open: fn(&Path) -> kist::Store`.
#[macro_export]
macro_rules! conformance_suite {
    ($open:path) => {
        $crate::conformance_suite!(@cases $open;
            round_trip, reader_seeks_and_bounds, blob_invisible_until_commit, oci_layout,
            resume_after_writer_drop, resume_after_host_restart, write_from_file, resume_with_damaged_hash_state,
            resume_when_data_is_behind_hash_state, declared_values_persist_and_conflict,
            size_mismatch_keeps_ingest, digest_mismatch_keeps_ingest, already_exists,
            one_writer_per_ref, truncate, sha512_ingest, commit_with_other_algorithm,
            put_in_one_call, put_batch, labels_update, label_limits, walk_filters, walk_batches, malformed_filters,
            delete, abort, list_statuses, bad_digests, bad_refs, hostile_refs_stay_inside,
            holders_release_and_collect, leases_hold_and_release);
    };
    (@cases $open:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::$case(&$crate::Harness::new($open));
            }
        )*
    };
}

/// `put`, `get`, `info` and a writer agree with a native sha256.
pub fn round_trip(h: &Harness) {
    let store = h.store();
    for (i, len) in [0usize, 1, 4096, 3 << 20].into_iter().enumerate() {
        let data = bytes(len, i as u64);
        let digest = store.put(&data).unwrap();
        assert_eq!(digest, sha256(&data));
        assert_eq!(store.get(&digest).unwrap(), data);
        let info = store.info(&digest).unwrap();
        assert_eq!(
            (info.digest.as_str(), info.size),
            (digest.as_str(), len as u64)
        );
        assert!(info.labels.is_empty());
    }
    let data = bytes(10 << 20, 99);
    let mut w = store
        .writer("round-trip", Some(data.len() as u64), None)
        .unwrap();
    std::io::copy(&mut &data[..], &mut w).unwrap();
    assert_eq!(w.digest().unwrap(), sha256(&data));
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha256(&data));
    assert_eq!(store.get(&sha256(&data)).unwrap(), data);
}

/// `put_with` stores in one call (no ingest), checks the expected digest,
/// keeps labels of stored content, and takes large data through a writer.
pub fn put_in_one_call(h: &Harness) {
    let store = h.store();
    let data = bytes(10_000, 31);
    let d = store.put_with(&data, None, &[("via", "put")]).unwrap();
    assert_eq!(d, sha256(&data));
    assert!(
        store.list_statuses(&[]).unwrap().is_empty(),
        "no ingest left behind"
    );
    assert_eq!(
        pairs(&store.info(&d).unwrap().labels),
        vec![label("via", "put")]
    );
    assert_eq!(
        store.put_with(&data, Some(&d), &[("other", "x")]).unwrap(),
        d
    );
    assert_eq!(
        pairs(&store.info(&d).unwrap().labels),
        vec![label("via", "put")],
        "stored content keeps its labels"
    );
    let wrong = sha256(b"something else");
    assert!(matches!(
        store.put_with(b"new", Some(&wrong), &[]),
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(store.info(&sha256(b"new")), Err(Error::NotFound)));
    assert_eq!(
        store.put_with(&data, Some(&sha512(&data)), &[]).unwrap(),
        sha512(&data)
    );
    assert!(matches!(
        store.put_with(b"x", None, &[("bad key", "v")]),
        Err(Error::InvalidArgument(_))
    ));
    let large = bytes(17 << 20, 32);
    assert_eq!(store.put(&large).unwrap(), sha256(&large));
    assert_eq!(store.get(&sha256(&large)).unwrap(), large);
    let names: Vec<_> = std::fs::read_dir(h.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().starts_with('.')),
        "no temporary file left: {names:?}"
    );
}

/// `put_batch` answers each request on its own, in order, in both
/// durabilities, and splits batches over the per-call limits.
pub fn put_batch(h: &Harness) {
    let store = h.store();
    let request =
        |data: Vec<u8>, expected: Option<String>, labels: &[(&str, &str)]| kist::PutRequest {
            data,
            expected,
            labels: kist_labels(labels),
            holder: None,
        };
    let stored = store.put(b"stored before").unwrap();
    let requests = vec![
        request(bytes(4096, 1), None, &[("n", "1")]),
        request(b"mismatch".to_vec(), Some(sha256(b"other")), &[]),
        request(b"stored before".to_vec(), None, &[("ignored", "x")]),
        request(bytes(100, 2), Some(sha512(&bytes(100, 2))), &[]),
        request(b"bad label".to_vec(), None, &[("bad key", "v")]),
        request(vec![0; (16 << 20) + 1], None, &[]),
        request(Vec::new(), None, &[]),
    ];
    for durability in [kist::Durability::Synced, kist::Durability::Cached] {
        let results = store.put_batch(&requests, durability).unwrap();
        assert_eq!(results.len(), requests.len());
        assert_eq!(results[0].as_deref(), Ok(sha256(&bytes(4096, 1)).as_str()));
        assert!(matches!(results[1], Err(Error::FailedPrecondition(_))));
        assert_eq!(results[2].as_deref(), Ok(stored.as_str()));
        assert_eq!(results[3].as_deref(), Ok(sha512(&bytes(100, 2)).as_str()));
        assert!(matches!(results[4], Err(Error::InvalidArgument(_))));
        assert!(matches!(results[5], Err(Error::InvalidArgument(_))));
        assert_eq!(results[6].as_deref(), Ok(sha256(b"").as_str()));
    }
    assert_eq!(
        pairs(&store.info(&sha256(&bytes(4096, 1))).unwrap().labels),
        vec![label("n", "1")]
    );
    assert!(store.info(&stored).unwrap().labels.is_empty());
    assert!(matches!(
        store.info(&sha256(b"mismatch")),
        Err(Error::NotFound)
    ));
    // More requests and bytes than one call takes: the library splits them.
    let many: Vec<_> = (0..5000u64)
        .map(|i| request(bytes(4096, 1000 + i), None, &[]))
        .collect();
    let results = store.put_batch(&many, kist::Durability::Cached).unwrap();
    for (r, i) in results.iter().zip(1000u64..) {
        assert_eq!(r.as_deref(), Ok(sha256(&bytes(4096, i)).as_str()));
    }
    assert_eq!(
        store.get(&sha256(&bytes(4096, 5999))).unwrap(),
        bytes(4096, 5999)
    );
    assert_eq!(digests(&store, &[]).len(), 5000 + 4);
}

/// Readers seek, read at offsets and refuse reads past the end.
pub fn reader_seeks_and_bounds(h: &Harness) {
    let store = h.store();
    let data = bytes(5 << 20, 7);
    let digest = store.put(&data).unwrap();
    let mut r = store.reader(&digest).unwrap();
    assert_eq!(r.size(), data.len() as u64);
    assert_eq!(r.read_at(100, 50).unwrap(), &data[100..150]);
    assert_eq!(
        r.read_at(data.len() as u64 - 3, 50).unwrap(),
        &data[data.len() - 3..]
    );
    assert_eq!(r.read_at(data.len() as u64, 1).unwrap(), b"");
    assert!(matches!(
        r.read_at(data.len() as u64 + 1, 1),
        Err(Error::OutOfRange)
    ));
    r.seek(SeekFrom::Start(4 << 20)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &data[4 << 20..]);
    r.seek(SeekFrom::End(-10)).unwrap();
    let mut small = [0u8; 4];
    r.read_exact(&mut small).unwrap();
    assert_eq!(small, data[data.len() - 10..data.len() - 6]);
    assert!(matches!(
        store.reader(&sha256(b"absent")),
        Err(Error::NotFound)
    ));
}

/// An ingest is invisible (no blob file, not listed, not found) until it
/// is committed.
pub fn blob_invisible_until_commit(h: &Harness) {
    let store = h.store();
    let data = bytes(1 << 20, 3);
    let mut w = store.writer("invisible", None, None).unwrap();
    w.write_all(&data).unwrap();
    assert!(matches!(store.info(&sha256(&data)), Err(Error::NotFound)));
    assert!(digests(&store, &[]).is_empty());
    assert!(
        !h.path()
            .join("blobs/sha256")
            .join(&sha256(&data)[7..])
            .exists()
    );
    w.commit(None, None, &[]).unwrap();
    assert_eq!(digests(&store, &[]), vec![sha256(&data)]);
}

/// Once used, the store directory is an OCI image layout with blobs at
/// `blobs/<alg>/<hex>`.
pub fn oci_layout(h: &Harness) {
    let store = h.store();
    let digest = store.put(b"layout").unwrap();
    let layout = std::fs::read_to_string(h.path().join("oci-layout")).unwrap();
    assert!(
        layout.contains("\"imageLayoutVersion\":\"1.0.0\""),
        "{layout}"
    );
    let index = std::fs::read_to_string(h.path().join("index.json")).unwrap();
    assert!(index.contains("\"schemaVersion\":2"), "{index}");
    let path = h.path().join("blobs/sha256").join(&digest[7..]);
    assert_eq!(std::fs::read(path).unwrap(), b"layout");
}

/// Dropping a writer keeps the ingest; reopening the ref resumes at its
/// offset and the result is the digest of all the data.
pub fn resume_after_writer_drop(h: &Harness) {
    let store = h.store();
    let data = bytes(3 << 20, 11);
    let mut w = store
        .writer("resume", Some(data.len() as u64), None)
        .unwrap();
    w.write_all(&data[..1 << 20]).unwrap();
    drop(w);
    assert_eq!(store.status("resume").unwrap().offset, 1 << 20);
    let mut w = store.writer("resume", None, None).unwrap();
    assert_eq!(w.status().unwrap().offset, 1 << 20);
    w.write_all(&data[1 << 20..]).unwrap();
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha256(&data));
    assert!(matches!(store.status("resume"), Err(Error::NotFound)));
}

/// `write_from_file` appends a file's bytes as `write_all` would: after
/// written bytes (an unaligned offset), across a drop and resume, short
/// at the file's end, nothing past it; the digest and the stored bytes
/// are the file's, in sha256 and sha512; a lie about the digest is caught
/// at commit, and what was copied stays for the next attempt.
pub fn write_from_file(h: &Harness) {
    let store = h.store();
    let data = bytes((9 << 20) + 77, 40);
    let path = h.path().with_file_name("source");
    std::fs::write(&path, &data).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut w = store
        .writer("copied", Some(data.len() as u64), None)
        .unwrap();
    w.write_all(&data[..5000]).unwrap();
    assert_eq!(w.write_from_file(&file, 5000, 3 << 20).unwrap(), 3 << 20);
    drop(w);
    let mut w = store.writer("copied", None, None).unwrap();
    let at = w.status().unwrap().offset;
    assert_eq!(at, 5000 + (3 << 20));
    let rest = data.len() as u64 - at;
    assert_eq!(w.write_from_file(&file, at, u64::MAX - at).unwrap(), rest);
    assert_eq!(w.write_from_file(&file, data.len() as u64, 10).unwrap(), 0);
    assert_eq!(w.digest().unwrap(), sha256(&data));
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha256(&data));
    assert_eq!(store.get(&sha256(&data)).unwrap(), data);

    let part = &data[1..(2 << 20) + 1];
    let mut w = store.writer("sha512", None, Some(&sha512(part))).unwrap();
    assert_eq!(
        w.write_from_file(&file, 1, part.len() as u64).unwrap(),
        part.len() as u64
    );
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha512(part));

    let mut w = store.writer("lie", None, Some(&sha256(b"other"))).unwrap();
    assert_eq!(w.write_from_file(&file, 0, 4096).unwrap(), 4096);
    assert!(matches!(
        w.commit(None, None, &[]),
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(store.status("lie").unwrap().offset, 4096);
}

/// An ingest survives the whole host going away: a new `Store` on the same
/// directory resumes it.
pub fn resume_after_host_restart(h: &Harness) {
    let data = bytes(2 << 20, 12);
    {
        let store = h.store();
        let mut w = store.writer("restart", None, Some(&sha256(&data))).unwrap();
        w.write_all(&data[..777]).unwrap();
    }
    let store = h.store();
    let status = store.status("restart").unwrap();
    assert_eq!(
        (status.offset, status.expected.as_deref()),
        (777, Some(sha256(&data).as_str()))
    );
    let mut w = store.writer("restart", None, None).unwrap();
    w.write_all(&data[777..]).unwrap();
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha256(&data));
}

/// A damaged saved hash state is detected and the data re-hashed: the
/// digest is still right, and the ingest is never silently restarted.
pub fn resume_with_damaged_hash_state(h: &Harness) {
    let data = bytes(1 << 20, 13);
    let store = h.store();
    for (i, damage) in [
        flip_a_byte as fn(&mut Vec<u8>),
        |s| s.truncate(5),
        |s| s.clear(),
    ]
    .into_iter()
    .enumerate()
    {
        let r = format!("damaged-{i}");
        let mut w = store.writer(&r, None, None).unwrap();
        w.write_all(&data[..1000 + i]).unwrap();
        drop(w);
        let state = ingest_dir(h, &r).join("hashstate");
        let mut bytes = std::fs::read(&state).expect("a dropped writer saves its hash state");
        damage(&mut bytes);
        std::fs::write(&state, bytes).unwrap();
        let mut w = store.writer(&r, None, None).unwrap();
        assert_eq!(w.status().unwrap().offset, 1000 + i as u64);
        w.write_all(&data[1000 + i..]).unwrap();
        let d = w.commit(None, None, &[]).unwrap();
        assert_eq!(d, sha256(&data));
        store.delete(&d).unwrap();
    }
}

#[allow(clippy::ptr_arg)]
fn flip_a_byte(state: &mut Vec<u8>) {
    // (a Vec to share the signature of the other damages, which resize)
    let mid = state.len() / 2;
    state[mid] ^= 0x55;
}

/// Data shorter than the saved hash state (a power cut lost the tail):
/// the state is ignored and what is on disk is hashed.
pub fn resume_when_data_is_behind_hash_state(h: &Harness) {
    let data = bytes(100_000, 14);
    let store = h.store();
    let mut w = store.writer("behind", None, None).unwrap();
    w.write_all(&data).unwrap();
    drop(w);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(ingest_dir(h, "behind").join("data"))
        .unwrap();
    file.set_len(60_000).unwrap();
    let mut w = store.writer("behind", None, None).unwrap();
    assert_eq!(w.status().unwrap().offset, 60_000);
    w.write_all(&data[60_000..]).unwrap();
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha256(&data));
}

/// The ingest directory of `r` (the sha256 of the ref).
fn ingest_dir(h: &Harness, r: &str) -> std::path::PathBuf {
    h.path().join("ingest").join(&sha256(r.as_bytes())[7..])
}

/// Declared size and digest persist with the ingest; reopening with
/// different ones fails and keeps it.
pub fn declared_values_persist_and_conflict(h: &Harness) {
    let data = bytes(5000, 15);
    let store = h.store();
    drop(
        store
            .writer("declared", Some(5000), Some(&sha256(&data)))
            .unwrap(),
    );
    let status = h.store().status("declared").unwrap();
    assert_eq!(status.total, Some(5000));
    assert_eq!(status.expected, Some(sha256(&data)));
    assert!(matches!(
        store.writer("declared", Some(4999), None),
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        store.writer("declared", None, Some(&sha256(b"other"))),
        Err(Error::FailedPrecondition(_))
    ));
    // A value declared later is recorded.
    drop(store.writer("later", None, None).unwrap());
    drop(store.writer("later", Some(3), None).unwrap());
    assert_eq!(store.status("later").unwrap().total, Some(3));
    let mut w = store.writer("declared", None, None).unwrap();
    w.write_all(&data[..4000]).unwrap();
    // The recorded size is checked at commit even when not passed again.
    let w = {
        assert!(matches!(
            w.commit(None, None, &[]),
            Err(Error::FailedPrecondition(_))
        ));
        store.writer("declared", None, None).unwrap()
    };
    let mut w = w;
    w.write_all(&data[4000..]).unwrap();
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha256(&data));
}

/// A wrong size at commit fails, keeps the ingest, and commits nothing.
pub fn size_mismatch_keeps_ingest(h: &Harness) {
    let store = h.store();
    let mut w = store.writer("size", None, None).unwrap();
    w.write_all(b"12345").unwrap();
    assert!(
        matches!(w.commit(Some(6), None, &[]), Err(Error::FailedPrecondition(m)) if m.contains("size"))
    );
    assert_eq!(store.status("size").unwrap().offset, 5);
    assert!(digests(&store, &[]).is_empty());
    let w = store.writer("size", None, None).unwrap();
    assert_eq!(w.commit(Some(5), None, &[]).unwrap(), sha256(b"12345"));
}

/// A wrong digest at commit fails, keeps the ingest, and commits nothing.
pub fn digest_mismatch_keeps_ingest(h: &Harness) {
    let store = h.store();
    let mut w = store.writer("digest", None, None).unwrap();
    w.write_all(b"abc").unwrap();
    let wrong = sha256(b"abd");
    assert!(
        matches!(w.commit(None, Some(&wrong), &[]), Err(Error::FailedPrecondition(m)) if m.contains("digest"))
    );
    assert_eq!(store.status("digest").unwrap().offset, 3);
    assert!(digests(&store, &[]).is_empty());
    store.abort("digest").unwrap();
    assert!(matches!(store.status("digest"), Err(Error::NotFound)));
}

/// Committing stored content fails with already-exists and removes the
/// ingest; opening a writer for a stored digest fails the same way.
pub fn already_exists(h: &Harness) {
    let store = h.store();
    let digest = store.put(b"twice").unwrap();
    store.label(&digest, &[("keep", Some("me"))]).unwrap();
    let mut w = store.writer("second", None, None).unwrap();
    w.write_all(b"twice").unwrap();
    assert!(matches!(
        w.commit(None, None, &[("new", "label")]),
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(store.status("second"), Err(Error::NotFound)));
    assert_eq!(
        pairs(&store.info(&digest).unwrap().labels),
        vec![label("keep", "me")]
    );
    assert!(matches!(
        store.writer("third", None, Some(&digest)),
        Err(Error::AlreadyExists)
    ));
    assert_eq!(store.put(b"twice").unwrap(), digest);
}

/// One writer per ref: a second open fails at once with unavailable, in
/// the same store handle and in another one; other refs are independent.
pub fn one_writer_per_ref(h: &Harness) {
    let (a, b) = (h.store(), h.store());
    let w = a.writer("exclusive", None, None).unwrap();
    assert!(matches!(
        a.writer("exclusive", None, None),
        Err(Error::Unavailable)
    ));
    assert!(matches!(
        b.writer("exclusive", None, None),
        Err(Error::Unavailable)
    ));
    assert!(matches!(b.abort("exclusive"), Err(Error::Unavailable)));
    let other = b.writer("other", None, None).unwrap();
    drop(w);
    drop(b.writer("exclusive", None, None).unwrap());
    drop(other);
}

/// Truncate to 0 starts over; other sizes are out of range.
pub fn truncate(h: &Harness) {
    let store = h.store();
    let mut w = store.writer("truncate", None, None).unwrap();
    w.write_all(b"wrong data").unwrap();
    assert!(matches!(w.truncate(11), Err(Error::OutOfRange)));
    w.truncate(0).unwrap();
    assert_eq!(w.status().unwrap().offset, 0);
    w.write_all(b"right").unwrap();
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha256(b"right"));
    // Back to a size within: what is kept is hashed again, and the hash
    // holds across a drop and a resume.
    let mut w = store.writer("cut", None, None).unwrap();
    w.write_all(b"wrong data").unwrap();
    w.truncate(5).unwrap();
    assert_eq!(w.status().unwrap().offset, 5);
    assert_eq!(w.digest().unwrap(), sha256(b"wrong"));
    w.write_all(b" turn").unwrap();
    drop(w);
    let mut w = store.writer("cut", None, None).unwrap();
    assert_eq!(w.status().unwrap().offset, 10);
    assert_eq!(w.commit(None, None, &[]).unwrap(), sha256(b"wrong turn"));
}

/// An ingest declared with a sha512 digest hashes with sha512 and is
/// stored under `blobs/sha512/`.
pub fn sha512_ingest(h: &Harness) {
    let store = h.store();
    let data = bytes(300_000, 16);
    let expected = sha512(&data);
    let mut w = store.writer("sha512", None, Some(&expected)).unwrap();
    w.write_all(&data).unwrap();
    assert_eq!(w.digest().unwrap(), expected);
    assert_eq!(w.commit(None, None, &[]).unwrap(), expected);
    assert_eq!(store.get(&expected).unwrap(), data);
    assert!(h.path().join("blobs/sha512").join(&expected[7..]).is_file());
}

/// A commit whose expected digest uses another algorithm than the ingest
/// re-hashes with that algorithm and stores the blob under it.
pub fn commit_with_other_algorithm(h: &Harness) {
    let store = h.store();
    let data = bytes(200_000, 17);
    let mut w = store.writer("other-alg", None, None).unwrap();
    w.write_all(&data).unwrap();
    assert_eq!(
        w.commit(None, Some(&sha512(&data)), &[]).unwrap(),
        sha512(&data)
    );
    assert_eq!(store.info(&sha512(&data)).unwrap().size, data.len() as u64);
}

fn label(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

fn kist_labels(labels: &[(&str, &str)]) -> Vec<Label> {
    labels
        .iter()
        .map(|(k, v)| Label {
            key: (*k).into(),
            value: (*v).into(),
        })
        .collect()
}

fn pairs(labels: &[Label]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect()
}

/// Labels: set at commit, replaced wholesale, changed per key, removed,
/// persisted; only labels are mutable.
pub fn labels_update(h: &Harness) {
    let store = h.store();
    let mut w = store.writer("labelled", None, None).unwrap();
    w.write_all(b"labelled").unwrap();
    let d = w.commit(None, None, &[("b", "2"), ("a", "1")]).unwrap();
    assert_eq!(
        pairs(&store.info(&d).unwrap().labels),
        vec![label("a", "1"), label("b", "2")]
    );
    let mut info: BlobInfo = store.info(&d).unwrap();
    info.labels = vec![Label {
        key: "c".into(),
        value: "3".into(),
    }];
    assert_eq!(
        pairs(&store.update(&info, &[]).unwrap().labels),
        vec![label("c", "3")]
    );
    info.labels = vec![
        Label {
            key: "d".into(),
            value: "4".into(),
        },
        Label {
            key: "c".into(),
            value: "ignored".into(),
        },
    ];
    assert_eq!(
        pairs(&store.update(&info, &["labels.d"]).unwrap().labels),
        vec![label("c", "3"), label("d", "4")]
    );
    info.labels = vec![];
    assert_eq!(
        pairs(&store.update(&info, &["labels.c"]).unwrap().labels),
        vec![label("d", "4")]
    );
    let updated = store
        .label(&d, &[("x.y/z", Some("dotted")), ("d", None)])
        .unwrap();
    assert_eq!(pairs(&updated.labels), vec![label("x.y/z", "dotted")]);
    assert!(updated.updated_at.seconds >= updated.created_at.seconds);
    assert_eq!(
        pairs(&h.store().info(&d).unwrap().labels),
        vec![label("x.y/z", "dotted")]
    );
    for bad in ["size", "digest", "labels.", "created_at"] {
        assert!(
            matches!(store.update(&info, &[bad]), Err(Error::InvalidArgument(_))),
            "{bad}"
        );
    }
    let absent = BlobInfo {
        digest: sha256(b"absent"),
        ..info
    };
    assert!(matches!(store.update(&absent, &[]), Err(Error::NotFound)));
}

/// Key plus value may be 4096 bytes, not more; keys are printable ASCII.
pub fn label_limits(h: &Harness) {
    let store = h.store();
    let d = store.put(b"limits").unwrap();
    let at_limit = "v".repeat(4096 - 3);
    store.label(&d, &[("key", Some(&at_limit))]).unwrap();
    let over = "v".repeat(4096 - 2);
    assert!(
        matches!(store.label(&d, &[("key", Some(&over))]), Err(Error::InvalidArgument(m)) if m.contains("4096"))
    );
    for key in ["with space", "new\nline", "tab\t", "é"] {
        assert!(
            matches!(
                store.label(&d, &[(key, Some("v"))]),
                Err(Error::InvalidArgument(_))
            ),
            "{key:?}"
        );
    }
    let mut w = store.writer("bad-label", None, None).unwrap();
    w.write_all(b"x").unwrap();
    assert!(matches!(
        w.commit(None, None, &[("", "empty key")]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        pairs(&store.info(&d).unwrap().labels),
        vec![label("key", &at_limit)]
    );
    assert_eq!(store.status("bad-label").unwrap().offset, 1);
}

/// Every filter operator over digest, size and labels, with AND and OR.
pub fn walk_filters(h: &Harness) {
    let store = h.store();
    let a = store.put(b"a").unwrap();
    let bb = store.put(b"bb").unwrap();
    let ccc = store.put(b"ccc").unwrap();
    store
        .label(&a, &[("app", Some("web")), ("tier", Some("front"))])
        .unwrap();
    store
        .label(&bb, &[("app", Some("db")), ("x.y", Some("dot"))])
        .unwrap();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        digests(&store, &[]),
        sorted(vec![a.clone(), bb.clone(), ccc.clone()])
    );
    assert_eq!(digests(&store, &["labels.app==web"]), vec![a.clone()]);
    assert_eq!(
        digests(&store, &["labels.app!=web"]),
        sorted(vec![bb.clone(), ccc.clone()])
    );
    assert_eq!(digests(&store, &["labels.app~=^d"]), vec![bb.clone()]);
    assert_eq!(
        digests(&store, &["labels.app"]),
        sorted(vec![a.clone(), bb.clone()])
    );
    assert_eq!(
        digests(&store, &["labels.app,labels.tier==front"]),
        vec![a.clone()]
    );
    assert_eq!(
        digests(&store, &["labels.app==web", "size==3"]),
        sorted(vec![a.clone(), ccc.clone()])
    );
    assert_eq!(
        digests(&store, &[&format!("digest=={bb}")]),
        vec![bb.clone()]
    );
    assert_eq!(digests(&store, &["labels.\"x.y\"==dot"]), vec![bb.clone()]);
    assert_eq!(digests(&store, &["labels.x.y==dot"]), vec![bb.clone()]);
    assert_eq!(digests(&store, &["labels.app==\"web\""]), vec![a.clone()]);
    assert_eq!(
        digests(&store, &["labels.app~=/^(web|db)$/"]),
        sorted(vec![a.clone(), bb.clone()])
    );
    assert_eq!(digests(&store, &["size!=1 , size!=2"]), vec![ccc.clone()]);
    assert!(digests(&store, &["labels.none"]).is_empty());
}

/// Walks return everything across many batches.
pub fn walk_batches(h: &Harness) {
    let store = h.store();
    let mut expected: Vec<String> = (0..600u32)
        .map(|i| store.put(&i.to_le_bytes()).unwrap())
        .collect();
    expected.sort();
    assert_eq!(digests(&store, &[]), expected);
    assert_eq!(digests(&store, &["size==4"]).len(), 600);
}

/// Malformed filters fail with invalid-argument before anything is listed.
pub fn malformed_filters(h: &Harness) {
    let store = h.store();
    store.put(b"x").unwrap();
    for bad in [
        "",
        "labels.a==",
        "==x",
        "labels.a~=(",
        "labels.\"open",
        "a b",
        "labels.a==1,",
    ] {
        assert!(
            matches!(store.walk(&[bad]), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
        assert!(
            matches!(store.list_statuses(&[bad]), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
}

/// Delete removes a blob and its labels; a second delete is not-found.
pub fn delete(h: &Harness) {
    let store = h.store();
    let d = store.put(b"doomed").unwrap();
    store.label(&d, &[("a", Some("b"))]).unwrap();
    let mut open_reader = store.reader(&d).unwrap();
    store.delete(&d).unwrap();
    assert!(matches!(store.info(&d), Err(Error::NotFound)));
    assert!(matches!(store.delete(&d), Err(Error::NotFound)));
    assert!(digests(&store, &[]).is_empty());
    // A reader opened before the delete keeps the old bytes.
    let mut old = Vec::new();
    open_reader.read_to_end(&mut old).unwrap();
    assert_eq!(old, b"doomed");
    // Stored again, it comes back without the old labels.
    store.put(b"doomed").unwrap();
    assert!(store.info(&d).unwrap().labels.is_empty());
}

/// Abort removes an ingest; a missing one is not-found, a live one
/// unavailable.
pub fn abort(h: &Harness) {
    let store = h.store();
    let mut w = store.writer("aborted", None, None).unwrap();
    w.write_all(b"partial").unwrap();
    assert!(matches!(store.abort("aborted"), Err(Error::Unavailable)));
    drop(w);
    store.abort("aborted").unwrap();
    assert!(matches!(store.abort("aborted"), Err(Error::NotFound)));
    assert!(
        std::fs::read_dir(h.path().join("ingest"))
            .unwrap()
            .next()
            .is_none()
    );
    // The ref starts afresh.
    assert_eq!(
        store
            .writer("aborted", None, None)
            .unwrap()
            .status()
            .unwrap()
            .offset,
        0
    );
    // An ingest whose metadata is damaged reports it, and can be aborted.
    std::fs::write(ingest_dir(h, "aborted").join("meta"), b"{ damaged").unwrap();
    assert!(matches!(store.status("aborted"), Err(Error::Corrupt(m)) if m.contains("meta")));
    assert!(matches!(
        store.writer("aborted", None, None),
        Err(Error::Corrupt(_))
    ));
    store.abort("aborted").unwrap();
    assert!(matches!(store.status("aborted"), Err(Error::NotFound)));
}

/// Statuses list ingests, filtered by ref (regex) and declared values.
pub fn list_statuses(h: &Harness) {
    let store = h.store();
    for (r, total) in [
        ("layer-1", Some(10)),
        ("layer-2", None),
        ("config", Some(3)),
    ] {
        let mut w = store.writer(r, total, None).unwrap();
        w.write_all(b"abc").unwrap();
    }
    let refs = |filters: &[&str]| {
        store
            .list_statuses(filters)
            .unwrap()
            .into_iter()
            .map(|s| s.ref_)
            .collect::<Vec<_>>()
    };
    assert_eq!(refs(&[]), ["config", "layer-1", "layer-2"]);
    assert_eq!(refs(&["ref~=^layer-"]), ["layer-1", "layer-2"]);
    assert_eq!(refs(&["ref==config"]), ["config"]);
    assert_eq!(refs(&["total"]), ["config", "layer-1"]);
    assert_eq!(refs(&["total==10", "ref==config"]), ["config", "layer-1"]);
    assert_eq!(refs(&["offset==3,ref!=config"]), ["layer-1", "layer-2"]);
    let status = store.status("layer-1").unwrap();
    assert_eq!((status.offset, status.total), (3, Some(10)));
    assert!(status.updated_at.seconds >= status.started_at.seconds);
}

/// Malformed or unsupported digests are refused everywhere, and nothing
/// is written.
pub fn bad_digests(h: &Harness) {
    let store = h.store();
    let before = tree(h.path());
    let hex64 = "a".repeat(64);
    for bad in [
        String::new(),
        hex64.clone(),
        format!("sha256:{}", &hex64[1..]),
        format!("sha256:{}", hex64.to_uppercase()),
        format!("sha256:{hex64}0"),
        format!("md5:{hex64}"),
        format!("sha256:{}g", &hex64[1..]),
        format!("sha256:../{}", &hex64[3..]),
        format!("sha512:{hex64}"),
        "sha256:".into(),
    ] {
        assert!(
            matches!(store.info(&bad), Err(Error::InvalidArgument(_))),
            "info {bad:?}"
        );
        assert!(
            matches!(store.delete(&bad), Err(Error::InvalidArgument(_))),
            "delete {bad:?}"
        );
        assert!(
            matches!(store.reader(&bad), Err(Error::InvalidArgument(_))),
            "reader {bad:?}"
        );
        assert!(
            matches!(
                store.writer("r", None, Some(&bad)),
                Err(Error::InvalidArgument(_))
            ),
            "writer {bad:?}"
        );
    }
    assert_eq!(tree(h.path()), before);
}

/// Empty refs, refs with NUL and refs over 1 KiB are refused; nothing is
/// written.
pub fn bad_refs(h: &Harness) {
    let store = h.store();
    let before = tree(h.path());
    for bad in [String::new(), "a\0b".into(), "r".repeat(1025)] {
        assert!(
            matches!(
                store.writer(&bad, None, None),
                Err(Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(store.status(&bad), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
        assert!(
            matches!(store.abort(&bad), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    assert_eq!(tree(h.path()), before);
    drop(store.writer(&"r".repeat(1024), None, None).unwrap());
}

/// Refs that look like paths are only names: they are hashed, never used
/// as paths, so nothing lands outside `ingest/`.
pub fn hostile_refs_stay_inside(h: &Harness) {
    let store = h.store();
    let outside = h.path().parent().unwrap().to_path_buf();
    let before_outside = std::fs::read_dir(&outside).unwrap().count();
    for r in [
        "../../escape",
        "/etc/passwd",
        "..",
        ".",
        "a/../../b",
        "ingest/../blobs",
    ] {
        let mut w = store.writer(r, None, None).unwrap();
        w.write_all(r.as_bytes()).unwrap();
        drop(w);
        assert_eq!(store.status(r).unwrap().ref_, r);
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), before_outside);
    assert_eq!(
        std::fs::read_dir(h.path().join("ingest")).unwrap().count(),
        6
    );
    assert!(!h.path().join("escape").exists() && !h.path().join("b").exists());
}

/// Holders: what each stores it holds; a blob stays while any holds it or
/// a held blob references it, and a collection removes it after.
pub fn holders_release_and_collect(h: &Harness) {
    let store = h.store();
    let other = store.as_holder("other");
    let shared = store.put(b"shared").unwrap();
    other.put(b"shared").unwrap();
    let child = store.put(b"child").unwrap();
    let parent = other
        .put_with(b"parent", None, &[("containerd.io/gc.ref.content", &child)])
        .unwrap();
    assert_eq!(store.info(&shared).unwrap().holders, ["default", "other"]);
    assert_eq!(store.delete(&shared).unwrap(), ["other"]);
    assert!(store.delete(&child).unwrap().is_empty());
    // Released by its holder, the child is still reached through the
    // parent's reference: kept by a collection, so visible (holders none).
    assert!(store.info(&child).unwrap().holders.is_empty());
    assert_eq!(store.get(&child).unwrap(), b"child");
    let cached: Vec<String> = store
        .walk_cached(&[])
        .unwrap()
        .map(|i| i.unwrap().digest)
        .collect();
    assert_eq!(cached, std::slice::from_ref(&child));
    assert_eq!(crate::collect(&store), 0, "the parent keeps the child");
    other.delete(&parent).unwrap();
    other.delete(&shared).unwrap();
    assert!(crate::collect(&store) > 0);
    assert_eq!(tree(&h.path().join("blobs/sha256")), Vec::<String>::new());
    assert_eq!(digests(&store, &["holders.other"]), Vec::<String>::new());
}

/// A lease holds what is written through it until it is deleted.
pub fn leases_hold_and_release(h: &Harness) {
    let store = h.store();
    let lease = store.leases().create(None, None, &[("a", "b")]).unwrap();
    let leased = store.with_lease(&lease.id);
    let d = leased.put(b"leased").unwrap();
    assert_eq!(
        store.info(&d).unwrap().holders,
        [format!("lease/{}", lease.id)]
    );
    assert_eq!(crate::collect(&store), 0);
    store.leases().delete(&lease.id).unwrap();
    assert!(matches!(store.info(&d), Err(Error::NotFound)));
    assert_eq!(crate::collect(&store), 6);
    assert!(matches!(
        store.as_holder("lease/gone").put(b"x"),
        Err(Error::NotFound)
    ));
}
