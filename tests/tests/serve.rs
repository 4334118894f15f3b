//! `kist serve`: the real binary on loopback, spoken to over HTTP.

use kist::{Object, Source};
use kist_tests::http::{body, fetch};
use kist_tests::{Harness, Server, open_embedded, sha256};

const PATH: &str = "helmchart/apps/podinfo/6.5.0.tgz";

/// A store with one 3 MiB artifact; returns its bytes.
fn store_with_artifact(h: &Harness) -> Vec<u8> {
    let store = h.store();
    let bytes = kist_tests::bytes(3 << 20, 42);
    let d = store.put(&bytes).unwrap();
    store
        .storer()
        .reconcile_artifact(
            &Object::new("HelmChart", "apps", "podinfo", "u1"),
            "6.5.0",
            "6.5.0.tgz",
            Source::Blob(&d),
            &[],
        )
        .unwrap();
    bytes
}

/// GET and HEAD give the bytes and the headers a client caches by.
#[test]
fn get_and_head_serve_artifacts_with_headers() {
    let h = Harness::new(open_embedded);
    let bytes = store_with_artifact(&h);
    let server = Server::start(h.path());
    let r = fetch(ureq::get(&server.url(PATH)));
    assert_eq!(r.status(), 200);
    let etag = format!("\"{}\"", sha256(&bytes));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    assert_eq!(r.header("content-length"), Some("3145728"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("last-modified").is_some());
    assert_eq!(body(r), bytes);

    let latest = fetch(ureq::get(&server.url("helmchart/apps/podinfo/latest.tgz")));
    assert_eq!(latest.header("etag"), Some(etag.as_str()));
    assert_eq!(body(latest).len(), bytes.len());

    let head = fetch(ureq::head(&server.url(PATH)));
    assert_eq!(head.status(), 200);
    assert_eq!(head.header("content-length"), Some("3145728"));
    assert!(body(head).is_empty());

    let cached = fetch(ureq::get(&server.url(PATH)).set("If-None-Match", &etag));
    assert_eq!(cached.status(), 304);
}

/// Range requests: first bytes, a suffix, an open end, and 416s.
#[test]
fn range_requests() {
    let h = Harness::new(open_embedded);
    let bytes = store_with_artifact(&h);
    let server = Server::start(h.path());
    let size = bytes.len();
    let ranged = |range: &str| fetch(ureq::get(&server.url(PATH)).set("Range", range));

    let r = ranged("bytes=0-99");
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-99/{size}").as_str())
    );
    assert_eq!(body(r), &bytes[..100]);

    let r = ranged("bytes=-1000");
    assert_eq!(r.status(), 206);
    assert_eq!(body(r), &bytes[size - 1000..]);

    // Across the server's 1 MiB read chunks.
    let r = ranged("bytes=1048000-2097999");
    assert_eq!(body(r), &bytes[1_048_000..2_098_000]);

    let r = ranged(&format!("bytes={}-", size - 5));
    assert_eq!(body(r), &bytes[size - 5..]);

    for bad in [
        format!("bytes={size}-"),
        "bytes=10-5".into(),
        "bytes=x-y".into(),
    ] {
        let r = ranged(&bad);
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{size}").as_str())
        );
    }
}

/// Only artifacts are served: internal files, directories, records and
/// escapes are all 404.
#[test]
fn everything_else_is_not_found() {
    let h = Harness::new(open_embedded);
    let bytes = store_with_artifact(&h);
    let server = Server::start(h.path());
    let blob = sha256(&bytes).replace("sha256:", "");
    let locks: Vec<String> = std::fs::read_dir(h.path().join("locks"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut paths = vec![
        String::new(),
        "helmchart/".into(),
        "helmchart/apps/podinfo/".into(),
        "helmchart/apps/podinfo/object".into(),
        "helmchart/apps/podinfo/files".into(),
        "helmchart/apps/podinfo/6.5.0.tgz.lock".into(),
        "helmchart/apps/podinfo/..%2f..%2fobject".into(),
        "helmchart/apps/podinfo/.%2e".into(),
        "artifacts/helmchart/apps/podinfo".into(),
        format!("blobs/sha256/{blob}"),
        "oci-layout".into(),
        "index.json".into(),
        "helmchart/apps/other/6.5.0.tgz".into(),
    ];
    paths.extend(locks.iter().map(|l| format!("locks/{l}")));
    for path in paths {
        let r = fetch(ureq::get(&server.url(&path)));
        assert_eq!(r.status(), 404, "/{path}");
    }
}

/// 50 downloads at once all get the right bytes.
#[test]
fn concurrent_downloads() {
    let h = Harness::new(open_embedded);
    let bytes = store_with_artifact(&h);
    let server = Server::start(h.path());
    let want = sha256(&bytes);
    let url = server.url(PATH);
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || sha256(&body(fetch(ureq::get(&url)))))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), want);
    }
}

/// SIGTERM stops the server cleanly (exit 0).
#[test]
fn sigterm_shuts_down_gracefully() {
    let h = Harness::new(open_embedded);
    store_with_artifact(&h);
    let server = Server::start(h.path());
    assert_eq!(fetch(ureq::get(&server.url(PATH))).status(), 200);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
