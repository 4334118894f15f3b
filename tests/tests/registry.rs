//! The OCI registry of `kist serve` (distribution-spec v1.1) over raw
//! HTTP: every status path, uploads across restarts and kills, races,
//! collections during pushes, hostile input and authentication.

use kist_tests::http::{body, fetch, next_page, send};
use kist_tests::oci::{Image, MANIFEST};
use kist_tests::registry::{Client, Said, basic, code, finish, half_sent_patch, image};
use kist_tests::{Harness, Server, open_embedded, sha256, sha512};

#[test]
fn the_base_endpoint_says_its_version() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let r = Client::new(&server).get("/v2/");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

/// Chunked uploads: in order, out of order (416), streamed without
/// Content-Range, status, a wrong digest, the last chunk with the PUT.
#[test]
fn chunked_uploads() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let c = Client::new(&server);
    let data = kist_tests::bytes(3 << 20, 7);
    let d = sha256(&data);
    let upload = c.start("lib/a");

    let r = send(
        c.req("PATCH", &upload).set("Content-Range", "0-999999"),
        &data[..1_000_000],
    );
    assert_eq!(r.status(), 202);
    assert_eq!(r.header("range"), Some("0-999999"));
    let upload = r.header("location").unwrap().to_owned();

    // Out of order, and overlapping: 416 with the current range, answered
    // from the headers (the server does not read a chunk it refuses, so
    // the request goes raw: a client still sending would see the
    // connection close instead of the answer).
    for range in ["2000000-2999999", "500000-1499999"] {
        let answer = raw_response(
            &server,
            &format!(
                "PATCH {upload} HTTP/1.1\r\nHost: x\r\nContent-Range: {range}\r\nContent-Length: 1000000\r\n\r\n"
            ),
        );
        assert!(answer.starts_with("HTTP/1.1 416"), "{range}: {answer}");
        assert!(answer.contains("\r\nrange: 0-999999\r\n"), "{answer}");
    }

    // A streamed append: no Content-Range, chunked transfer encoding.
    let r = c
        .req("PATCH", &upload)
        .send(std::io::Cursor::new(data[1_000_000..2_000_000].to_vec()))
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.header("range"), Some("0-1999999"));

    let r = fetch(c.req("GET", &upload));
    assert_eq!(r.status(), 204);
    assert_eq!(r.header("range"), Some("0-1999999"));

    // A wrong digest: 400 DIGEST_INVALID, the upload kept.
    let wrong = sha256(b"other");
    let r = send(
        c.req("PUT", &format!("{upload}?digest={wrong}")),
        &data[2_000_000..],
    );
    assert_eq!(r.status(), 400);
    assert_eq!(code(r), "DIGEST_INVALID");
    let r = fetch(c.req("GET", &upload));
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str())
    );

    // The last chunk went in with the failed PUT; a PUT without a body
    // completes it.
    let r = send(c.req("PUT", &format!("{upload}?digest={d}")), b"");
    assert_eq!(r.status(), 201);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/lib/a/blobs/{d}").as_str())
    );
    assert_eq!(body(c.get(&format!("/v2/lib/a/blobs/{d}"))), data);
    let r = fetch(c.req("GET", &upload));
    assert_eq!(r.status(), 404);
    assert_eq!(code(r), "BLOB_UPLOAD_UNKNOWN");

    // A PUT carrying the last chunk.
    let upload = c.start("lib/a");
    let other = kist_tests::bytes(5000, 8);
    let r = send(c.req("PATCH", &upload), &other[..100]);
    let upload = r.header("location").unwrap().to_owned();
    let r = send(
        c.req("PUT", &format!("{upload}?digest={}", sha256(&other))),
        &other[100..],
    );
    assert_eq!(r.status(), 201);

    // Cancelled: 204, then unknown.
    let upload = c.start("lib/a");
    assert_eq!(fetch(c.req("DELETE", &upload)).status(), 204);
    assert_eq!(fetch(c.req("GET", &upload)).status(), 404);
}

/// Blobs: GET, HEAD, ranges, 416, per-repository visibility, mounts with
/// and without a holding source, delete; sha512 too.
#[test]
fn blobs_ranges_mounts_and_deletes() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let c = Client::new(&server);
    let data = kist_tests::bytes(100_000, 3);
    let d = c.push_blob("src", &data);
    let path = format!("/v2/src/blobs/{d}");

    let r = c.get(&path);
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-length"), Some("100000"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(body(r), data);
    let r = fetch(c.req("HEAD", &path));
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-length"), Some("100000"));

    let ranged = |range: &str| fetch(c.req("GET", &path).set("Range", range));
    let r = ranged("bytes=10-19");
    assert_eq!(r.status(), 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/100000"));
    assert_eq!(body(r), &data[10..20]);
    let r = ranged("bytes=-10");
    assert_eq!(r.header("content-range"), Some("bytes 99990-99999/100000"));
    let r = ranged("bytes=99990-200000");
    assert_eq!(r.header("content-range"), Some("bytes 99990-99999/100000"));
    let r = ranged("bytes=100000-");
    assert_eq!(r.status(), 416);
    assert_eq!(r.header("content-range"), Some("bytes */100000"));
    assert!(body(r).is_empty());

    // Another repository does not see it (the pool is shared, the view
    // is not).
    let r = c.get(&format!("/v2/dst/blobs/{d}"));
    assert_eq!(r.status(), 404);
    assert_eq!(code(r), "BLOB_UNKNOWN");

    // A mount from a repository that does not hold it: an upload instead.
    let r = send(
        c.req(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=nothing"),
        ),
        b"",
    );
    assert_eq!(r.status(), 202);
    assert!(
        r.header("location")
            .unwrap()
            .starts_with("/v2/dst/blobs/uploads/")
    );
    // From one that does: 201, no byte sent.
    let r = send(
        c.req(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
        ),
        b"",
    );
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/dst/blobs/{d}").as_str())
    );
    assert_eq!(body(c.get(&format!("/v2/dst/blobs/{d}"))), data);

    // Deleting from one repository leaves the other's.
    assert_eq!(fetch(c.req("DELETE", &path)).status(), 202);
    assert_eq!(c.get(&path).status(), 404);
    assert_eq!(c.get(&format!("/v2/dst/blobs/{d}")).status(), 200);

    // sha512.
    let d512 = sha512(&data);
    let r = send(
        c.req("POST", &format!("/v2/src/blobs/uploads/?digest={d512}")),
        &data,
    );
    assert_eq!(r.status(), 201);
    assert_eq!(body(c.get(&format!("/v2/src/blobs/{d512}"))), data);
}

/// Manifests: missing blobs, by tag and digest, exact bytes and media
/// type, a subject not pushed yet, referrers with a filter, tags and
/// catalog paging, deletes, index.json.
#[test]
fn manifests_tags_and_referrers() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let c = Client::new(&server);
    let img = image(1, 2);

    let r = c.put_manifest("app", "v1", &img.manifest);
    assert_eq!(r.status(), 400);
    assert_eq!(code(r), "MANIFEST_BLOB_UNKNOWN");

    c.push_image("app", "v1", &img);
    for reference in ["v1", img.digest.as_str()] {
        let r = c.get(&format!("/v2/app/manifests/{reference}"));
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some(MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(img.digest.as_str()));
        assert_eq!(body(r), img.manifest);
    }
    let r = fetch(c.req("HEAD", "/v2/app/manifests/v1"));
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.header("content-length"),
        Some(img.manifest.len().to_string().as_str())
    );
    assert_eq!(c.get("/v2/app/manifests/v2").status(), 404);
    assert_eq!(c.get("/v2/nothing/manifests/v1").status(), 404);

    // By digest: the digest must be the bytes'.
    let r = c.put_manifest("app", &sha256(b"x"), &img.manifest);
    assert_eq!(r.status(), 400);
    assert_eq!(code(r), "DIGEST_INVALID");
    let r = c.put_manifest("app", &img.digest, &img.manifest);
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/app/manifests/{}", img.digest).as_str())
    );

    // An OCI index of it, and the same image as a Docker schema 2 manifest
    // (list): stored with their own media types.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": MANIFEST, "digest": img.digest, "size": img.manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    .to_string();
    let docker = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": img.config.digest, "size": img.config.bytes.len()},
        "layers": img.layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "digest": l.digest, "size": l.bytes.len()})).collect::<Vec<_>>(),
    })
    .to_string();
    for (tag, media_type, bytes) in [
        (
            "index",
            "application/vnd.oci.image.index.v1+json",
            index.as_bytes(),
        ),
        (
            "docker",
            "application/vnd.docker.distribution.manifest.v2+json",
            docker.as_bytes(),
        ),
    ] {
        let r = send(
            c.req("PUT", &format!("/v2/app/manifests/{tag}"))
                .set("Content-Type", media_type),
            bytes,
        );
        assert_eq!(
            r.status(),
            201,
            "{tag}: {}",
            String::from_utf8_lossy(&body(r))
        );
        let r = c.get(&format!("/v2/app/manifests/{tag}"));
        assert_eq!(r.header("content-type"), Some(media_type));
        assert_eq!(body(r), bytes);
        assert_eq!(
            fetch(c.req("DELETE", &format!("/v2/app/manifests/{tag}"))).status(),
            202
        );
    }
    // An index whose child is not in the repository.
    let orphan = index.replace(&img.digest[7..], &sha256(b"absent")[7..]);
    let r = send(
        c.req("PUT", "/v2/app/manifests/orphan")
            .set("Content-Type", "application/vnd.oci.image.index.v1+json"),
        orphan.as_bytes(),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(code(r), "MANIFEST_BLOB_UNKNOWN");

    // Broken JSON, a wrong schema, too large.
    for bad in [&b"{"[..], br#"{"schemaVersion":1}"#, br#"[1,2]"#] {
        let r = c.put_manifest("app", "bad", bad);
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(bad));
        assert_eq!(code(r), "MANIFEST_INVALID");
    }
    // 5 MiB declared: refused before the body is read (ureq would see the
    // connection close while still sending, so the headers go raw).
    let head = raw_response(
        &server,
        &format!(
            "PUT /v2/app/manifests/huge HTTP/1.1\r\nHost: x\r\nContent-Type: {MANIFEST}\r\nContent-Length: {}\r\n\r\n",
            5 << 20
        ),
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // A referrer whose subject is not pushed yet, then one of a pushed one.
    let absent = sha256(b"not pushed");
    let sig = Image::new(&[b"sig".to_vec()], Some((&absent, 10)));
    for b in sig.blobs() {
        c.push_blob("app", &b.bytes);
    }
    let r = c.put_manifest("app", &sig.digest, &sig.manifest);
    assert_eq!(r.status(), 201);
    assert_eq!(r.header("oci-subject"), Some(absent.as_str()));
    let sig = Image::new(&[b"sig2".to_vec()], Some((&img.digest, img.manifest.len())));
    for b in sig.blobs() {
        c.push_blob("app", &b.bytes);
    }
    assert_eq!(
        c.put_manifest("app", &sig.digest, &sig.manifest).status(),
        201
    );
    let r = c.get(&format!("/v2/app/referrers/{}", img.digest));
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    let index: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], sig.digest.as_str());
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.signature"
    );
    let r = c.get(&format!(
        "/v2/app/referrers/{}?artifactType=other%2Ftype",
        img.digest
    ));
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let index: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
    assert!(index["manifests"].as_array().unwrap().is_empty());
    let r = c.get(&format!("/v2/app/referrers/{}", sha256(b"nobody")));
    assert_eq!(r.status(), 200);
    assert_eq!(c.get("/v2/app/referrers/sha256:zz").status(), 400);

    // Tags, paged.
    for tag in ["b", "a", "c", "d"] {
        assert_eq!(c.put_manifest("app", tag, &img.manifest).status(), 201);
    }
    let tags = |q: &str| {
        let r = c.get(&format!("/v2/app/tags/list{q}"));
        assert_eq!(r.status(), 200);
        let link = r.header("link").map(str::to_owned);
        let doc: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
        let names: Vec<String> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        (names, link)
    };
    assert_eq!(tags("").0, ["a", "b", "c", "d", "v1"]);
    let (page, link) = tags("?n=2");
    assert_eq!(page, ["a", "b"]);
    assert_eq!(
        link.as_deref(),
        Some("</v2/app/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let (page, link) = tags("?n=2&last=b");
    assert_eq!(page, ["c", "d"]);
    assert!(link.is_some());
    assert_eq!(tags("?n=2&last=d"), (vec!["v1".to_owned()], None));
    assert_eq!(tags("?last=c").0, ["d", "v1"]);
    assert_eq!(tags("?n=0"), (vec![], None));
    assert_eq!(c.get("/v2/app/tags/list?n=x").status(), 400);
    let r = c.get("/v2/nothing/tags/list");
    assert_eq!(r.status(), 404);
    assert_eq!(code(r), "NAME_UNKNOWN");

    let r = c.get("/v2/_catalog?n=1");
    let doc: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(doc["repositories"], serde_json::json!(["app"]));

    // Tags are OCI image layout references in index.json (once written
    // there from the journal, as `kist serve` does every second).
    let index = synced_index(&h);
    assert!(index.contains("\"app:v1\""), "{index}");

    // Deleting a tag leaves the manifest; deleting it by digest removes it
    // and its tags.
    assert_eq!(fetch(c.req("DELETE", "/v2/app/manifests/a")).status(), 202);
    assert_eq!(c.get("/v2/app/manifests/a").status(), 404);
    assert_eq!(c.get("/v2/app/manifests/b").status(), 200);
    let by_digest = format!("/v2/app/manifests/{}", img.digest);
    assert_eq!(fetch(c.req("DELETE", &by_digest)).status(), 202);
    assert_eq!(c.get(&by_digest).status(), 404);
    assert_eq!(c.get("/v2/app/manifests/b").status(), 404);
    let index = synced_index(&h);
    assert!(!index.contains("\"app:b\""), "{index}");
}

/// `index.json` after the tag journal is written into it.
fn synced_index(h: &Harness) -> String {
    h.store().registry().sync_index().unwrap();
    std::fs::read_to_string(h.path().join("index.json")).unwrap()
}

/// Sends `request` (head only) and returns what the server answers.
fn raw_response(server: &Server, request: &str) -> String {
    use std::io::{Read, Write};
    let addr = server.base.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0; 4096];
    let n = tcp.read(&mut answer).unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// Malformed names and digests are 4xx with the spec's codes, never a
/// 500; traversal reaches nothing.
#[test]
fn hostile_names_and_digests() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let c = Client::new(&server);
    let d = c.push_blob("ok", b"data");
    for path in [
        format!("/v2/UPPER/blobs/{d}"),
        format!("/v2/a..b/blobs/{d}"),
        format!("/v2/a/%2e%2e/blobs/{d}"),
        format!("/v2/a//b/blobs/{d}"),
        format!("/v2/-a/blobs/{d}"),
        format!("/v2/{}/blobs/{d}", "a".repeat(300)),
    ] {
        let r = c.get(&path);
        assert!(
            r.status() == 400 || r.status() == 404,
            "{path}: {}",
            r.status()
        );
    }
    for digest in [
        "sha256:zz",
        "sha256:",
        "md5:00",
        "sha256:../../x",
        "nodigest",
    ] {
        let r = c.get(&format!("/v2/ok/blobs/{digest}"));
        assert_eq!(r.status(), 400, "{digest}");
        assert_eq!(code(r), "DIGEST_INVALID");
        let r = send(
            c.req("POST", &format!("/v2/ok/blobs/uploads/?digest={digest}")),
            b"x",
        );
        assert_eq!(r.status(), 400, "{digest}");
    }
    for id in ["..", "a%2fb", &"x".repeat(200)] {
        let r = c.get(&format!("/v2/ok/blobs/uploads/{id}"));
        assert!(
            r.status() == 404 || r.status() == 400,
            "{id}: {}",
            r.status()
        );
    }
    let r = c.put_manifest("ok", "bad tag!", b"{}");
    assert_eq!(r.status(), 400);
    assert_eq!(c.get(&format!("/v2/ok/blobs/{d}")).status(), 200);
    assert!(kist_tests::fsck(&h.store(), false).is_empty());
}

/// An upload continues at its offset after a clean restart and after a
/// kill -9, on a new server process.
#[test]
fn uploads_survive_restarts_and_kills() {
    let h = Harness::new(open_embedded);
    let data = kist_tests::bytes(2 << 20, 9);
    let d = sha256(&data);
    let server = Server::start(h.path());
    let c = Client::new(&server);
    let upload = c.start("r");
    let r = send(c.req("PATCH", &upload), &data[..700_000]);
    let upload = r.header("location").unwrap().to_owned();
    server.terminate();

    let mut server = Server::start(h.path());
    let c = Client::new(&server);
    let r = fetch(c.req("GET", &upload));
    assert_eq!(r.status(), 204);
    assert_eq!(r.header("range"), Some("0-699999"));
    let r = send(
        c.req("PATCH", &upload)
            .set("Content-Range", "700000-1399999"),
        &data[700_000..1_400_000],
    );
    assert_eq!(r.status(), 202);
    server.child().kill().unwrap(); // SIGKILL
    server.child().wait().unwrap();

    let server = Server::start(h.path());
    let c = Client::new(&server);
    let r = fetch(c.req("GET", &upload));
    assert_eq!(r.header("range"), Some("0-1399999"));
    let r = send(
        c.req("PUT", &format!("{upload}?digest={d}")),
        &data[1_400_000..],
    );
    assert_eq!(r.status(), 201);
    assert_eq!(body(c.get(&format!("/v2/r/blobs/{d}"))), data);
}

/// Two clients pushing the same blob and the same tag at once: both
/// succeed, the blob is stored once, the tag names one of the manifests.
#[test]
fn concurrent_pushes_of_one_blob_and_one_tag() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let images: Vec<Image> = (0..6).map(|i| image(i, 2)).collect();
    let shared = kist_tests::bytes(1 << 20, 77);
    std::thread::scope(|s| {
        for img in &images {
            let (server, shared) = (&server, &shared);
            s.spawn(move || {
                let c = Client::new(server);
                // The same blob, chunked, from every thread.
                let upload = c.start("race");
                let r = send(c.req("PATCH", &upload), &shared[..500_000]);
                let upload = r.header("location").unwrap().to_owned();
                let r = send(
                    c.req("PUT", &format!("{upload}?digest={}", sha256(shared))),
                    &shared[500_000..],
                );
                assert_eq!(r.status(), 201);
                c.push_image("race", "latest", img);
            });
        }
    });
    let c = Client::new(&server);
    let r = c.get("/v2/race/manifests/latest");
    let digest = r.header("docker-content-digest").unwrap().to_owned();
    assert!(images.iter().any(|i| i.digest == digest));
    assert_eq!(
        body(c.get(&format!("/v2/race/blobs/{}", sha256(&shared)))),
        shared
    );
    let index = synced_index(&h);
    assert_eq!(index.matches("\"race:latest\"").count(), 1, "{index}");
    assert!(kist_tests::fsck(&h.store(), false).is_empty());
}

/// Collections looping while 100 images that share base layers are
/// pushed: every tagged image stays whole. With the graces at 0, what no
/// tag reaches goes at the next collection, what a tag reaches stays.
#[test]
fn collections_during_pushes_lose_nothing() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let base: Vec<Vec<u8>> = (0..3)
        .map(|i| kist_tests::bytes(50_000, 1000 + i))
        .collect();
    let images: Vec<Image> = (0..100u64)
        .map(|i| {
            let mut layers = base.clone();
            layers.push(kist_tests::bytes(5_000, i));
            Image::new(&layers, None)
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let store = h.store();
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                kist_tests::collect(&store);
                runs += 1;
            }
            runs
        });
        let pushers: Vec<_> = images
            .chunks(25)
            .map(|chunk| {
                let server = &server;
                s.spawn(move || {
                    let c = Client::new(server);
                    for img in chunk {
                        c.push_image("gc/app", &format!("t{}", &img.digest[7..19]), img);
                    }
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(collector.join().unwrap() > 0);
    });
    let c = Client::new(&server);
    for img in &images {
        let r = c.get(&format!("/v2/gc/app/manifests/{}", img.digest));
        assert_eq!(r.status(), 200);
        for b in img.blobs() {
            assert_eq!(
                body(c.get(&format!("/v2/gc/app/blobs/{}", b.digest))),
                b.bytes
            );
        }
    }

    // Graces at 0: an unreferenced pushed blob goes, tagged images stay.
    let store = h.store();
    let retention = store.retention();
    let settings = retention.settings().unwrap();
    retention
        .set_settings(kist::Settings {
            upload_grace_seconds: 0,
            untagged_grace_seconds: 0,
            ..settings
        })
        .unwrap();
    // Every process re-reads the settings within a second: the server
    // must see the new grace before the push it applies to.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let loose = c.push_blob("gc/app", b"nobody references me");
    // An untagged manifest (pushed by digest) and its own layer go too.
    let untagged = Image::new(&[kist_tests::bytes(3000, 4242)], None);
    for b in untagged.blobs() {
        c.push_blob("gc/app", &b.bytes);
    }
    assert_eq!(
        c.put_manifest("gc/app", &untagged.digest, &untagged.manifest)
            .status(),
        201
    );
    kist_tests::collect(&store);
    assert_eq!(c.get(&format!("/v2/gc/app/blobs/{loose}")).status(), 404);
    let manifest = format!("/v2/gc/app/manifests/{}", untagged.digest);
    assert_eq!(c.get(&manifest).status(), 404);
    let layer = &untagged.layers[0].digest;
    assert_eq!(c.get(&format!("/v2/gc/app/blobs/{layer}")).status(), 404);
    let img = &images[0];
    for b in img.blobs() {
        assert_eq!(
            c.get(&format!("/v2/gc/app/blobs/{}", b.digest)).status(),
            200
        );
    }
    assert!(kist_tests::fsck(&store, false).is_empty());
}

/// `--htpasswd`: wrong password and no credentials are 401 with
/// `WWW-Authenticate`; `--anonymous-pull` opens reads only. Without it,
/// a non-loopback address is refused.
#[test]
fn authentication() {
    let h = Harness::new(open_embedded);
    let file = h.path().parent().unwrap().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
    let file = file.to_str().unwrap();
    let mut server = Server::start_with(h.path(), &["--htpasswd", file]);
    let said = Said::from(&mut server);
    let mut c = Client::new(&server);
    let r = c.get("/v2/");
    assert_eq!(r.status(), 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"kist\""));
    assert_eq!(code(r), "UNAUTHORIZED");
    c.auth = Some(basic("alice", "wrong"));
    assert_eq!(c.get("/v2/").status(), 401);
    c.auth = Some(basic("mallory", "s3cret"));
    assert_eq!(c.get("/v2/").status(), 401);
    c.auth = Some(basic("alice", "s3cret"));
    assert_eq!(c.get("/v2/").status(), 200);
    let d = c.push_blob("private", b"secret bytes");

    // SIGHUP reads the file again: a user removed there is refused (her
    // checked credentials forgotten), one added is let in; a file that
    // does not parse keeps the users.
    let hangup = |contents: &str, expect: &str| {
        std::fs::write(file, contents).unwrap();
        said.hangup(&server, expect);
    };
    // Alice's upload in flight across the reload that removes her: its
    // request was let in, and it finishes.
    let upload = c.start("private");
    let in_flight = half_sent_patch(&server, &upload, &basic("alice", "s3cret"));
    let bob = bcrypt::hash("b0b", 4).unwrap();
    hangup(
        &format!("bob:{bob}\n"),
        "read the htpasswd and policy files again",
    );
    assert_eq!(c.get("/v2/").status(), 401);
    assert!(finish(in_flight).starts_with("HTTP/1.1 202"));
    c.auth = Some(basic("bob", "b0b"));
    assert_eq!(c.get("/v2/").status(), 200);
    hangup("bob has no hash\n", "that file stays as it was");
    assert_eq!(c.get("/v2/").status(), 200);
    std::fs::write(file, format!("alice:{hash}\n")).unwrap();
    drop(server);

    let server = Server::start_with(h.path(), &["--htpasswd", file, "--anonymous-pull"]);
    let anonymous = Client::new(&server);
    assert_eq!(
        anonymous.get(&format!("/v2/private/blobs/{d}")).status(),
        200
    );
    let r = send(anonymous.req("POST", "/v2/private/blobs/uploads/"), b"");
    assert_eq!(r.status(), 401);
    drop(server);

    let refused = std::process::Command::new(kist_tests::kist_bin())
        .args(["serve", "--addr", "0.0.0.0:0", "--store"])
        .arg(h.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--htpasswd"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// 1,000 tags paged through with `n=100`, following `Link`: every tag
/// once, sorted, and the last page has no link. (The benchmark pushes
/// 10,000, at the same rate for the last as for the first.)
#[test]
fn many_tags_page_through_links() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let c = Client::new(&server);
    let img = image(5, 1);
    c.push_image("many", "seed", &img);
    let mut expected: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    for tag in &expected {
        assert_eq!(c.put_manifest("many", tag, &img.manifest).status(), 201);
    }
    expected.push("seed".into());
    expected.sort();
    let mut seen = Vec::new();
    let mut next = Some("/v2/many/tags/list?n=100".to_owned());
    while let Some(path) = next.take() {
        let r = c.get(&path);
        assert_eq!(r.status(), 200, "{path}");
        next = next_page(&r);
        let doc: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
        let page = doc["tags"].as_array().unwrap();
        assert!(page.len() <= 100);
        seen.extend(page.iter().map(|t| t.as_str().unwrap().to_owned()));
    }
    assert_eq!(seen, expected);
}

/// Proves: `kist serve` killed with SIGKILL at random moments while it
/// moves tags (each a journal line appended and synced) leaves every tag
/// at the manifest it had or at the one being set, never neither and
/// never a journal that stops the next server: after each restart every
/// tag answers with an expected digest; at the end fsck finds nothing but
/// temporary files a kill left (and repairs them), and `index.json`, once
/// synced, names exactly what the registry answers.
#[test]
fn killed_tag_updates_leave_each_tag_old_or_new() {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    let h = Harness::new(open_embedded);
    let images = [image(31, 1), image(32, 1)];
    let tags: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let mut acked = BTreeMap::new();
    {
        let server = Server::start(h.path());
        let c = Client::new(&server);
        c.push_image("crash", "a", &images[0]);
        c.push_image("crash", "b", &images[1]);
        for t in &tags {
            assert_eq!(
                c.put_manifest("crash", t, &images[0].manifest).status(),
                201
            );
            acked.insert(t.clone(), images[0].digest.clone());
        }
    }
    let mut seed = 0x7a9u64;
    for round in 0..8 {
        let mut server = Server::start(h.path());
        let in_flight: Mutex<Option<(String, String)>> = Mutex::new(None);
        let shared_acked = Mutex::new(acked.clone());
        std::thread::scope(|s| {
            s.spawn(|| {
                let c = Client::new(&server);
                for (i, t) in tags.iter().cycle().enumerate() {
                    let img = &images[(i / tags.len() + round) % 2];
                    *in_flight.lock().unwrap() = Some((t.clone(), img.digest.clone()));
                    let r = c
                        .req("PUT", &format!("/v2/crash/manifests/{t}"))
                        .set("Content-Type", MANIFEST)
                        .send_bytes(&img.manifest);
                    match r {
                        Ok(r) if r.status() == 201 => {
                            shared_acked
                                .lock()
                                .unwrap()
                                .insert(t.clone(), img.digest.clone());
                            *in_flight.lock().unwrap() = None;
                        }
                        _ => return, // killed
                    }
                }
            });
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(std::time::Duration::from_millis(50 + seed % 400));
            let pid = server.pid().to_string();
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            assert!(killed.unwrap().success(), "kill -KILL {pid}");
        });
        server.child().wait().unwrap();
        drop(server);
        acked = shared_acked.into_inner().unwrap();
        let in_flight = in_flight.into_inner().unwrap();
        let server = Server::start(h.path());
        let c = Client::new(&server);
        for t in &tags {
            let r = c.get(&format!("/v2/crash/manifests/{t}"));
            assert_eq!(r.status(), 200, "round {round}: tag {t} lost");
            let got = r.header("docker-content-digest").unwrap().to_owned();
            let set = in_flight.as_ref().filter(|(tag, _)| tag == t);
            assert!(
                got == acked[t] || set.is_some_and(|(_, d)| *d == got),
                "round {round}: tag {t} is {got}, neither {} nor the one being set ({set:?}); \
                 index.journal:\n{}",
                acked[t],
                std::fs::read_to_string(h.path().join("index.journal")).unwrap_or_default()
            );
            acked.insert(t.clone(), got);
        }
    }
    // A kill between writing a record's temporary copy and renaming it
    // leaves the copy: fsck names it, and its repair removes it. Nothing
    // else may be wrong.
    let problems = kist_tests::fsck(&h.store(), true);
    assert!(
        problems
            .iter()
            .all(|p| p.kind == kist::ProblemKind::TempFile),
        "{problems:?}"
    );
    assert!(kist_tests::fsck(&h.store(), false).is_empty());
    let index: serde_json::Value = serde_json::from_str(&synced_index(&h)).unwrap();
    let named: BTreeMap<String, String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let name = m["annotations"]["org.opencontainers.image.ref.name"].as_str();
            (
                name.unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .filter_map(|(name, d)| Some((name.strip_prefix("crash:")?.to_owned(), d)))
        .filter(|(tag, _)| tag.starts_with('t'))
        .collect();
    assert_eq!(named, acked);
}

/// `?tag=` on a push by digest (OCI distribution 1.1): every tag given
/// points at the manifest, one `OCI-Tag` each, also for a sha512 digest
/// (which a push by tag cannot give: it names the manifest by sha256); a
/// malformed tag among them refuses the push before anything is stored.
#[test]
fn push_by_digest_with_tags() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let c = Client::new(&server);
    let img = image(7, 2);
    for b in img.blobs() {
        c.push_blob("app", &b.bytes);
    }
    let d512 = sha512(&img.manifest);
    let bad = format!("/v2/app/manifests/{d512}?tag=v1&tag=bad%20tag");
    let r = send(
        c.req("PUT", &bad).set("Content-Type", MANIFEST),
        &img.manifest,
    );
    assert_eq!(r.status(), 400);
    assert_eq!(code(r), "MANIFEST_INVALID");
    assert_eq!(c.get(&format!("/v2/app/manifests/{d512}")).status(), 404);
    assert_eq!(c.get("/v2/app/manifests/v1").status(), 404);

    let good = format!("/v2/app/manifests/{d512}?tag=v1&tag=latest");
    let r = send(
        c.req("PUT", &good).set("Content-Type", MANIFEST),
        &img.manifest,
    );
    assert_eq!(r.status(), 201);
    assert_eq!(r.all("oci-tag"), ["v1", "latest"]);
    assert_eq!(r.header("docker-content-digest"), Some(d512.as_str()));
    for tag in ["v1", "latest"] {
        let r = c.get(&format!("/v2/app/manifests/{tag}"));
        assert_eq!(r.header("docker-content-digest"), Some(d512.as_str()));
        assert_eq!(body(r), img.manifest);
    }
    let tags: serde_json::Value =
        serde_json::from_slice(&body(c.get("/v2/app/tags/list"))).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["latest", "v1"]));
}
