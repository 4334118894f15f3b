//! Bearer-token authentication of `kist serve`'s registry (the
//! distribution token spec) against a token server the test runs: the
//! challenge, tokens checked for signature, expiry, audience and issuer,
//! the `access` claim enforced per request, and skopeo logging in through
//! the token server.

use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey};
use kist_tests::http::{body, fetch, send};
use kist_tests::registry::{Client, code, image, skopeo_copy};
use kist_tests::token_server::{ISSUER, SERVICE, Signer, TokenServer, claims, now};
use kist_tests::{Harness, Server, open_embedded, peer};
use serde_json::json;

/// An ES256 signer and the PEM certificate of its key.
fn ec_signer() -> (Signer, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["token-issuer".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let signer = Signer {
        key: EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        algorithm: Algorithm::ES256,
    };
    (signer, cert.pem())
}

/// An RS256 signer and its PEM public key, made by openssl.
fn rsa_signer(dir: &std::path::Path) -> (Signer, String) {
    let private = dir.join("rsa.pem");
    let made = Command::new(peer("openssl"))
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .output()
        .expect("running openssl (tests/peers/install.sh installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public = Command::new(peer("openssl"))
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(public.status.success());
    let signer = Signer {
        key: EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap(),
        algorithm: Algorithm::RS256,
    };
    (signer, String::from_utf8(public.stdout).unwrap())
}

/// `kist serve` trusting `keys` for tokens from `tokens`.
fn serve(h: &Harness, tokens: &TokenServer, keys: &str) -> Server {
    serve_with(h, tokens, keys, &[])
}

/// [`serve`] with more flags.
fn serve_with(h: &Harness, tokens: &TokenServer, keys: &str, more: &[&str]) -> Server {
    let file = h.path().parent().unwrap().join("token-keys.pem");
    std::fs::write(&file, keys).unwrap();
    let flags = [
        "--token-realm",
        &tokens.realm,
        "--token-service",
        SERVICE,
        "--token-issuer",
        ISSUER,
        "--token-key",
        file.to_str().unwrap(),
    ];
    Server::start_with(h.path(), &[&flags[..], more].concat())
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn repository(name: &str, actions: &[&str]) -> serde_json::Value {
    json!([{"type": "repository", "name": name, "actions": actions}])
}

/// Proves: without a token, `/v2/` and every endpoint answer 401 with a
/// `Bearer` challenge naming the realm, service and the scope needed; a
/// token signed by either configured key (an ES256 certificate, an RS256
/// public key) is accepted for what its `access` claim grants and nothing
/// else (401 `insufficient_scope` with the scope to ask for); tokens that
/// are expired, not yet valid, for another audience or issuer, signed by
/// another key, or HS256-signed with the public key (algorithm
/// confusion), or unsigned, are 401 `invalid_token`; the catalog shows
/// only what the token may pull.
#[test]
fn tokens_are_checked_and_their_access_enforced() {
    let h = Harness::new(open_embedded);
    let (es, cert) = ec_signer();
    let (rs, rsa_public) = rsa_signer(h.path().parent().unwrap());
    let tokens = TokenServer::start(es.clone());
    let server = serve(&h, &tokens, &format!("{cert}{rsa_public}"));
    let mut c = Client::new(&server);

    let r = c.get("/v2/");
    assert_eq!(r.status(), 401);
    let challenge = r.header("www-authenticate").unwrap().to_owned();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"{}\",service=\"{SERVICE}\"", tokens.realm)
    );
    let r = c.get("/v2/app/manifests/v1");
    assert_eq!(r.status(), 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .ends_with(",scope=\"repository:app:pull\""),
        "{:?}",
        r.header("www-authenticate")
    );

    let img = image(1, 2);
    c.auth = bearer(&es.sign(&claims("pusher", repository("app", &["pull", "push"]))));
    c.push_image("app", "v1", &img);
    c.auth = bearer(&es.sign(&claims("pusher", repository("other", &["*"]))));
    c.push_image("other", "v1", &img);

    c.auth = bearer(&rs.sign(&claims("reader", repository("app", &["pull"]))));
    assert_eq!(c.get("/v2/").status(), 200);
    assert_eq!(c.get("/v2/app/manifests/v1").status(), 200);
    assert_eq!(
        c.get(&format!("/v2/app/blobs/{}", img.layers[0].digest))
            .status(),
        200
    );
    let r = send(c.req("POST", "/v2/app/blobs/uploads/"), b"");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        format!(
            "Bearer realm=\"{}\",service=\"{SERVICE}\",scope=\"repository:app:pull,push\",error=\"insufficient_scope\"",
            tokens.realm
        )
    );
    assert_eq!(code(r), "UNAUTHORIZED");
    let r = c.get("/v2/other/manifests/v1");
    assert_eq!(r.status(), 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    let r = c.get("/v2/_catalog");
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(doc["repositories"], json!(["app"]));

    // Tokens that must not pass, each for what the reader's token grants.
    let good = claims("reader", repository("app", &["pull"]));
    let with = |key: &str, value: serde_json::Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let (stranger, _) = ec_signer();
    let hmac = Signer {
        key: EncodingKey::from_secret(rsa_public.as_bytes()),
        algorithm: Algorithm::HS256,
    };
    let unsigned = {
        use base64::Engine;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&good)
        )
    };
    let bad = [
        ("expired", rs.sign(&with("exp", json!(now() - 3600)))),
        ("not yet valid", rs.sign(&with("nbf", json!(now() + 3600)))),
        (
            "another audience",
            rs.sign(&with("aud", json!("another-registry"))),
        ),
        ("another issuer", rs.sign(&with("iss", json!("mallory")))),
        (
            "no expiry",
            rs.sign(&{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        ("another key", stranger.sign(&good)),
        ("HS256 with the public key", hmac.sign(&good)),
        ("unsigned", unsigned),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (what, token) in bad {
        c.auth = bearer(&token);
        let r = c.get("/v2/app/manifests/v1");
        assert_eq!(r.status(), 401, "{what}");
        let challenge = r.header("www-authenticate").unwrap_or_default().to_owned();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert_eq!(code(r), "UNAUTHORIZED", "{what}");
    }
    assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Proves: skopeo, given only a user and password, gets its tokens from
/// the token server named in the challenge and pushes and pulls through
/// kist; a user whose tokens grant only `pull` cannot push.
#[test]
fn skopeo_logs_in_through_the_token_server() {
    let h = Harness::new(open_embedded);
    let (es, cert) = ec_signer();
    let tokens = TokenServer::start(es);
    let server = serve(&h, &tokens, &cert);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    image(3, 2).write_layout(&src, "v1");
    let host = server.base.trim_start_matches("http://").to_owned();
    let skopeo = |creds: &str, from: &str, to: &str| {
        skopeo_copy(&["--src-creds", creds, "--dest-creds", creds, from, to])
    };
    let source = format!("oci:{}:v1", src.display());
    let target = format!("docker://{host}/team/app:v1");
    let out = skopeo("pusher:pw-pusher", &source, &target);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = format!("oci:{}:v1", work.path().join("back").display());
    let out = skopeo("reader:pw-reader", &target, &back);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skopeo(
        "reader:pw-reader",
        &source,
        &format!("docker://{host}/team/app:v2"),
    );
    assert!(!out.status.success());
    assert!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    let anonymous = Client::new(&server);
    assert_eq!(
        fetch(anonymous.req("GET", "/v2/team/app/manifests/v2")).status(),
        401
    );
}

/// Proves: podman logs in with a user and password (its `/v2/` probe
/// answered with the bearer challenge, the token fetched from the realm)
/// and pulls an image through kist with the token it gets; a wrong
/// password is refused at login.
#[test]
fn podman_logs_in_and_pulls_through_the_token_server() {
    let h = Harness::new(open_embedded);
    let (es, cert) = ec_signer();
    let tokens = TokenServer::start(es.clone());
    let server = serve(&h, &tokens, &cert);
    let mut pusher = Client::new(&server);
    pusher.auth = bearer(&es.sign(&claims("pusher", repository("team/app", &["push", "pull"]))));
    let img = image(4, 2);
    pusher.push_image("team/app", "v1", &img);
    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let host = server.base.trim_start_matches("http://").to_owned();
    let podman = |args: &[&str]| {
        Command::new(peer("podman"))
            .arg("--root")
            .arg(work.path().join("root"))
            .arg("--runroot")
            .arg(work.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", work.path().join("auth.json"))
            .output()
            .expect("running podman")
    };
    let login = |password: &str| {
        podman(&[
            "login",
            "--tls-verify=false",
            "-u",
            "reader",
            "-p",
            password,
            &host,
        ])
    };
    assert!(!login("wrong").status.success());
    let out = login("pw-reader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image_ref = format!("{host}/team/app:v1");
    let policy = policy.to_str().unwrap();
    let out = podman(&[
        "pull",
        "--tls-verify=false",
        "--signature-policy",
        policy,
        &image_ref,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman(&["image", "inspect", "--format", "{{.Digest}}", &image_ref]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), img.digest);
}

/// Proves: with `--access-policy` beside tokens, a token's claims are held
/// to what the policy gives its subject: a token granting `*` on a
/// repository where the policy lets its subject only pull is refused the
/// push (401 `insufficient_scope`) and allowed the pull; an admin's token
/// is held to its claims alone; the catalog lists what both allow.
#[test]
fn a_policy_holds_tokens_to_what_it_gives_their_subject() {
    let h = Harness::new(open_embedded);
    let (es, cert) = ec_signer();
    let tokens = TokenServer::start(es.clone());
    let policy = h.path().parent().unwrap().join("access.toml");
    std::fs::write(
        &policy,
        "admins = [\"root\"]\n\n[repositories.\"**\"]\npolicies = [{ users = [\"alice\"], actions = [\"pull\"] }]\n",
    )
    .unwrap();
    let server = serve_with(
        &h,
        &tokens,
        &cert,
        &["--access-policy", policy.to_str().unwrap()],
    );
    let mut c = Client::new(&server);
    let img = image(3, 2);
    c.auth = bearer(&es.sign(&claims("root", repository("app", &["*"]))));
    c.push_image("app", "v1", &img);

    c.auth = bearer(&es.sign(&claims("alice", repository("app", &["*"]))));
    assert_eq!(c.get("/v2/app/manifests/v1").status(), 200);
    let r = send(c.req("POST", "/v2/app/blobs/uploads/"), b"");
    assert_eq!(r.status(), 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("insufficient_scope")
    );
    let r = send(
        c.req("DELETE", &format!("/v2/app/manifests/{}", img.digest)),
        b"",
    );
    assert_eq!(r.status(), 401);
    let r = c.get("/v2/_catalog");
    let doc: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(doc["repositories"], json!(["app"]));

    // Someone the policy gives nothing: the token alone opens nothing.
    c.auth = bearer(&es.sign(&claims("mallory", repository("app", &["*"]))));
    assert_eq!(c.get("/v2/app/manifests/v1").status(), 401);
    let r = c.get("/v2/_catalog");
    let doc: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(doc["repositories"], json!([]));
}
