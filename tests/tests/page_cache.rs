//! Where a large ingest's bytes end up: written straight to the disk with
//! direct I/O by default (nothing left in the page cache), through the
//! page cache with `StoreBuilder::direct_io(false)`, for embedders who
//! read what they store right away. Measured with util-linux's `fincore`.

use std::path::Path;
use std::process::Command;

use kist_tests::{bytes, sha256};

/// Bytes of `path` resident in the page cache.
fn resident(path: &Path) -> u64 {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Whether the filesystem of `dir` takes direct I/O (tmpfs does not: then
/// kist writes through the page cache whatever it is told).
fn takes_direct_io(dir: &Path) -> bool {
    let probe = dir.join("direct-probe");
    let ok = Command::new("dd")
        .args(["if=/dev/zero", "bs=4096", "count=1", "oflag=direct"])
        .arg(format!("of={}", probe.display()))
        .output()
        .expect("dd runs")
        .status
        .success();
    let _ = std::fs::remove_file(probe);
    ok
}

#[test]
fn direct_io_leaves_the_page_cache_alone_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let direct_possible = takes_direct_io(dir.path());
    const SIZE: usize = 64 << 20;
    for (seed, direct) in [(1, true), (2, false)] {
        let store = kist::Store::builder(dir.path().join("store"))
            .direct_io(direct)
            .open()
            .unwrap();
        let data = bytes(SIZE, seed);
        let mut writer = store.writer(&format!("w{seed}"), None, None).unwrap();
        std::io::copy(&mut &data[..], &mut writer).unwrap();
        let digest = writer.commit(None, None, &[]).unwrap();
        assert_eq!(digest, sha256(&data));
        let blob = dir
            .path()
            .join("store/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let cached = resident(&blob);
        if direct && direct_possible {
            // Only what is not a whole aligned 4 MiB step goes buffered.
            assert!(cached < SIZE as u64 / 8, "{cached} bytes cached");
        } else {
            assert_eq!(cached, SIZE as u64, "direct: {direct}");
        }
        assert_eq!(store.get(&digest).unwrap(), data);
    }
}

/// Proves: a blob read from the device (just ingested with direct I/O),
/// sequentially in containerd's 32 KiB reads and in 1 MiB chunks, comes
/// back byte for byte while the reader reads ahead of itself, and a purge
/// in the middle stops the reader at once: reading ahead only fills the
/// page cache, every read is still the loan's checked read.
#[test]
fn reads_from_the_device_read_ahead_and_stop_at_a_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store = kist::Store::open(dir.path().join("store")).unwrap();
    const SIZE: usize = 48 << 20;
    let ingest = |seed| {
        let data = bytes(SIZE, seed);
        let mut writer = store.writer(&format!("cold-{seed}"), None, None).unwrap();
        std::io::copy(&mut &data[..], &mut writer).unwrap();
        (writer.commit(None, None, &[]).unwrap(), data)
    };

    let (digest, data) = ingest(7);
    let mut reader = store.reader(&digest).unwrap();
    let mut at = 0;
    while at < SIZE {
        let piece = reader.read_at(at as u64, 32 << 10).unwrap();
        assert_eq!(piece, data[at..at + piece.len()], "32 KiB read at {at}");
        at += piece.len();
    }

    let (digest, data) = ingest(8);
    let mut chunked = store.reader(&digest).unwrap();
    let mut copy = Vec::new();
    for _ in 0..8 {
        copy.extend_from_slice(&chunked.next_chunk().unwrap());
    }
    assert_eq!(copy, data[..copy.len()], "1 MiB chunks");
    store.purge(&digest).unwrap();
    assert!(
        matches!(chunked.next_chunk(), Err(kist::Error::NotFound)),
        "a purged blob is not served, read ahead or not"
    );
}
