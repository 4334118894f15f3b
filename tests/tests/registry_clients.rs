//! Real registry clients against `kist serve`: skopeo (plain, and TLS with
//! credentials), oras-py (artifacts and referrers), containerd's `ctr`
//! (pull and push through a private daemon).

use std::path::Path;
use std::process::{Command, Output};

use kist_tests::containerd::Containerd;
use kist_tests::oci::Image;
use kist_tests::{Harness, Server, open_embedded, peer};

fn run(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skopeo(args: &[&str]) -> Output {
    Command::new(peer("skopeo"))
        .args(["--insecure-policy"])
        .args(args)
        .output()
        .expect("running skopeo")
}

/// `host:port` of a server.
fn host(server: &Server) -> String {
    server.base.split("://").nth(1).unwrap().to_owned()
}

/// The manifest digest an OCI layout's `index.json` names for `tag`.
fn layout_digest(dir: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {tag} in {index}"))
}

fn three_layer_image() -> Image {
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| kist_tests::bytes(300_000 * (i + 1), i as u64))
        .collect();
    Image::new(&layers, None)
}

/// skopeo copies an OCI image into the registry and back out unchanged;
/// the store itself reads as an OCI layout (`oci:<store>:<repo>:<tag>`).
#[test]
fn skopeo_copies_in_and_out() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let img = three_layer_image();
    img.write_layout(&src, "v1");
    let target = format!("docker://{}/lib/demo:v1", host(&server));
    run(
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", src.display()),
            &target,
        ]),
        "skopeo copy to the registry",
    );
    let out = work.path().join("out");
    run(
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &target,
            &format!("oci:{}:v1", out.display()),
        ]),
        "skopeo copy from the registry",
    );
    assert_eq!(layout_digest(&out, "v1"), img.digest);
    for b in img.blobs() {
        let hex = b.digest.trim_start_matches("sha256:");
        assert_eq!(
            std::fs::read(out.join("blobs/sha256").join(hex)).unwrap(),
            b.bytes
        );
    }
    // The store directory is an OCI image layout: tags are its references,
    // written into index.json by the server a moment after the push (it
    // journals them first and writes index.json every second).
    let index = h.path().join("index.json");
    let mut waited = 0;
    while !std::fs::read_to_string(&index)
        .unwrap_or_default()
        .contains("lib/demo:v1")
    {
        waited += 1;
        assert!(
            waited < 600,
            "the server never wrote lib/demo:v1 into index.json"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let direct = work.path().join("direct");
    run(
        skopeo(&[
            "copy",
            &format!("oci:{}:lib/demo:v1", h.path().display()),
            &format!("oci:{}:v1", direct.display()),
        ]),
        "skopeo copy from the store as a layout",
    );
    assert_eq!(layout_digest(&direct, "v1"), img.digest);
    let inspect = run(
        skopeo(&["inspect", "--tls-verify=false", "--raw", &target]),
        "skopeo inspect",
    );
    assert_eq!(inspect.as_bytes(), img.manifest);
}

/// Over HTTPS (a certificate made now) with htpasswd credentials:
/// skopeo pushes and pulls with `--*-creds` and the CA in `--*-cert-dir`;
/// wrong credentials are refused.
#[test]
fn skopeo_over_tls_with_credentials() {
    let h = Harness::new(open_embedded);
    let work = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let certs = work.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), certified.cert.pem()).unwrap();
    let (cert, key) = (work.path().join("cert.pem"), work.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let htpasswd = work.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("bob:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    let server = Server::start_with(
        h.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--htpasswd",
            htpasswd.to_str().unwrap(),
        ],
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let src = work.path().join("src");
    let img = three_layer_image();
    img.write_layout(&src, "v1");
    let target = format!("docker://{}/secure/demo:v1", host(&server));
    let certs = certs.to_str().unwrap();
    let src = format!("oci:{}:v1", src.display());
    let refused = skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        "bob:wrong",
        &src,
        &target,
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401")
            || String::from_utf8_lossy(&refused.stderr).contains("nauthorized"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    run(
        skopeo(&[
            "copy",
            "--dest-cert-dir",
            certs,
            "--dest-creds",
            "bob:pw",
            &src,
            &target,
        ]),
        "skopeo copy over TLS",
    );
    let out = work.path().join("out");
    run(
        skopeo(&[
            "copy",
            "--src-tls-verify=true",
            "--src-cert-dir",
            certs,
            "--src-creds",
            "bob:pw",
            &target,
            &format!("oci:{}:v1", out.display()),
        ]),
        "skopeo copy from TLS",
    );
    assert_eq!(layout_digest(&out, "v1"), img.digest);
}

/// oras-py pushes an artifact in chunks, attaches a referrer with a
/// subject, lists it through the referrers API and pulls the artifact.
#[test]
fn oras_pushes_attaches_lists_and_pulls() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let work = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/oras_roundtrip.py");
    let out = run(
        Command::new(peer("python"))
            .arg(&script)
            .arg(host(&server))
            .arg(work.path())
            .output()
            .unwrap(),
        "oras_roundtrip.py",
    );
    let seen: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seen["pushed"], 201, "{seen}");
    assert_eq!(seen["attached"], 201, "{seen}");
    assert_eq!(seen["oci_subject"], seen["subject"], "{seen}");
    assert_eq!(seen["referrers_status"], 200, "{seen}");
    let referrers = seen["referrers"]["manifests"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{seen}");
    assert_eq!(seen["pulled"], true, "{seen}");
}

/// containerd (a private daemon) pulls an image from kist and pushes it
/// back under another name with `ctr --plain-http`.
#[test]
fn ctr_pulls_and_pushes() {
    let h = Harness::new(open_embedded);
    let server = Server::start(h.path());
    let work = tempfile::tempdir().unwrap();
    let img = three_layer_image();
    let src = work.path().join("src");
    img.write_layout(&src, "v1");
    let host = host(&server);
    run(
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{host}/lib/ctr:v1"),
        ]),
        "skopeo copy",
    );
    let containerd = Containerd::start();
    let name = format!("{host}/lib/ctr:v1");
    run(
        containerd.ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "native",
            &name,
        ]),
        "ctr images pull",
    );
    let listed = run(containerd.ctr(&["images", "ls", "-q"]), "ctr images ls");
    assert!(listed.contains(&name), "{listed}");
    let check = run(containerd.ctr(&["images", "check"]), "ctr images check");
    assert!(check.contains("complete"), "{check}");
    let pushed = format!("{host}/other/ctr:v2");
    run(
        containerd.ctr(&["images", "tag", &name, &pushed]),
        "ctr images tag",
    );
    run(
        containerd.ctr(&["images", "push", "--plain-http", &pushed]),
        "ctr images push",
    );
    let r = ureq::get(&format!("{}/v2/other/ctr/manifests/v2", server.base))
        .call()
        .unwrap();
    assert_eq!(r.header("docker-content-digest"), Some(img.digest.as_str()));
    drop(containerd);
}
