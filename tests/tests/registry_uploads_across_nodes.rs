//! Uploads on several `kist serve` nodes sharing one bucket of a real
//! Ceph RGW: an upload's chunks may reach any node, a node killed mid-
//! upload leaves it resumable on the others at the offset the bucket
//! has, and a one-chunk upload is sent to the bucket once.

use kist_tests::http::{body, send};
use kist_tests::registry::Client;
use kist_tests::rgw::Rgw;
use kist_tests::{Server, bytes, sha256};

use crate::registry_nodes::cluster;

/// PATCHes `chunk` at `start` of the upload `location` through `node`:
/// the offset the node then reports.
pub(crate) fn patch(node: &Server, location: &str, start: usize, chunk: &[u8]) -> u64 {
    let c = Client::new(node);
    let range = format!("{start}-{}", start + chunk.len() - 1);
    let r = send(c.req("PATCH", location).set("Content-Range", &range), chunk);
    assert_eq!(r.status(), 202, "{}", String::from_utf8_lossy(&body(r)));
    offset(&r)
}

/// The offset a `Range` header reports (0 for `0-0` of an empty upload
/// is told apart by the caller).
fn offset(r: &ureq::Response) -> u64 {
    let range = r.header("range").expect("a Range header");
    range.split_once('-').unwrap().1.parse::<u64>().unwrap() + 1
}

/// The offset `node` reports for the upload `location`.
fn status(node: &Server, location: &str) -> u64 {
    let r = Client::new(node).get(location);
    assert_eq!(r.status(), 204, "{}", String::from_utf8_lossy(&body(r)));
    offset(&r)
}

/// Completes the upload `location` as `digest` through `node`.
pub(crate) fn complete(node: &Server, location: &str, digest: &str) {
    let c = Client::new(node);
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = send(
        c.req("PUT", &format!("{location}{sep}digest={digest}")),
        b"",
    );
    assert_eq!(r.status(), 201, "{}", String::from_utf8_lossy(&body(r)));
}

/// What `node` serves as the blob `digest` of `repo`.
fn pulled(node: &Server, repo: &str, digest: &str) -> Vec<u8> {
    let r = Client::new(node).get(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(r.status(), 200, "{digest}");
    body(r)
}

/// Proves: an upload begun on one node takes its chunks on each node in
/// turn (every node reporting the offset the last one reached), and is
/// completed on the node that began it, whose own copy is behind: the
/// blob is whole through every node, and the bucket keeps nothing of the
/// upload after.
#[test]
fn an_uploads_chunks_may_reach_any_node() {
    let (_work, rgw, nodes) = cluster();
    let blob = bytes(7 << 20, 31);
    let digest = sha256(&blob);
    let location = Client::new(&nodes[0]).start("lib/chunks");
    let chunks: Vec<&[u8]> = blob.chunks(5 << 18).collect();
    let mut start = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let node = &nodes[i % nodes.len()];
        assert_eq!(
            patch(node, &location, start, chunk),
            (start + chunk.len()) as u64
        );
        start += chunk.len();
        for other in &nodes {
            assert_eq!(status(other, &location), start as u64);
        }
    }
    assert!(
        chunks.len() > nodes.len(),
        "every node takes a chunk, one two"
    );
    complete(&nodes[0], &location, &digest);
    for node in &nodes {
        assert_eq!(pulled(node, "lib/chunks", &digest), blob);
    }
    let r = Client::new(&nodes[1]).get(&location);
    assert_eq!(r.status(), 404, "the upload is finished on every node");
    let keys = rgw.keys("kist");
    assert!(
        !keys.iter().any(|k| k.starts_with("registry/ingests/")),
        "{keys:?}"
    );
    assert!(keys.contains(&format!("registry/blobs/sha256/{}", &digest[7..])));
}

/// Proves: the flow docker and skopeo use (POST, one PATCH of the whole
/// blob, a PUT with no body) sends the blob to the bucket once, even when
/// the PUT reaches another node: the bucket then has exactly that blob's
/// object, and the node that completed it never wrote it again.
#[test]
fn a_one_chunk_upload_completed_elsewhere_is_stored_once() {
    let (_work, rgw, nodes) = cluster();
    let blob = bytes(20 << 20, 32);
    let digest = sha256(&blob);
    let location = Client::new(&nodes[0]).start("lib/once");
    let r = send(Client::new(&nodes[0]).req("PATCH", &location), &blob);
    assert_eq!(r.status(), 202);
    let key = format!("registry/blobs/sha256/{}", &digest[7..]);
    assert_eq!(rgw.get("kist", &key), blob, "sent when the PATCH ended");
    let etag_before = rgw.etag("kist", &key);
    complete(&nodes[1], &location, &digest);
    assert_eq!(rgw.etag("kist", &key), etag_before, "not written again");
    assert_eq!(pulled(&nodes[2], "lib/once", &digest), blob);
    assert_eq!(rgw.content_keys("kist"), vec![key]);
}

/// Proves: a node killed (SIGKILL) while a chunk is coming in leaves the
/// upload to the others at the offset its last finished chunk reached;
/// the client sends the rest through another node and completes it
/// through a third; `fsck` of that node is clean.
#[test]
fn an_upload_survives_its_node_being_killed_mid_chunk() {
    let (work, rgw, mut nodes) = cluster();
    let blob = bytes(6 << 20, 33);
    let digest = sha256(&blob);
    let location = Client::new(&nodes[0]).start("lib/killed");
    let first = 2 << 20;
    assert_eq!(patch(&nodes[0], &location, 0, &blob[..first]), first as u64);

    // A chunk half sent, then the node killed.
    let addr = nodes[0].base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Range: {first}-{}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        blob.len() - 1,
        blob.len() - first
    );
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    std::io::Write::write_all(&mut stream, &blob[first..first + (1 << 20)]).unwrap();
    nodes[0].child().kill().unwrap();
    nodes[0].child().wait().unwrap();
    drop(stream);

    assert_eq!(status(&nodes[1], &location), first as u64);
    assert_eq!(
        patch(&nodes[1], &location, first, &blob[first..]),
        blob.len() as u64
    );
    complete(&nodes[2], &location, &digest);
    assert_eq!(pulled(&nodes[1], "lib/killed", &digest), blob);

    kist_on(&work, &rgw, "node-2", &["fsck"]);
}

/// Runs `kist` with `args` on the cluster's store from the directory
/// `node` of `work`: its standard output.
pub(crate) fn kist_on(work: &tempfile::TempDir, rgw: &Rgw, node: &str, args: &[&str]) -> String {
    let out = rgw.kist("s3://kist/registry", &work.path().join(node), args);
    String::from_utf8(out).unwrap()
}

/// Proves: an upload its client abandoned on one node stays in the
/// bucket while it is younger than the ingest TTL, and a collection on
/// another node (one that never saw it) removes it, record and segments,
/// once it is older; every node then answers that the upload is unknown.
#[test]
fn an_abandoned_upload_is_collected_by_any_node() {
    let (work, rgw, nodes) = cluster();
    let location = Client::new(&nodes[0]).start("lib/abandoned");
    let blob = bytes(3 << 20, 34);
    patch(&nodes[0], &location, 0, &blob[..1 << 20]);
    patch(&nodes[1], &location, 1 << 20, &blob[1 << 20..]);
    let uploads = || {
        rgw.keys("kist")
            .into_iter()
            .filter(|k| k.starts_with("registry/ingests/"))
            .count()
    };
    assert_eq!(uploads(), 2, "the record and the second segment");

    kist_on(&work, &rgw, "collector", &["gc"]);
    assert_eq!(uploads(), 2, "younger than the default TTL of a day");
    kist_on(
        &work,
        &rgw,
        "collector",
        &["config", "set", "ingest-ttl", "0s"],
    );
    let said = kist_on(&work, &rgw, "collector", &["gc"]);
    assert!(said.contains("registry-upload/lib/abandoned/"), "{said}");
    assert_eq!(uploads(), 0);
    for node in &nodes {
        let r = Client::new(node).get(&location);
        assert_eq!(r.status(), 404);
    }
}
