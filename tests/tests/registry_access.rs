//! Per-repository access of `kist serve`'s registry: an access policy for
//! htpasswd users, groups and anonymous clients, applied by the store
//! component to every call; the catalog filtered; reloads on SIGHUP.

use kist::{Actions, Grant};
use kist_tests::http::{body, send};
use kist_tests::registry::{Client, Said, basic, code, finish, half_sent_patch, image};
use kist_tests::{Harness, Server, open_embedded};

const POLICY: &str = r#"
admins = ["root"]

[groups]
devs = ["bob"]

[repositories."**"]
authenticated = ["pull"]

[repositories."public/*"]
anonymous = ["pull"]

[[repositories."team/**".policies]]
groups = ["devs"]
actions = ["pull", "push"]

[[repositories."team/**".policies]]
users = ["alice"]
actions = ["pull", "push", "delete"]

[repositories."team/secret"]
policies = [{ users = ["alice"], actions = ["pull"] }]
"#;

/// The users of the tests, each with the password `pw-<user>`.
const USERS: [&str; 4] = ["root", "alice", "bob", "carol"];

/// The catalog as `c` sees it.
fn catalog(c: &Client) -> Vec<String> {
    let r = c.get("/v2/_catalog");
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
    let names = doc["repositories"].as_array().unwrap();
    names
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// Proves: each kind of subject (admin, user, group member, user without
/// a rule, anonymous) may pull, push and delete exactly where the policy
/// says, the longest pattern deciding; refusals are 403 `DENIED` for a
/// user who logged in and 401 with a challenge for an anonymous client;
/// `_catalog` lists only what the caller may pull; a mount from a
/// repository the caller may not pull falls back to an upload; a
/// repository's blob is not served through another it may pull.
#[test]
fn the_policy_decides_per_repository_and_subject() {
    let h = Harness::new(open_embedded);
    let dir = h.path().parent().unwrap();
    let htpasswd = dir.join("htpasswd");
    let entries: String = USERS
        .iter()
        .map(|u| format!("{u}:{}\n", bcrypt::hash(format!("pw-{u}"), 4).unwrap()))
        .collect();
    std::fs::write(&htpasswd, entries).unwrap();
    let policy = dir.join("access.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let server = Server::start_with(
        h.path(),
        &[
            "--htpasswd",
            htpasswd.to_str().unwrap(),
            "--access-policy",
            policy.to_str().unwrap(),
        ],
    );
    let as_user = |user: &str| Client {
        server: &server,
        auth: Some(basic(user, &format!("pw-{user}"))),
    };
    let root = as_user("root");
    let img = image(1, 2);
    let secret = image(2, 1);
    for repo in ["public/app", "team/app", "other/app"] {
        root.push_image(repo, "v1", &img);
    }
    root.push_image("team/secret", "v1", &secret);

    // What each may do: (user, repository, pull, push, delete).
    let anonymous = Client::new(&server);
    let alice = as_user("alice");
    let bob = as_user("bob");
    let carol = as_user("carol");
    let cases: [(&Client, &str, [bool; 3]); 12] = [
        (&anonymous, "public/app", [true, false, false]),
        (&anonymous, "team/app", [false, false, false]),
        (&anonymous, "other/app", [false, false, false]),
        (&alice, "team/app", [true, true, true]),
        (&alice, "team/secret", [true, false, false]),
        (&alice, "other/app", [true, false, false]),
        (&bob, "team/app", [true, true, false]),
        (&bob, "team/secret", [false, false, false]),
        (&bob, "public/app", [true, false, false]),
        // team/** is the longest match and gives carol nothing: ** does
        // not add its pull back.
        (&carol, "team/app", [false, false, false]),
        (&carol, "team/secret", [false, false, false]),
        (&root, "team/secret", [true, true, true]),
    ];
    for (i, (c, repo, [pull, push, delete])) in cases.into_iter().enumerate() {
        let who = format!("case {i}: {:?} in {repo}", c.auth);
        let refusal = if c.auth.is_some() { 403 } else { 401 };
        let expect = |allowed: bool, ok: u16| if allowed { ok } else { refusal };
        let layer = &img.layers[0].digest;
        let r = c.get(&format!("/v2/{repo}/manifests/v1"));
        assert_eq!(r.status(), expect(pull, 200), "{who}: pull");
        if !pull {
            let challenge = r.header("www-authenticate").map(str::to_owned);
            assert_eq!(
                code(r),
                if c.auth.is_some() {
                    "DENIED"
                } else {
                    "UNAUTHORIZED"
                }
            );
            assert_eq!(challenge.is_some(), c.auth.is_none(), "{who}");
        }
        if repo != "team/secret" {
            let r = c.get(&format!("/v2/{repo}/blobs/{layer}"));
            assert_eq!(r.status(), expect(pull, 200), "{who}: blob");
            let r = c.get(&format!("/v2/{repo}/tags/list"));
            assert_eq!(r.status(), expect(pull, 200), "{who}: tags");
        }
        let pushed = format!("pushed by case {i}");
        let r = send(
            c.req(
                "POST",
                &format!(
                    "/v2/{repo}/blobs/uploads/?digest={}",
                    kist_tests::sha256(pushed.as_bytes())
                ),
            ),
            pushed.as_bytes(),
        );
        assert_eq!(r.status(), expect(push, 201), "{who}: push");
        let tag = format!("t{i}");
        if push {
            let manifest = if repo == "team/secret" { &secret } else { &img };
            let r = c.put_manifest(repo, &tag, &manifest.manifest);
            assert_eq!(r.status(), 201, "{who}: tag");
        } else {
            root.put_manifest(
                repo,
                &tag,
                &if repo == "team/secret" { &secret } else { &img }.manifest,
            );
        }
        let r = kist_tests::http::fetch(c.req("DELETE", &format!("/v2/{repo}/manifests/{tag}")));
        assert_eq!(r.status(), expect(delete, 202), "{who}: delete");
    }

    assert_eq!(catalog(&anonymous), ["public/app"]);
    assert_eq!(catalog(&bob), ["other/app", "public/app", "team/app"]);
    assert_eq!(
        catalog(&alice),
        ["other/app", "public/app", "team/app", "team/secret"]
    );

    // Bob mounts team/secret's layer into team/app: he may not pull from
    // team/secret, so no mount: an upload starts instead (202), and the
    // layer is not served to him through team/app.
    let hidden = &secret.layers[0].digest;
    let mount = |c: &Client| {
        let path = format!("/v2/team/app/blobs/uploads/?mount={hidden}&from=team/secret");
        send(c.req("POST", &path), b"").status()
    };
    assert_eq!(mount(&bob), 202);
    let served = |repo: &str| bob.get(&format!("/v2/{repo}/blobs/{hidden}")).status();
    assert_eq!(served("team/app"), 404);
    assert_eq!(served("team/secret"), 403);
    // Alice may pull from both: her mount happens.
    assert_eq!(mount(&alice), 201);
}

/// Proves: SIGHUP reads the policy again without dropping a connection:
/// a push let in before it finishes; the next one is judged by the new
/// policy; a policy that does not check (an unknown group) is refused at
/// start and on reload, and the one before stays.
#[test]
fn the_policy_reloads_on_sighup() {
    let h = Harness::new(open_embedded);
    let dir = h.path().parent().unwrap();
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash("pw-bob", 4).unwrap();
    std::fs::write(&htpasswd, format!("bob:{hash}\n")).unwrap();
    let policy = dir.join("access.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[repositories.\"**\".policies]]\ngroups = [\"nobody\"]\nactions = [\"pull\"]\n",
    )
    .unwrap();
    let refused = std::process::Command::new(kist_tests::kist_bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--access-policy"])
        .arg(&bad)
        .arg("--store")
        .arg(h.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("\"nobody\""), "{stderr}");

    let (htpasswd, policy_path) = (htpasswd.to_str().unwrap(), policy.to_str().unwrap());
    let mut server = Server::start_with(
        h.path(),
        &["--htpasswd", htpasswd, "--access-policy", policy_path],
    );
    let said = Said::from(&mut server);
    let bob = Client {
        server: &server,
        auth: Some(basic("bob", "pw-bob")),
    };
    let upload = bob.start("team/app");
    let in_flight = half_sent_patch(&server, &upload, &basic("bob", "pw-bob"));
    std::fs::write(
        &policy,
        POLICY.replace(
            "groups = [\"devs\"]\nactions = [\"pull\", \"push\"]",
            "groups = [\"devs\"]\nactions = [\"pull\"]",
        ),
    )
    .unwrap();
    said.hangup(&server, "read the htpasswd and policy files again");
    let answer = finish(in_flight);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let r = send(bob.req("POST", "/v2/team/app/blobs/uploads/"), b"");
    assert_eq!(r.status(), 403);
    std::fs::copy(&bad, &policy).unwrap();
    said.hangup(&server, "that file stays as it was");
    assert_eq!(
        send(bob.req("POST", "/v2/team/app/blobs/uploads/"), b"").status(),
        403
    );
    assert_eq!(bob.get("/v2/team/app/tags/list").status(), 200);
}

/// Proves: the component, not the front end, holds a registry client to
/// its grants: a [`kist::Store::granted`] handle called directly (as an
/// adapter that forgot every check would) is refused what its grants do
/// not allow, does not see blobs of repositories it may not pull, and
/// may not store anything of its own; granted again, it is held to both
/// grants.
#[test]
fn grants_hold_whatever_the_front_end() {
    let h = Harness::new(open_embedded);
    let store = h.store();
    let registry = store.registry();
    let open = b"open layer".to_vec();
    let closed = b"closed layer".to_vec();
    let pushed = |repo: &str, bytes: &[u8]| {
        let d = kist_tests::sha256(bytes);
        let mut w = registry
            .open_upload(repo, &format!("u{}", bytes.len()), true)
            .unwrap();
        w.write_all(bytes).unwrap();
        w.commit(Some(bytes.len() as u64), Some(&d), &[]).unwrap();
        d
    };
    let open_d = pushed("library/app", &open);
    let closed_d = pushed("private/app", &closed);
    let client = store.granted(vec![Grant {
        pattern: "library/*".to_owned(),
        actions: Actions::PULL,
    }]);
    let as_client = client.registry();
    assert_eq!(
        as_client.stat_blob("library/app", &open_d).unwrap(),
        open.len() as u64
    );
    assert!(matches!(
        as_client.stat_blob("private/app", &closed_d),
        Err(kist::Error::Denied(_))
    ));
    assert!(matches!(
        as_client.open_upload("library/app", "x1", true),
        Err(kist::Error::Denied(_))
    ));
    assert!(matches!(
        as_client.delete_blob("library/app", &open_d),
        Err(kist::Error::Denied(_))
    ));
    // A puller can neither store a mirror's manifest nor keep one longer.
    assert!(matches!(
        as_client.cache_manifest(
            "library/app",
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            b"{}",
            &[],
            std::time::Duration::from_secs(u64::MAX / 2),
        ),
        Err(kist::Error::Denied(_))
    ));
    assert!(matches!(
        as_client.keep_manifest(
            "library/app",
            &open_d,
            std::time::Duration::from_secs(3_600)
        ),
        Err(kist::Error::Denied(_))
    ));
    assert_eq!(client.get(&open_d).unwrap(), open);
    assert!(matches!(client.get(&closed_d), Err(kist::Error::NotFound)));
    assert!(matches!(client.put(b"mine"), Err(kist::Error::Denied(_))));
    assert!(matches!(
        client.retention().settings(),
        Err(kist::Error::Denied(_))
    ));
    let page = as_client.repositories(None, None).unwrap();
    assert_eq!(page.names, ["library/app"]);

    // Granted again, a handle narrows: both grants must allow.
    let narrowed = client.granted(vec![Grant {
        pattern: "**".to_owned(),
        actions: Actions::all(),
    }]);
    assert!(matches!(
        narrowed.registry().open_upload("library/app", "x2", true),
        Err(kist::Error::Denied(_))
    ));
    let nothing = client.granted(vec![Grant {
        pattern: "private/**".to_owned(),
        actions: Actions::all(),
    }]);
    assert!(matches!(
        nothing.registry().stat_blob("library/app", &open_d),
        Err(kist::Error::Denied(_))
    ));
    assert!(
        nothing
            .registry()
            .repositories(None, None)
            .unwrap()
            .names
            .is_empty()
    );
}
