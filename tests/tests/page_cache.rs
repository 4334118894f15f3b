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
