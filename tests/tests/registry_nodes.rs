//! Several `kist serve` nodes, each with its own directory, on one bucket
//! of a real Ceph RGW started by the test: a push through any node is
//! pulled through every other, tags and deletes are the same for all of
//! them, and racing tag updates end the same everywhere.

use kist_tests::Server;
use kist_tests::http::body;
use kist_tests::oci::MANIFEST;
use kist_tests::registry::{Client, code, image};
use kist_tests::rgw::Rgw;

/// A fresh RGW and three nodes on its prefix `s3://kist/registry`, their
/// directories in a temporary directory; bound in this order, they drop
/// servers first, the directory last.
pub(crate) fn cluster() -> (tempfile::TempDir, Rgw, Vec<Server>) {
    let rgw = Rgw::start();
    let work = tempfile::tempdir().unwrap();
    rgw.create_bucket("kist");
    let nodes = (0..3).map(|i| node(&work, i, &rgw.env())).collect();
    (work, rgw, nodes)
}

/// Node `i` on `s3://kist/registry`, its directory in `work`, reaching
/// the object store as `env` says.
pub(crate) fn node(work: &tempfile::TempDir, i: usize, env: &[(String, String)]) -> Server {
    let dir = work.path().join(format!("node-{i}"));
    let dir = dir.to_str().unwrap();
    let store = std::ffi::OsStr::new("s3://kist/registry");
    Server::start_env(store, &["--node-dir", dir], env)
}

/// The digest a node answers for `reference` of `repo`.
fn resolved(node: &Server, repo: &str, reference: &str) -> Option<String> {
    let r = Client::new(node).get(&format!("/v2/{repo}/manifests/{reference}"));
    (r.status() == 200).then(|| r.header("docker-content-digest").unwrap().to_owned())
}

/// Proves: an image pushed through one node is pulled through each of
/// the others (its manifest by tag with its media type, every blob byte
/// for byte, its tag listed), and the bucket keeps each blob once.
#[test]
fn an_image_pushed_through_one_node_is_pulled_through_every_other() {
    let (_work, rgw, nodes) = cluster();
    let img = image(1, 3);
    Client::new(&nodes[0]).push_image("lib/app", "v1", &img);

    for node in &nodes[1..] {
        let c = Client::new(node);
        let r = c.get("/v2/lib/app/manifests/v1");
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some(MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(img.digest.as_str()));
        assert_eq!(body(r), img.manifest);
        for blob in img.blobs() {
            let r = c.get(&format!("/v2/lib/app/blobs/{}", blob.digest));
            assert_eq!(r.status(), 200, "{}", blob.digest);
            assert_eq!(body(r), blob.bytes);
        }
        let r = c.get("/v2/lib/app/tags/list");
        let tags: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
        assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    }
    let blobs: Vec<String> = rgw
        .keys("kist")
        .into_iter()
        .filter(|k| k.starts_with("registry/blobs/"))
        .collect();
    assert_eq!(blobs.len(), 1 + img.blobs().count(), "{blobs:?}");
}

/// Proves: the catalog of every node lists the repositories pushed
/// through any node, and a repository with a blob but no tag yet is
/// known on a node that never saw it (an empty tag list, not
/// `NAME_UNKNOWN`).
#[test]
fn every_node_lists_every_repository() {
    let (_work, _rgw, nodes) = cluster();
    Client::new(&nodes[0]).push_image("lib/a", "v1", &image(2, 1));
    Client::new(&nodes[1]).push_blob("team/b/c", b"just a blob");
    for node in &nodes {
        let c = Client::new(node);
        let r = c.get("/v2/_catalog");
        assert_eq!(r.status(), 200);
        let catalog: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
        assert_eq!(
            catalog["repositories"],
            serde_json::json!(["lib/a", "team/b/c"])
        );
        let r = c.get("/v2/team/b/c/tags/list");
        assert_eq!(r.status(), 200);
        let r = c.get("/v2/lib/none/tags/list");
        assert_eq!(code(r), "NAME_UNKNOWN");
    }
}

/// Proves: blobs pushed through one node and the manifest through another
/// make an image a third node serves; a manifest naming a blob no node
/// has is refused with `MANIFEST_BLOB_UNKNOWN`.
#[test]
fn blobs_through_one_node_and_the_manifest_through_another() {
    let (_work, _rgw, nodes) = cluster();
    let img = image(2, 2);
    for blob in img.blobs() {
        Client::new(&nodes[0]).push_blob("lib/split", &blob.bytes);
    }
    let r = Client::new(&nodes[1]).put_manifest("lib/split", "v1", &img.manifest);
    assert_eq!(r.status(), 201, "{}", String::from_utf8_lossy(&body(r)));
    assert_eq!(
        resolved(&nodes[2], "lib/split", "v1"),
        Some(img.digest.clone())
    );

    let lonely = image(3, 1);
    let r = Client::new(&nodes[1]).put_manifest("lib/split", "v2", &lonely.manifest);
    assert_eq!(r.status(), 400);
    assert_eq!(code(r), "MANIFEST_BLOB_UNKNOWN");
}

/// Proves: one tag moved through three nodes at once, thirty times, ends
/// pointing at one of the pushed images, the same through every node;
/// and a move after that is what every node answers at once.
#[test]
fn racing_tag_updates_end_the_same_on_every_node() {
    let (_work, _rgw, nodes) = cluster();
    let images: Vec<_> = (10..14).map(|seed| image(seed, 1)).collect();
    for img in &images {
        Client::new(&nodes[0]).push_image("lib/race", &img.digest, img);
    }
    std::thread::scope(|s| {
        for (i, node) in nodes.iter().enumerate() {
            let images = &images;
            s.spawn(move || {
                for round in 0..10 {
                    let img = &images[(i + round) % images.len()];
                    let r = Client::new(node).put_manifest("lib/race", "latest", &img.manifest);
                    assert_eq!(r.status(), 201);
                }
            });
        }
    });
    let seen: Vec<_> = nodes
        .iter()
        .map(|n| resolved(n, "lib/race", "latest").expect("the tag exists"))
        .collect();
    assert!(seen.iter().all(|d| *d == seen[0]), "{seen:?}");
    assert!(images.iter().any(|img| img.digest == seen[0]));

    let last = &images[3];
    let r = Client::new(&nodes[2]).put_manifest("lib/race", "latest", &last.manifest);
    assert_eq!(r.status(), 201);
    for node in &nodes {
        assert_eq!(
            resolved(node, "lib/race", "latest"),
            Some(last.digest.clone())
        );
    }
}

/// Proves: deletes through one node hold for every node, including one
/// that had fetched what was deleted: a tag, a manifest by digest, a
/// layer blob.
#[test]
fn deletes_through_one_node_hold_for_every_node() {
    let (_work, _rgw, nodes) = cluster();
    let img = image(4, 2);
    Client::new(&nodes[0]).push_image("lib/gone", "v1", &img);
    Client::new(&nodes[0]).put_manifest("lib/gone", "v2", &img.manifest);
    // Node 1 fetches everything first.
    assert_eq!(
        resolved(&nodes[1], "lib/gone", "v1"),
        Some(img.digest.clone())
    );
    let layer = format!("/v2/lib/gone/blobs/{}", img.layers[0].digest);
    assert_eq!(Client::new(&nodes[1]).get(&layer).status(), 200);

    let delete = |node: &Server, path: &str| {
        let r = kist_tests::http::fetch(Client::new(node).req("DELETE", path));
        assert_eq!(r.status(), 202, "{path}");
    };
    delete(&nodes[2], "/v2/lib/gone/manifests/v1");
    for node in &nodes {
        assert_eq!(resolved(node, "lib/gone", "v1"), None);
        assert_eq!(resolved(node, "lib/gone", "v2"), Some(img.digest.clone()));
    }
    delete(&nodes[2], &format!("/v2/lib/gone/manifests/{}", img.digest));
    for node in &nodes {
        assert_eq!(resolved(node, "lib/gone", &img.digest), None);
        assert_eq!(resolved(node, "lib/gone", "v2"), None);
    }
    delete(&nodes[0], &layer);
    for node in &nodes {
        assert_eq!(Client::new(node).get(&layer).status(), 404);
    }
}

/// Proves: a node whose object store acts on its writes but loses the
/// answers (a proxy drops the connection as the answer starts, for the
/// first five PUTs) still ends in the right state: every push either
/// succeeds or fails with an error and succeeds when the client tries
/// again, the image is whole through another node, and each blob is one
/// object.
#[test]
fn writes_whose_answers_are_lost_end_in_the_right_state() {
    let (work, rgw, nodes) = cluster();
    let host = rgw.endpoint.trim_start_matches("http://");
    let lossy = kist_tests::lossy::Lossy::start(host, "PUT", 5);
    let mut env = rgw.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".to_owned(), lossy.base.clone()));
    let unlucky = node(&work, 9, &env);
    let c = Client::new(&unlucky);
    let img = image(5, 3);
    let retried = |what: &str, attempt: &dyn Fn() -> ureq::Response, ok: u16| {
        for _ in 0..5 {
            let r = attempt();
            if r.status() == ok {
                return;
            }
            assert!(r.status() >= 500, "{what}: {}", r.status());
            let error: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
            assert!(error["errors"][0]["code"].is_string(), "{what}: {error}");
        }
        panic!("{what} never succeeded");
    };
    for blob in img.blobs() {
        let path = format!("/v2/lib/lossy/blobs/uploads/?digest={}", blob.digest);
        let push = || kist_tests::http::send(c.req("POST", &path), &blob.bytes);
        retried(&blob.digest, &push, 201);
    }
    let manifest = || c.put_manifest("lib/lossy", "v1", &img.manifest);
    retried("the manifest", &manifest, 201);
    assert_eq!(lossy.lost(), 5);

    let other = Client::new(&nodes[1]);
    assert_eq!(
        resolved(&nodes[1], "lib/lossy", "v1"),
        Some(img.digest.clone())
    );
    for blob in img.blobs() {
        let r = other.get(&format!("/v2/lib/lossy/blobs/{}", blob.digest));
        assert_eq!(body(r), blob.bytes);
    }
    let blobs = rgw
        .keys("kist")
        .into_iter()
        .filter(|k| k.starts_with("registry/blobs/"))
        .count();
    assert_eq!(blobs, 1 + img.blobs().count());
}

/// Proves: a node that streams a blob to its client while it fetches the
/// blob from the bucket never hands over a whole body that is not the
/// blob: a damaged object (the same size, other bytes) gives a response
/// cut short, every time, and the node keeps nothing of it; the same
/// blob undamaged streams whole through a node that lacked it.
#[test]
fn a_blob_streamed_while_fetched_is_never_whole_unless_it_is_the_blob() {
    let (_work, rgw, nodes) = cluster();
    let layer = kist_tests::bytes(9 << 20, 41);
    let digest = Client::new(&nodes[0]).push_blob("lib/stream", &layer);
    let path = format!("/v2/lib/stream/blobs/{digest}");
    let r = Client::new(&nodes[1]).get(&path);
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-length"), Some("9437184"));
    assert_eq!(body(r), layer, "streamed whole");

    let key = format!("registry/blobs/sha256/{}", &digest[7..]);
    let mut damaged = layer.clone();
    damaged[5 << 20] ^= 1;
    rgw.put("kist", &key, &damaged);
    for _ in 0..2 {
        let r = Client::new(&nodes[2]).get(&path);
        if r.status() == 200 {
            let mut got = Vec::new();
            let read = std::io::Read::read_to_end(&mut r.into_reader(), &mut got);
            assert!(read.is_err(), "a damaged blob's body must end cut");
            assert!(got.len() < layer.len(), "{} bytes arrived", got.len());
        } else {
            assert!(r.status() >= 500, "{}", r.status());
        }
    }
    let r = Client::new(&nodes[1]).get(&path);
    assert_eq!(
        body(r),
        layer,
        "the node that fetched it whole still has it"
    );
}

/// Proves: a client that asks a node for a blob the node must fetch, and
/// then reads nothing, holds neither the fetch nor the node: the
/// admission layer cuts it (its response ends short), the fetch goes on
/// without it, and another client gets the whole blob from that node.
#[test]
fn a_client_that_does_not_read_a_streamed_blob_holds_nothing() {
    let (work, rgw, nodes) = cluster();
    let layer = kist_tests::bytes(64 << 20, 42);
    let digest = Client::new(&nodes[0]).push_blob("lib/stuck", &layer);
    let dir = work.path().join("node-strict");
    let strict = Server::start_env(
        std::ffi::OsStr::new("s3://kist/registry"),
        &[
            "--node-dir",
            dir.to_str().unwrap(),
            "--transfer-grace",
            "1s",
            "--transfer-stall",
            "2s",
        ],
        &rgw.env(),
    );
    let path = format!("/v2/lib/stuck/blobs/{digest}");
    let addr = strict.base.trim_start_matches("http://").to_owned();
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut stuck, request.as_bytes()).unwrap();
    // Its head only: the node is streaming the blob to it, then it stops.
    let head = kist_tests::registry::response_head(&mut stuck);
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    // Served only once the fetch the stuck client started has finished.
    let r = Client::new(&strict).get(&path);
    assert_eq!(r.status(), 200);
    assert_eq!(body(r), layer, "another client gets it whole");
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stuck, &mut got);
    assert!(
        got.len() < layer.len(),
        "the client that did not read was cut ({} bytes)",
        got.len()
    );
}
