//! Collection of a bucket shared by several `kist serve` nodes, on a real
//! Ceph RGW: a blob the bucket keeps for nothing is condemned, then
//! deleted once every node has said it does not keep it; a node that
//! takes a hold on a condemned (or already deleted) blob keeps it; and
//! collections looping on two nodes, killed now and then, lose nothing a
//! third node pushes meanwhile.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kist_tests::http::body;
use kist_tests::registry::{Client, image};
use kist_tests::rgw::Rgw;
use kist_tests::{Server, bytes, sha256};

use crate::registry_nodes::cluster;
use crate::registry_uploads_across_nodes::kist_on;

/// The bucket key of a blob of the cluster's store.
fn blob_key(digest: &str) -> String {
    format!("registry/blobs/{}", digest.replacen(':', "/", 1))
}

/// The bucket key of `digest`'s condemnation record.
fn record_key(digest: &str) -> String {
    format!("registry/condemned/{}", digest.replacen(':', "/", 1))
}

/// What `digest`'s condemnation record says: `Some("")` condemned,
/// `Some("gone")` deleted, `Some("acquitted")` referenced again.
fn record(rgw: &Rgw, digest: &str) -> Option<String> {
    let key = record_key(digest);
    has(rgw, &key).then(|| String::from_utf8(rgw.get("kist", &key)).unwrap())
}

/// Puts `data` into the bucket as a blob nothing refers to (what a
/// crashed writer or an older deployment leaves); its digest.
fn stray(rgw: &Rgw, data: &[u8]) -> String {
    let digest = sha256(data);
    rgw.put("kist", &blob_key(&digest), data);
    digest
}

/// Whether the bucket has the key `key`.
fn has(rgw: &Rgw, key: &str) -> bool {
    rgw.keys("kist").iter().any(|k| k == key)
}

/// Runs `kist gc` on node `i`'s directory; its output. Waits a second
/// first: the bucket's clock counts seconds, and a collection hears a
/// node only from a listing that began after the condemnation.
fn gc(work: &tempfile::TempDir, rgw: &Rgw, i: usize) -> String {
    std::thread::sleep(Duration::from_millis(1100));
    kist_on(work, rgw, &format!("node-{i}"), &["gc"])
}

/// Sets the upload grace of every node's directory to nothing, so that a
/// collection condemns and deletes without waiting an hour.
fn no_grace(work: &tempfile::TempDir, rgw: &Rgw) {
    for i in 0..3 {
        let node = format!("node-{i}");
        kist_on(work, rgw, &node, &["config", "set", "upload-grace", "0s"]);
    }
}

/// Checks that `node` serves the image `tag` of `repo` whole: the
/// manifest and every blob byte for byte.
fn complete(node: &Server, repo: &str, tag: &str, img: &kist_tests::oci::Image) {
    let c = Client::new(node);
    let r = c.get(&format!("/v2/{repo}/manifests/{tag}"));
    assert_eq!(r.status(), 200, "{repo}:{tag}");
    assert_eq!(body(r), img.manifest);
    for blob in img.blobs() {
        let r = c.get(&format!("/v2/{repo}/blobs/{}", blob.digest));
        assert_eq!(r.status(), 200, "{repo}:{tag} {}", blob.digest);
        assert_eq!(body(r), blob.bytes, "{repo}:{tag} {}", blob.digest);
    }
}

/// Proves: a blob object nothing refers to is condemned by one
/// collection and deleted by a later one only once every node that holds
/// blobs has collected since; what a repository, a node's own hold or an
/// unfinished upload refers to stays, and every node still serves it.
#[test]
fn a_blob_nothing_refers_to_leaves_the_bucket_once_every_node_agrees() {
    let (work, rgw, nodes) = cluster();
    no_grace(&work, &rgw);
    let img = image(41, 2);
    Client::new(&nodes[0]).push_image("lib/app", "v1", &img);
    let file = work.path().join("held");
    std::fs::write(&file, bytes(70_000, 42)).unwrap();
    let held = kist_on(&work, &rgw, "node-1", &["ingest", file.to_str().unwrap()]);
    let held = held.trim().to_owned();
    assert!(has(&rgw, &blob_key(&held)), "{held}");
    let upload = bytes(2 << 20, 43);
    let location = Client::new(&nodes[2]).start("lib/partial");
    crate::registry_uploads_across_nodes::patch(&nodes[2], &location, 0, &upload[..1 << 20]);
    let segment = sha256(&upload[..1 << 20]);
    let orphan = stray(&rgw, &bytes(50_000, 44));

    let said = gc(&work, &rgw, 0);
    assert!(!said.contains("bucket:"), "{said}");
    let condemned: BTreeSet<_> = rgw
        .keys("kist")
        .into_iter()
        .filter(|k| k.starts_with("registry/condemned/"))
        .collect();
    let expected = [&orphan, &held].map(|d| record_key(d));
    assert_eq!(
        condemned,
        BTreeSet::from(expected),
        "node-1 has not listed what it holds yet"
    );

    let said = gc(&work, &rgw, 0);
    assert!(
        has(&rgw, &blob_key(&orphan)),
        "node-1 holds blobs and has not collected since: {said}"
    );
    let said = gc(&work, &rgw, 1);
    assert!(said.contains(&format!("bucket:{orphan}")), "{said}");
    assert!(!has(&rgw, &blob_key(&orphan)));
    assert_eq!(record(&rgw, &orphan).as_deref(), Some("gone"));
    assert_eq!(
        record(&rgw, &held).as_deref(),
        Some("acquitted"),
        "node-1 holds it"
    );

    for d in img.blobs().map(|b| &b.digest).chain([&held, &segment]) {
        assert!(has(&rgw, &blob_key(d)), "{d} must stay");
    }
    complete(&nodes[2], "lib/app", "v1", &img);
    assert_eq!(rgw.get("kist", &blob_key(&held)), bytes(70_000, 42));
    crate::registry_uploads_across_nodes::patch(&nodes[1], &location, 1 << 20, &upload[1 << 20..]);
    crate::registry_uploads_across_nodes::complete(&nodes[1], &location, &sha256(&upload));

    gc(&work, &rgw, 2);
    let kept = record(&rgw, &orphan);
    assert_eq!(kept.as_deref(), Some("gone"), "kept a minute at least");
}

/// Proves: a condemned blob pushed again is taken back (its record goes,
/// later collections keep it), and a blob a collection already deleted
/// is uploaded again by a node that holds it when it takes a new hold.
#[test]
fn a_hold_on_a_condemned_or_deleted_blob_keeps_it_in_the_bucket() {
    let (work, rgw, nodes) = cluster();
    no_grace(&work, &rgw);
    let data = bytes(60_000, 45);
    let orphan = stray(&rgw, &data);
    gc(&work, &rgw, 0);
    assert_eq!(record(&rgw, &orphan).as_deref(), Some(""));

    assert_eq!(Client::new(&nodes[1]).push_blob("lib/again", &data), orphan);
    assert_eq!(record(&rgw, &orphan), None);

    // What a collection leaves after deleting: no object, a gone record.
    rgw.delete("kist", &blob_key(&orphan));
    rgw.put("kist", &record_key(&orphan), b"gone");
    let r = Client::new(&nodes[1]).req(
        "POST",
        &format!("/v2/lib/other/blobs/uploads/?mount={orphan}&from=lib/again"),
    );
    assert_eq!(kist_tests::http::send(r, b"").status(), 201);
    assert_eq!(rgw.get("kist", &blob_key(&orphan)), data);
    assert_eq!(record(&rgw, &orphan), None);

    for i in [0, 1, 0] {
        let said = gc(&work, &rgw, i);
        assert!(!said.contains("bucket:"), "{said}");
    }
    let r = Client::new(&nodes[2]).get(&format!("/v2/lib/again/blobs/{orphan}"));
    assert_eq!(body(r), data);
}

/// Stops the collection loops when the pushes end, also by a panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts `kist gc` on node `i`'s directory.
fn spawn_gc(work: &tempfile::TempDir, rgw: &Rgw, i: usize) -> Child {
    Command::new(kist_tests::kist_bin())
        .args(["--store", "s3://kist/registry", "--node-dir"])
        .arg(work.path().join(format!("node-{i}")))
        .arg("gc")
        .env_remove("KIST_STORE")
        .envs(rgw.env())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("running kist gc")
}

/// Proves: while collections loop on two nodes (every third one killed
/// with SIGKILL part way), a third node pushes images, some of whose
/// layers are condemned strays; every image is then whole through every
/// node, the strays nothing took back are deleted, and `kist fsck` of the
/// nodes whose collections were killed is clean.
#[test]
fn collections_on_two_nodes_while_a_third_pushes_lose_nothing() {
    let (work, rgw, nodes) = cluster();
    no_grace(&work, &rgw);
    let images: Vec<_> = (0..12).map(|i| image(50 + i, 2)).collect();
    // Half the images' first layers sit in the bucket already, condemned.
    let strays: Vec<_> = (0..6)
        .map(|i| stray(&rgw, &bytes(40_000, 90 + i)))
        .collect();
    let taken_back: Vec<_> = images
        .iter()
        .step_by(2)
        .map(|img| stray(&rgw, &img.layers[0].bytes))
        .collect();
    gc(&work, &rgw, 2);

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for i in [0, 1] {
            let (stop, work, rgw) = (&stop, &work, &rgw);
            s.spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let mut child = spawn_gc(work, rgw, i);
                    if round % 3 == 0 {
                        std::thread::sleep(Duration::from_millis(150 * (round % 7)));
                        child.kill().expect("SIGKILL of our own kist gc");
                        child.wait().unwrap();
                    } else {
                        assert!(child.wait().unwrap().success(), "kist gc on node-{i}");
                    }
                }
            });
        }
        for (n, img) in images.iter().enumerate() {
            Client::new(&nodes[2]).push_image("lib/many", &format!("v{n}"), img);
            if n % 4 == 3 {
                gc(&work, &rgw, 2);
            }
        }
    });

    for i in [0, 1, 2, 0, 1, 2] {
        gc(&work, &rgw, i);
    }
    for node in &nodes {
        for (n, img) in images.iter().enumerate() {
            complete(node, "lib/many", &format!("v{n}"), img);
        }
    }
    for d in &taken_back {
        assert!(has(&rgw, &blob_key(d)), "{d} was pushed again");
    }
    for d in &strays {
        assert!(!has(&rgw, &blob_key(d)), "{d} is referenced by nothing");
    }
    for i in [0, 1] {
        let said = kist_on(&work, &rgw, &format!("node-{i}"), &["fsck"]);
        assert_eq!(said, "", "fsck of node-{i}");
    }
}
