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

/// The text of `GET /metrics` once it shows `wanted` (a response's body
/// is counted when hyper is done with it, a moment after the client read
/// it all); fails after 200 scrapes without it.
fn scrape_until(url: &str, wanted: &str) -> String {
    for _ in 0..200 {
        let r = fetch(ureq::get(url));
        assert_eq!(
            r.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        let text = String::from_utf8(body(r)).unwrap();
        if text.contains(wanted) {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("/metrics never showed {wanted}");
}

/// `/metrics` counts requests by method, route template and status, with
/// their bytes and durations, never a repository name; `/healthz` answers
/// while the store does; the access log has one JSON line per request
/// with its client and authenticated user (issue 31).
#[test]
fn metrics_health_and_access_log() {
    let h = Harness::new(open_embedded);
    let bytes = store_with_artifact(&h);
    let dir = h.path().parent().unwrap();
    let (htpasswd, log) = (dir.join("htpasswd"), dir.join("access.log"));
    std::fs::write(&htpasswd, format!("u:{}\n", bcrypt::hash("p", 4).unwrap())).unwrap();
    let args = [
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
    ];
    let server = Server::start_with(h.path(), &args);
    assert_eq!(body(fetch(ureq::get(&server.url(PATH)))), bytes);
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "u:p")
    );
    let missing = ureq::get(&server.url("v2/lib/app/manifests/v1")).set("Authorization", &auth);
    assert_eq!(fetch(missing).status(), 404);
    let denied = fetch(ureq::get(&server.url("v2/lib/app/tags/list")));
    assert_eq!(denied.status(), 401);
    let health = fetch(ureq::get(&server.url("healthz")));
    assert_eq!(health.status(), 200);
    assert_eq!(body(health), b"ok\n");

    let artifact = r#"method="GET",route="/{kind}/{namespace}/{name}/{file}""#;
    let text = scrape_until(
        &server.url("metrics"),
        &format!("kist_http_request_duration_seconds_count{{{artifact}}} 1"),
    );
    for line in [
        format!("kist_http_requests_total{{{artifact},status=\"200\"}} 1"),
        format!("kist_http_sent_bytes_total{{{artifact}}} {}", bytes.len()),
        r#"kist_http_requests_total{method="GET",route="/v2/{name}/manifests/{reference}",status="404"} 1"#.into(),
        r#"kist_http_requests_total{method="GET",route="/v2/{name}/tags/list",status="401"} 1"#.into(),
        r#"kist_http_requests_total{method="GET",route="/healthz",status="200"} 1"#.into(),
        "kist_admission_refused_total 0".into(),
        "kist_collections_total 0".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
    assert!(
        !text.contains("lib/app") && !text.contains("podinfo"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");

    assert!(server.terminate().success());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {lines:?}"))
    };
    let download = find(&format!("/{PATH}"));
    assert_eq!(download["status"], 200);
    assert_eq!(download["bytes_out"], bytes.len());
    assert_eq!(download["route"], "/{kind}/{namespace}/{name}/{file}");
    assert_eq!(download["client"], "127.0.0.1");
    assert!(download["user"].is_null());
    assert!(download["duration_ms"].as_f64().unwrap() > 0.0);
    let pull = find("/v2/lib/app/manifests/v1");
    assert_eq!((&pull["status"], &pull["user"]), (&404.into(), &"u".into()));
    assert_eq!(find("/v2/lib/app/tags/list")["status"], 401);
}

/// `--metrics-addr` serves `/metrics` and `/healthz` there and not beside
/// the registry.
#[test]
fn metrics_on_their_own_address() {
    let h = Harness::new(open_embedded);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let server = Server::start_with(h.path(), &["--metrics-addr", &addr]);
    assert_eq!(fetch(ureq::get(&server.url("metrics"))).status(), 404);
    assert_eq!(fetch(ureq::get(&server.url("v2/"))).status(), 200);
    let health = fetch(ureq::get(&format!("http://{addr}/healthz")));
    assert_eq!(health.status(), 200);
    scrape_until(
        &format!("http://{addr}/metrics"),
        r#"kist_http_requests_total{method="GET",route="/v2/",status="200"} 1"#,
    );
}

/// `kist serve --config FILE` takes every flag from a TOML file, a flag
/// given on the command line wins over the file, and a key that is no
/// flag is refused with the file's name (issue 31).
#[test]
fn config_file_settings_and_overrides() {
    let h = Harness::new(open_embedded);
    let dir = h.path().parent().unwrap();
    let (htpasswd, config) = (dir.join("htpasswd"), dir.join("kist.toml"));
    std::fs::write(&htpasswd, format!("u:{}\n", bcrypt::hash("p", 4).unwrap())).unwrap();
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: if the file's
    // `addr` won over `--addr 127.0.0.1:0`, the server could not listen.
    let text = format!(
        "addr = \"192.0.2.1:5000\"\nhtpasswd = {:?}\nanonymous_pull = true\ngc-interval = \"0s\"\n",
        htpasswd.to_str().unwrap()
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start_with(h.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(fetch(ureq::get(&server.url("v2/"))).status(), 200);
    let push = fetch(ureq::post(&server.url("v2/lib/app/blobs/uploads/")));
    assert_eq!(push.status(), 401, "the file's htpasswd is in force");
    assert!(server.terminate().success());

    std::fs::write(&config, "adress = \"127.0.0.1:0\"\n").unwrap();
    let out = std::process::Command::new(kist_tests::kist_bin())
        .args(["serve", "--store"])
        .arg(h.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(
        said.contains("kist.toml: `adress` is not a flag of `kist serve`"),
        "{said}"
    );
}
