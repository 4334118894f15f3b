//! Blobs shared through one bucket on a real Ceph RGW started by the
//! test: stores in their own directories (nodes) on one bucket prefix keep
//! each blob once, as `blobs/<alg>/<hex>`, written straight from the
//! committed file; a node that lacks a blob fetches it when it takes a
//! hold, checked against the digest.

use std::time::Duration;

use kist::{Error, Store};
use kist_tests::rgw::Rgw;

/// A store in `dir` on the bucket `url` of `rgw`: one node.
fn node(rgw: &Rgw, dir: &std::path::Path, url: &str) -> Store {
    Store::builder(dir)
        .object_bucket(rgw.bucket(url))
        .call_timeout(Duration::from_secs(600))
        .open()
        .expect("a store on the bucket")
}

/// `len` bytes that differ with `seed`.
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 13) as u8)
        .collect()
}

/// The key of `digest`'s object under `prefix`.
fn key(prefix: &str, digest: &str) -> String {
    format!("{prefix}/blobs/{}", digest.replace(':', "/"))
}

/// Stores `bytes` through a writer (as an ingest or a registry upload
/// does), committing with the digest declared.
fn ingest(store: &Store, reference: &str, bytes: &[u8]) -> String {
    let digest = kist_tests::sha256(bytes);
    let mut w = store.writer(reference, None, None).unwrap();
    w.write_all(bytes).unwrap();
    w.commit(Some(bytes.len() as u64), Some(&digest), &[])
        .unwrap();
    digest
}

/// Proves: a blob `put` on one node and one ingested there (20 MiB: a
/// multipart upload) are in the bucket, byte for byte, as soon as the
/// calls return; another node that never saw them holds each with one
/// call and reads the same bytes, and its copy survives the bucket
/// losing the object (it is the node's own now).
#[test]
fn a_blob_stored_on_one_node_is_fetched_by_another() {
    let rgw = Rgw::start();
    rgw.create_bucket("kist");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&rgw, a_dir.path(), "s3://kist/nodes");
    let b = node(&rgw, b_dir.path(), "s3://kist/nodes");

    let small = data(1, 100_000);
    let big = data(2, 20 << 20);
    let small_digest = a.put(&small).unwrap();
    let big_digest = ingest(&a, "big", &big);
    for (digest, bytes) in [(&small_digest, &small), (&big_digest, &big)] {
        assert_eq!(&rgw.get("kist", &key("nodes", digest)), bytes);
        assert!(matches!(b.info(digest), Err(Error::NotFound)));
        let info = b.hold(digest).expect("node b fetches the blob");
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(&b.get(digest).unwrap(), bytes);
    }
    let keys = rgw.content_keys("kist");
    assert_eq!(keys.len(), 2, "{keys:?}");

    // Node b's copy is its own: a node is a cache of the bucket, not a
    // view of it.
    rgw.delete("kist", &key("nodes", &small_digest));
    assert_eq!(b.get(&small_digest).unwrap(), small);
    assert_eq!(problems(&b), Vec::<String>::new());
}

/// Proves: the same 20 MiB blob ingested on three nodes at once is one
/// object with the right bytes, and every node holds it; a blob a node
/// already has is not sent again when the node holds it anew.
#[test]
fn identical_blobs_on_three_nodes_are_one_object() {
    let rgw = Rgw::start();
    rgw.create_bucket("kist");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Store> = dirs
        .iter()
        .map(|d| node(&rgw, d.path(), "s3://kist/shared"))
        .collect();
    let bytes = data(3, 20 << 20);
    let bytes = &bytes;
    let digests: Vec<String> = std::thread::scope(|s| {
        let running: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| s.spawn(move || ingest(n, &format!("same-{i}"), bytes)))
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(digests.iter().all(|d| *d == digests[0]));
    assert_eq!(rgw.content_keys("kist"), [key("shared", &digests[0])]);
    assert_eq!(&rgw.get("kist", &key("shared", &digests[0])), bytes);
    for n in &nodes {
        assert_eq!(n.info(&digests[0]).unwrap().size, bytes.len() as u64);
    }
}

/// Proves: an object whose bytes are not its digest's (damaged in the
/// bucket) is refused with `corrupt` when a node fetches it, and the node
/// keeps nothing of it: no blob, no hold, no temporary file; a digest the
/// bucket lacks is `not-found`.
#[test]
fn a_damaged_object_is_refused() {
    let rgw = Rgw::start();
    rgw.create_bucket("kist");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&rgw, a_dir.path(), "s3://kist/n");
    let b = node(&rgw, b_dir.path(), "s3://kist/n");
    let bytes = data(4, 300_000);
    let digest = a.put(&bytes).unwrap();
    let mut damaged = bytes.clone();
    damaged[123_456] ^= 1;
    rgw.put("kist", &key("n", &digest), &damaged);

    match b.hold(&digest) {
        Err(Error::Corrupt(why)) => assert!(why.contains(&digest), "{why}"),
        other => panic!("a damaged object was taken: {other:?}"),
    }
    assert!(matches!(b.info(&digest), Err(Error::NotFound)));
    let left: Vec<_> = walkdir(b_dir.path().join("blobs"));
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(problems(&b), Vec::<String>::new());

    let missing = kist_tests::sha256(b"never stored");
    assert!(matches!(b.hold(&missing), Err(Error::NotFound)));
    // Node a's own copy is untouched.
    assert_eq!(a.get(&digest).unwrap(), bytes);
}

/// Proves: a purge (a takedown) removes the bucket's object, also from a
/// node that never had the blob, so no node fetches it again; a node that
/// fetched it before keeps its copy until purged there, and a digest
/// neither has is `not-found`.
#[test]
fn a_purge_takes_the_blob_out_of_the_bucket() {
    let rgw = Rgw::start();
    rgw.create_bucket("kist");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, c] = [0, 1, 2].map(|i| node(&rgw, dirs[i].path(), "s3://kist/t"));
    let bytes = data(6, 50_000);
    let digest = a.put(&bytes).unwrap();
    b.hold(&digest).unwrap();

    assert_eq!(c.purge(&digest).unwrap(), bytes.len() as u64);
    assert!(rgw.content_keys("kist").is_empty());
    assert!(matches!(c.hold(&digest), Err(Error::NotFound)));
    assert_eq!(b.get(&digest).unwrap(), bytes);
    assert_eq!(a.purge(&digest).unwrap(), bytes.len() as u64);
    assert!(matches!(a.info(&digest), Err(Error::NotFound)));
    assert!(matches!(c.purge(&digest), Err(Error::NotFound)));
}

/// What `fsck` finds wrong with `store`.
fn problems(store: &Store) -> Vec<String> {
    store
        .check(false)
        .unwrap()
        .map(|p| format!("{:?}", p.unwrap()))
        .collect()
}

/// Every file under `dir`.
fn walkdir(dir: std::path::PathBuf) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Proves: `kist --store s3://BUCKET/PREFIX` works from the command line
/// with the usual AWS variables: a file ingested on one node (its own
/// `--node-dir`, created on first use) is held and read on another, and
/// `--node-dir` without a bucket is refused.
#[test]
fn the_command_line_takes_an_s3_store() {
    let rgw = Rgw::start();
    rgw.create_bucket("kist");
    let work = tempfile::tempdir().unwrap();
    let kist = |node: &str, args: &[&str]| rgw.kist("s3://kist/cli", &work.path().join(node), args);
    let file = work.path().join("layer");
    let bytes = data(5, 3 << 20);
    std::fs::write(&file, &bytes).unwrap();
    let digest = String::from_utf8(kist("a", &["ingest", file.to_str().unwrap()])).unwrap();
    let digest = digest.trim();
    assert_eq!(digest, kist_tests::sha256(&bytes));
    assert_eq!(rgw.get("kist", &key("cli", digest)), bytes);
    kist("b", &["hold", digest]);
    assert_eq!(kist("b", &["get", digest]), bytes);

    let refused = std::process::Command::new(kist_tests::kist_bin())
        .arg("--store")
        .arg(work.path().join("plain"))
        .arg("--node-dir")
        .arg(work.path().join("c"))
        .arg("ls")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--node-dir goes with --store s3://"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
