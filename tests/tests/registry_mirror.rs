//! `kist serve --mirror`: a pull-through cache of an upstream
//! docker-registry 2.8 on loopback, seen through a proxy that counts the
//! requests reaching the upstream (and cuts one when told to).

use std::path::Path;
use std::process::Output;

use kist_tests::containerd::Containerd;
use kist_tests::http::{body, send};
use kist_tests::oci::Image;
use kist_tests::registry::{Client, code, skopeo_copy};
use kist_tests::upstream::{DockerRegistry, Proxy};
use kist_tests::{Harness, Server, open_embedded, sha256};

fn succeeded(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An image of three layers, the last `big` bytes, from `seed`.
fn image(seed: u64, big: usize) -> Image {
    let layers: Vec<Vec<u8>> = [100_000, 300_000, big]
        .iter()
        .enumerate()
        .map(|(i, size)| kist_tests::bytes(*size, seed * 10 + i as u64))
        .collect();
    Image::new(&layers, None)
}

/// Pushes `image` to `upstream` as `name` (`lib/app:v1`) with skopeo.
fn publish(upstream: &DockerRegistry, image: &Image, name: &str, work: &Path) {
    let layout = work.join(format!("layout-{}", &image.digest[7..19]));
    image.write_layout(&layout, "v1");
    let out = skopeo_copy(&[
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/{name}", upstream.addr),
    ]);
    succeeded(out, "skopeo copy to the upstream");
}

/// Proves: skopeo pulls an image through the mirror, each blob fetched
/// from the upstream once; a second pull within the TTL reaches the
/// upstream not at all; pushes are refused (405 `UNSUPPORTED`); eight
/// clients pulling a cold image at once make one upstream request for its
/// manifest and one per blob, and all get the right bytes; a blob download cut midway resumes
/// with a `Range`. Then, served again with a TTL of 0 (every tag
/// revalidated): a tag moved upstream is seen, through a `HEAD`; with the
/// upstream stopped, what is cached is served (a tag stale, with a
/// `Warning`) and a blob not cached is 503 until the upstream is back.
#[test]
fn the_mirror_fetches_once_streams_resumes_and_revalidates() {
    let work = tempfile::tempdir().unwrap();
    let mut upstream = DockerRegistry::start(work.path());
    let proxy = Proxy::start(&upstream.addr);
    let (app, cold, cut) = (image(1, 500_000), image(2, 700_000), image(3, 3_000_000));
    publish(&upstream, &app, "lib/app:v1", work.path());
    publish(&upstream, &cold, "lib/cold:v1", work.path());
    publish(&upstream, &cut, "lib/cut:v1", work.path());
    let h = Harness::new(open_embedded);
    let mirror = format!("http://{}", proxy.addr);
    let server = Server::start_with(h.path(), &["--mirror", &mirror, "--mirror-ttl", "1h"]);
    let host = server.base.trim_start_matches("http://").to_owned();

    let pull = |name: &str, out: &str| {
        let to = format!("oci:{}:v1", work.path().join(out).display());
        skopeo_copy(&[&format!("docker://{host}/{name}"), &to])
    };
    succeeded(
        pull("lib/app:v1", "first"),
        "skopeo copy through the mirror",
    );
    for blob in app.blobs() {
        let asked = proxy.count(&format!("GET /v2/lib/app/blobs/{} ", blob.digest));
        assert_eq!(asked, 1, "{}", blob.digest);
    }
    let reached = proxy.requests().len();
    succeeded(pull("lib/app:v1", "second"), "a second pull");
    assert_eq!(
        proxy.requests().len(),
        reached,
        "{:?}",
        &proxy.requests()[reached..]
    );

    let c = Client::new(&server);
    let r = send(c.req("POST", "/v2/lib/app/blobs/uploads/"), b"");
    assert_eq!(r.status(), 405);
    assert_eq!(code(r), "UNSUPPORTED");

    // Eight clients at once on a cold image.
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let c = Client::new(&server);
                barrier.wait();
                let r = c.get("/v2/lib/cold/manifests/v1");
                assert_eq!(r.status(), 200);
                for blob in cold.blobs() {
                    let r = c.get(&format!("/v2/lib/cold/blobs/{}", blob.digest));
                    assert_eq!(r.status(), 200);
                    assert_eq!(sha256(&body(r)), blob.digest);
                }
            });
        }
    });
    for blob in cold.blobs() {
        let asked = proxy.count(&format!("GET /v2/lib/cold/blobs/{} ", blob.digest));
        assert_eq!(asked, 1, "{}: {:?}", blob.digest, proxy.requests());
    }
    let asked = proxy.count("GET /v2/lib/cold/manifests/v1 ");
    assert_eq!(asked, 1, "one manifest fetch: {:?}", proxy.requests());

    // A download cut after 1 MB resumes from where it stopped.
    let big = &cut.layers[2];
    proxy.cut_next_blob_after(1_000_000);
    let r = c.get(&format!("/v2/lib/cut/blobs/{}", big.digest));
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&body(r)), big.digest);
    let resumed = format!("GET /v2/lib/cut/blobs/{} HTTP/1.1 range", big.digest);
    assert_eq!(proxy.count(&resumed), 1, "{:?}", proxy.requests());

    // The tag moves upstream: within the TTL the mirror still serves
    // what it had; served with a TTL of 0, it asks (HEAD) and follows.
    let moved = image(4, 200_000);
    publish(&upstream, &moved, "lib/app:v1", work.path());
    let digest = |r: ureq::Response| r.header("docker-content-digest").unwrap().to_owned();
    assert_eq!(digest(c.get("/v2/lib/app/manifests/v1")), app.digest);
    drop(c);
    drop(server);
    let server = Server::start_with(h.path(), &["--mirror", &mirror, "--mirror-ttl", "0s"]);
    let c = Client::new(&server);
    let host = server.base.trim_start_matches("http://").to_owned();
    let pull = |name: &str, out: &str| {
        let to = format!("oci:{}:v1", work.path().join(out).display());
        skopeo_copy(&[&format!("docker://{host}/{name}"), &to])
    };
    assert_eq!(digest(c.get("/v2/lib/app/manifests/v1")), moved.digest);
    assert!(proxy.count("HEAD /v2/lib/app/manifests/v1 ") >= 1);

    // The upstream stops: cached content is served, tags stale.
    upstream.stop();
    let r = c.get("/v2/lib/cold/manifests/v1");
    assert_eq!(r.status(), 200);
    assert!(r.header("warning").unwrap_or_default().starts_with("110 "));
    succeeded(
        pull("lib/cold:v1", "offline"),
        "a pull with the upstream stopped",
    );
    let r = c.get(&format!("/v2/lib/app/blobs/{}", moved.layers[0].digest));
    assert_eq!(r.status(), 503);
    upstream.restart();
    let r = c.get(&format!("/v2/lib/app/blobs/{}", moved.layers[0].digest));
    assert_eq!(r.status(), 200);
}

/// Proves: containerd pulls through the mirror as its `hosts.toml` says
/// (`[host."http://<kist>"] capabilities = ["pull", "resolve"]` for the
/// upstream's name): `ctr images pull --hosts-dir` gets the image, and
/// every blob it needed came from the upstream once, through kist.
#[test]
fn ctr_pulls_through_the_mirror_with_hosts_toml() {
    let work = tempfile::tempdir().unwrap();
    let upstream = DockerRegistry::start(work.path());
    let proxy = Proxy::start(&upstream.addr);
    let img = image(5, 400_000);
    publish(&upstream, &img, "lib/ctr:v1", work.path());
    let h = Harness::new(open_embedded);
    let mirror = format!("http://{}", proxy.addr);
    let server = Server::start_with(h.path(), &["--mirror", &mirror]);
    let kist = server.base.clone();
    let hosts = work.path().join("certs.d");
    let dir = hosts.join(&upstream.addr);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"http://{}\"\n\n[host.\"{kist}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            upstream.addr
        ),
    )
    .unwrap();
    let containerd = Containerd::start();
    let name = format!("{}/lib/ctr:v1", upstream.addr);
    let hosts_dir = hosts.to_str().unwrap();
    let out = containerd.ctr(&[
        "images",
        "pull",
        "--hosts-dir",
        hosts_dir,
        "--snapshotter",
        "native",
        &name,
    ]);
    succeeded(out, "ctr images pull --hosts-dir");
    let out = containerd.ctr(&["images", "check"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("complete"));
    for blob in img.blobs() {
        let asked = proxy.count(&format!("GET /v2/lib/ctr/blobs/{} ", blob.digest));
        assert_eq!(asked, 1, "{}: {:?}", blob.digest, proxy.requests());
    }
    drop(containerd);
}

/// A hostile upstream: answers each request whose line contains a key of
/// `routes` with its raw response; 404 otherwise. Records what it was
/// asked.
fn hostile_upstream(
    routes: Vec<(String, Vec<u8>)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            seen.lock().unwrap().push(line.trim().to_owned());
            let answer = routes
                .iter()
                .find(|(key, _)| line.contains(key.as_str()))
                .map_or(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec(),
                    |(_, a)| a.clone(),
                );
            let _ = (&stream).write_all(&answer);
        }
    });
    (addr, asked)
}

/// Proves: what a hostile upstream sends is never stored or passed on as
/// good: a blob whose bytes are not its digest (the clients' download is
/// cut, nothing is stored, the next request fetches again), a manifest
/// over 4 MiB, a manifest whose bytes do not have the digest the upstream
/// names, and a redirect to an origin not allowed (never followed) are
/// refused, and the store checks clean after.
#[test]
fn a_hostile_upstream_stores_nothing() {
    let wrong = b"not the bytes of the digest".to_vec();
    let claimed = sha256(b"the bytes asked for");
    let respond = |headers: &str, body: &[u8]| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let manifest = image(6, 1000).manifest;
    let (elsewhere, visited) = hostile_upstream(Vec::new());
    let routes = vec![
        (format!("/v2/evil/blobs/{claimed} "), respond("", &wrong)),
        (
            "/v2/evil/manifests/huge ".to_owned(),
            respond("Content-Type: application/vnd.oci.image.manifest.v1+json\r\n", &vec![b' '; 5 << 20]),
        ),
        (
            "/v2/evil/manifests/lying ".to_owned(),
            respond(
                &format!("Content-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {claimed}\r\n"),
                &manifest,
            ),
        ),
        (
            "/v2/evil/manifests/away ".to_owned(),
            format!("HTTP/1.1 302 Found\r\nLocation: http://{elsewhere}/v2/evil/manifests/away\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(),
        ),
    ];
    let (upstream, asked) = hostile_upstream(routes);
    let h = Harness::new(open_embedded);
    let server = Server::start_with(h.path(), &["--mirror", &format!("http://{upstream}")]);
    let c = Client::new(&server);
    let fetched = |what: &str| {
        asked
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    let blob = format!("GET /v2/evil/blobs/{claimed} ");
    // Each request joins the fill running (one download for all) or,
    // once it failed, starts another: until the upstream was asked twice.
    for tries in 1.. {
        let got = c.req("GET", &format!("/v2/evil/blobs/{claimed}")).call();
        let whole = got.is_ok_and(|r| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).is_ok()
        });
        assert!(!whole, "a body that is not the blob ended as if complete");
        if fetched(&blob) == 2 {
            break;
        }
        assert!(tries < 100, "the mirror never fetched the blob again");
    }
    for tag in ["huge", "lying", "away"] {
        let r = c.get(&format!("/v2/evil/manifests/{tag}"));
        assert!(r.status() >= 400, "{tag}: {}", r.status());
    }
    assert!(
        visited.lock().unwrap().is_empty(),
        "a redirect went to an origin not allowed"
    );
    drop(server);
    let store = h.store();
    assert!(matches!(store.info(&claimed), Err(kist::Error::NotFound)));
    let tags = store.registry().tags("evil", None, None);
    assert!(tags.map(|p| p.names).unwrap_or_default().is_empty());
    assert!(kist_tests::fsck(&store, false).is_empty());
}

/// Pulls the manifest `v1` of `name` and every blob of `image` through
/// the mirror, checking each.
fn pull_all(c: &Client, name: &str, image: &Image) {
    let r = c.get(&format!("/v2/{name}/manifests/v1"));
    assert_eq!(r.status(), 200, "{name}");
    assert_eq!(sha256(&body(r)), image.digest);
    for blob in image.blobs() {
        let r = c.get(&format!("/v2/{name}/blobs/{}", blob.digest));
        assert_eq!(r.status(), 200, "{name}: {}", blob.digest);
        assert_eq!(sha256(&body(r)), blob.digest);
    }
}

/// Whether the store at `dir` has the blob `digest` on disk.
fn on_disk(dir: &Path, digest: &str) -> bool {
    dir.join("blobs/sha256").join(&digest[7..]).exists()
}

/// How many times each blob of `image` was asked of the upstream.
fn fetched(proxy: &Proxy, name: &str, image: &Image) -> Vec<usize> {
    image
        .blobs()
        .map(|b| proxy.count(&format!("GET /v2/{name}/blobs/{} ", b.digest)))
        .collect()
}

/// Proves what the mirror stores is a cache, held by its repository with
/// a TTL from the last pull (`--mirror-keep`): within it a collection
/// keeps it all (graces set to 0, so only the keep holds it). With a keep
/// of 0 a collection releases it (a mirrored tag keeps nothing) and,
/// within the cache TTL, a pull takes the cached blobs back without
/// fetching them again (only the manifest is asked again). When a quota
/// on `registry/` is crossed, the image released longest ago is evicted
/// first, its mirrored tag with it, and the next pull fetches it again.
#[test]
fn the_mirror_is_a_cache_kept_after_use_and_evicted_oldest_first() {
    let work = tempfile::tempdir().unwrap();
    let upstream = DockerRegistry::start(work.path());
    let proxy = Proxy::start(&upstream.addr);
    let (a, b) = (image(6, 1_000_000), image(7, 1_000_000));
    publish(&upstream, &a, "lib/a:v1", work.path());
    publish(&upstream, &b, "lib/b:v1", work.path());
    let mirror = format!("http://{}", proxy.addr);

    // Kept for an hour after the pull: a collection removes nothing.
    let kept = Harness::new(open_embedded);
    kist_tests::no_registry_graces(&kept.store(), 0);
    let server = Server::start_with(kept.path(), &["--mirror", &mirror, "--mirror-keep", "1h"]);
    pull_all(&Client::new(&server), "lib/a", &a);
    assert_eq!(kist_tests::collect(&kept.store()), 0);
    assert!(a.blobs().all(|blob| on_disk(kept.path(), &blob.digest)));
    let reached = proxy.requests().len();
    pull_all(&Client::new(&server), "lib/a", &a);
    assert_eq!(proxy.requests().len(), reached, "served from the store");
    drop(server);

    // Kept 0 s: released at once, cached for an hour.
    let h = Harness::new(open_embedded);
    let store = h.store();
    kist_tests::no_registry_graces(&store, 3_600);
    let server = Server::start_with(h.path(), &["--mirror", &mirror, "--mirror-keep", "0s"]);
    let c = Client::new(&server);
    pull_all(&c, "lib/a", &a);
    assert_eq!(fetched(&proxy, "lib/a", &a), [2, 2, 2, 2], "once per store");
    assert_eq!(kist_tests::collect(&store), 0, "cached, not removed");
    assert!(
        store
            .registry()
            .stat_blob("lib/a", &a.layers[0].digest)
            .is_err(),
        "released"
    );
    let manifests = proxy.count("GET /v2/lib/a/manifests/v1 ");
    pull_all(&c, "lib/a", &a);
    assert_eq!(proxy.count("GET /v2/lib/a/manifests/v1 "), manifests + 1);
    assert_eq!(fetched(&proxy, "lib/a", &a), [2, 2, 2, 2], "taken back");

    // a is released, then b later; a quota with room for one of them
    // evicts a.
    assert_eq!(kist_tests::collect(&store), 0);
    pull_all(&c, "lib/b", &b);
    assert_eq!(kist_tests::collect(&store), 0);
    let size =
        |i: &Image| i.blobs().map(|b| b.bytes.len() as u64).sum::<u64>() + i.manifest.len() as u64;
    store
        .retention()
        .set_quota(
            Some("registry/"),
            kist::Limit::Bytes(size(&b) + size(&a) / 2),
        )
        .unwrap();
    let freed = kist_tests::collect(&store);
    assert_eq!(freed, size(&a));
    assert!(a.blobs().all(|blob| !on_disk(h.path(), &blob.digest)));
    assert!(!on_disk(h.path(), &a.digest));
    assert!(b.blobs().all(|blob| on_disk(h.path(), &blob.digest)));
    let tags = match store.registry().tags("lib/a", None, None) {
        Ok(page) => page.names,
        Err(kist::Error::Registry(kist::RegistryError::NameUnknown)) => Vec::new(),
        Err(e) => panic!("tags of lib/a: {e}"),
    };
    assert!(tags.is_empty(), "the evicted tag went: {tags:?}");
    assert_eq!(
        store.registry().tags("lib/b", None, None).unwrap().names,
        ["v1"]
    );

    // Pulled again: fetched again, and b is evicted to make room.
    pull_all(&c, "lib/a", &a);
    assert_eq!(fetched(&proxy, "lib/a", &a), [3, 3, 3, 3]);
    assert!(kist_tests::fsck(&store, false).is_empty());
}

/// Polls `ready` until it gives a value. What it waits for is the server
/// reacting, a matter of milliseconds: two minutes without it fails,
/// naming `what`.
fn patiently<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "waited two minutes for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Proves: the fills a client starts count against it until they end,
/// even after it stopped waiting. With `--transfers-per-client 2` and the
/// upstream holding its answers, a client that asked for two cold blobs
/// holds two fills, and its third cold blob is 429 `TOOMANYREQUESTS`;
/// once the upstream answers, both fills finish (each blob fetched once)
/// and the third blob is served.
#[test]
fn fills_count_against_the_client_that_started_them() {
    let work = tempfile::tempdir().unwrap();
    let upstream = DockerRegistry::start(work.path());
    let proxy = Proxy::start(&upstream.addr);
    let img = image(8, 300_000);
    publish(&upstream, &img, "lib/fills:v1", work.path());
    let h = Harness::new(open_embedded);
    let mirror = format!("http://{}", proxy.addr);
    let server = Server::start_with(
        h.path(),
        &[
            "--mirror",
            &mirror,
            "--transfers-per-client",
            "2",
            // The upstream is held for as long as this test needs on a
            // busy machine; a fill it starves is otherwise cut (503, or a
            // body broken off) once the 10 s grace ends.
            "--transfer-grace",
            "1h",
        ],
    );
    let c = Client::new(&server);
    assert_eq!(c.get("/v2/lib/fills/manifests/v1").status(), 200);

    proxy.hold_blobs(true);
    let host = server.base.trim_start_matches("http://").to_owned();
    let waiting: Vec<std::net::TcpStream> = img.layers[..2]
        .iter()
        .map(|layer| {
            let mut s = std::net::TcpStream::connect(&host).unwrap();
            let request = format!(
                "GET /v2/lib/fills/blobs/{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                layer.digest
            );
            std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
            s
        })
        .collect();
    // Both fills started once the upstream was asked (it holds its
    // answers).
    patiently("the two fills to reach the upstream", || {
        (fetched(&proxy, "lib/fills", &img)[1..3] == [1, 1]).then_some(())
    });
    let third = format!("/v2/lib/fills/blobs/{}", img.layers[2].digest);
    let r = c.get(&third);
    assert_eq!(r.status(), 429);
    assert_eq!(code(r), "TOOMANYREQUESTS");
    drop(waiting);

    // Released, the fills finish; until then the client is still at its
    // limit, and retries as the 429's Retry-After says.
    proxy.hold_blobs(false);
    for layer in &img.layers {
        let path = format!("/v2/lib/fills/blobs/{}", layer.digest);
        let r = patiently("the fills to end", || {
            Some(c.get(&path)).filter(|r| r.status() != 429)
        });
        assert_eq!(r.status(), 200);
        assert_eq!(sha256(&body(r)), layer.digest);
    }
    for layer in &img.layers {
        let asked = proxy.count(&format!("GET /v2/lib/fills/blobs/{} ", layer.digest));
        assert_eq!(asked, 1, "{}: {:?}", layer.digest, proxy.requests());
    }
}

/// Proves: two `kist serve --mirror` processes on one store fetch a
/// missing blob once between them: the second finds the first's fill
/// under way (its upload busy) and streams from it instead of refusing
/// or downloading beside it; both clients get the right bytes.
#[test]
fn two_mirror_processes_on_one_store_fetch_a_blob_once() {
    let work = tempfile::tempdir().unwrap();
    let upstream = DockerRegistry::start(work.path());
    let proxy = Proxy::start(&upstream.addr);
    let img = image(9, 3_000_000);
    publish(&upstream, &img, "lib/shared:v1", work.path());
    let h = Harness::new(open_embedded);
    let mirror = format!("http://{}", proxy.addr);
    // Held as long as a busy machine needs (see above).
    let args = ["--mirror", &mirror, "--transfer-grace", "1h"];
    let first = Server::start_with(h.path(), &args);
    let second = Server::start_with(h.path(), &args);
    let big = &img.layers[2];
    let path = format!("/v2/lib/shared/blobs/{}", big.digest);
    assert_eq!(
        Client::new(&first)
            .get("/v2/lib/shared/manifests/v1")
            .status(),
        200
    );

    proxy.hold_blobs(true);
    std::thread::scope(|s| {
        let one = s.spawn(|| body(Client::new(&first).get(&path)));
        patiently("the first fill to reach the upstream", || {
            (proxy.count(&format!("GET {path} ")) == 1).then_some(())
        });
        let two = s.spawn(|| body(Client::new(&second).get(&path)));
        patiently("the second process to ask the upstream the size", || {
            (proxy.count(&format!("HEAD {path} ")) == 1).then_some(())
        });
        proxy.hold_blobs(false);
        assert_eq!(sha256(&one.join().unwrap()), big.digest);
        assert_eq!(sha256(&two.join().unwrap()), big.digest);
    });
    assert_eq!(
        proxy.count(&format!("GET {path} ")),
        1,
        "{:?}",
        proxy.requests()
    );
}

/// Proves: with `--mirror-allow-push`, a tag pushed to the mirror is its
/// own. Revalidated against the upstream (TTL 0) it stays on what was
/// pushed, though the upstream has another manifest under that tag; and
/// a collection keeps the pushed image (a root, as in any registry) while
/// it evicts mirrored content past its keep.
#[test]
fn a_tag_pushed_to_a_mirror_is_its_own() {
    let work = tempfile::tempdir().unwrap();
    let upstream = DockerRegistry::start(work.path());
    let proxy = Proxy::start(&upstream.addr);
    let (theirs, ours, other) = (image(10, 100_000), image(11, 100_000), image(12, 100_000));
    publish(&upstream, &theirs, "lib/app:v1", work.path());
    publish(&upstream, &other, "lib/other:v1", work.path());
    let h = Harness::new(open_embedded);
    let store = h.store();
    kist_tests::no_registry_graces(&store, 0);
    let mirror = format!("http://{}", proxy.addr);
    let server = Server::start_with(
        h.path(),
        &[
            "--mirror",
            &mirror,
            "--mirror-allow-push",
            "--mirror-ttl",
            "0s",
            "--mirror-keep",
            "0s",
        ],
    );
    let c = Client::new(&server);
    c.push_image("lib/app", "v1", &ours);
    pull_all(&c, "lib/other", &other);
    let digest = |r: ureq::Response| r.header("docker-content-digest").unwrap().to_owned();
    assert_eq!(digest(c.get("/v2/lib/app/manifests/v1")), ours.digest);
    assert!(proxy.count("/v2/lib/app/manifests/v1 ") >= 1, "revalidated");
    assert_eq!(digest(c.get("/v2/lib/app/manifests/v1")), ours.digest);

    assert!(kist_tests::collect(&store) > 0);
    assert!(ours.blobs().all(|blob| on_disk(h.path(), &blob.digest)));
    assert!(other.blobs().all(|blob| !on_disk(h.path(), &blob.digest)));
    assert_eq!(digest(c.get("/v2/lib/app/manifests/v1")), ours.digest);
}
