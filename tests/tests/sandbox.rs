//! The host keeps the component inside the store directory and inside its
//! memory and time limits, and survives a guest that breaks them.

use std::os::unix::fs::symlink;
use std::time::Duration;

use kist::{Error, Store};
use kist_tests::{Harness, bytes, digests, open_embedded, sha256};

/// A symlink planted where a blob belongs is neither followed nor listed.
#[test]
fn planted_blob_symlink_is_not_followed() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    store.put(b"lays out the store").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"secret").unwrap();
    let d = sha256(b"secret");
    symlink(&secret, h.path().join("blobs/sha256").join(&d[7..])).unwrap();
    assert!(matches!(store.info(&d), Err(Error::Corrupt(m)) if m.contains("not a regular file")));
    assert!(matches!(store.reader(&d), Err(Error::Corrupt(_))));
    assert!(
        !digests(&store, &[]).contains(&d),
        "a symlink is not a blob"
    );
    // Removing the entry removes the link, not its target.
    store.delete(&d).unwrap();
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
}

/// Store directories replaced by symlinks to the outside cannot be used to
/// write outside the store.
#[test]
fn symlinked_directories_do_not_escape() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let d = store.put(b"x").unwrap();
    let outside = tempfile::tempdir().unwrap();
    for dir in ["ingest", "labels/sha256"] {
        let path = h.path().join(dir);
        std::fs::remove_dir_all(&path).unwrap();
        symlink(outside.path(), &path).unwrap();
    }
    assert!(matches!(
        store.writer("escape", None, None),
        Err(Error::Io(_))
    ));
    assert!(matches!(
        store.label(&d, &[("a", Some("b"))]),
        Err(Error::Io(_))
    ));
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
}

/// A `locks` directory replaced by a symlink is refused by the host.
#[test]
fn symlinked_lock_dir_is_refused() {
    let h = Harness::new(open_embedded);
    drop(h.store());
    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(h.path().join("locks")).unwrap();
    symlink(outside.path(), h.path().join("locks")).unwrap();
    assert!(Store::open(h.path()).is_err());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

/// A call that needs more guest memory than the cap traps with a clear
/// error, loses nothing, and the next call works on a fresh instance;
/// streamed reads need no guest memory at all.
#[test]
fn memory_cap_traps_and_recovers() {
    let h = Harness::new(open_embedded);
    let big = bytes(12 << 20, 1);
    let d = h.store().put(&big).unwrap();
    let small = Store::builder(h.path())
        .memory_limit(3 << 20)
        .open()
        .unwrap();
    let mut w = small.writer("too-big", None, None).unwrap();
    w.write_all(b"kept").unwrap();
    assert!(matches!(w.write_all(&big), Err(Error::Component(_))));
    drop(w);
    assert_eq!(
        small.status("too-big").unwrap().offset,
        4,
        "the failed write left the ingest as it was"
    );
    assert_eq!(small.put(b"after").unwrap(), sha256(b"after"));
    // 12 MiB through a 3 MiB guest: the stream bypasses guest memory.
    assert_eq!(small.get(&d).unwrap(), big);
    // And so does a reader: the host reads the file the component lent it.
    let mut r = small.reader(&d).unwrap();
    assert_eq!(r.read_at(0, 12 << 20).unwrap(), big);
}

/// A call that keeps working is never cut by its deadline, however short
/// and however long the work (a resume that re-hashes 64 MiB under a
/// 20 ms deadline completes); a runaway call, one that asks the host for
/// nothing, is (`hostile::runaways_are_stopped`).
#[test]
fn the_deadline_spares_calls_that_make_progress() {
    let h = Harness::new(open_embedded);
    let data = bytes(64 << 20, 2);
    let mut w = h.store().writer("slow", None, None).unwrap();
    w.write_all(&data).unwrap();
    drop(w);
    // Without a saved hash state, resuming re-hashes all 64 MiB.
    std::fs::remove_file(
        h.path()
            .join("ingest")
            .join(&sha256(b"slow")[7..])
            .join("hashstate"),
    )
    .unwrap();
    let strict = Store::builder(h.path())
        .call_timeout(Duration::from_millis(20))
        .open()
        .unwrap();
    let started = std::time::Instant::now();
    let mut resumed = strict.writer("slow", None, None).unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(20),
        "not a long call"
    );
    assert_eq!(resumed.digest().unwrap(), sha256(&data));
}
