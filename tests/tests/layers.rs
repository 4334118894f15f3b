//! Desired-state layers (AosEdge's layer manager) through the real
//! component and host, downloading from a loopback HTTP server that counts
//! and logs requests: transitions over several calls (install, cache,
//! restore, TTL from caching time on a test clock, quota eviction oldest
//! first), bad sources failing alone, kill -9 mid-download and mid-unpack
//! with a `Range` resume, and two `kist layer apply` processes at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kist::{
    Error, FetchPolicy, LayerAction, LayerDesc, LayerError, LayerResult, LayerState, Store,
};
use kist_tests::layer_server::{Behaviour, LayerServer};
use kist_tests::trees::require_root;
use kist_tests::{FakeClock, bytes, digests, fsck, kist_bin, sha256, tar_header};

/// A tar+gzip layer with these files (`etc/`, then each file).
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar_header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut dir, "etc", std::io::empty()).unwrap();
    for (path, data) in files {
        let mut h = tar_header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut h, path, *data).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

/// A layer of one file `etc/<name>` holding `len` incompressible bytes.
fn sized_layer(name: &str, len: usize, seed: u64) -> Vec<u8> {
    layer(&[(&format!("etc/{name}"), &bytes(len, seed))])
}

fn desc(blob: &[u8], urls: &[String], id: &str) -> LayerDesc {
    LayerDesc {
        digest: sha256(blob),
        size: blob.len() as u64,
        urls: urls.to_vec(),
        id: id.to_owned(),
        version: "1.0".into(),
        os_version: "bookworm".into(),
        annotations: vec![("service".into(), id.to_owned())],
    }
}

/// Serves `blob` at `<name>` and describes it.
fn served(server: &LayerServer, name: &str, blob: Vec<u8>, behaviour: Behaviour) -> LayerDesc {
    let d = desc(&blob, &[server.url(name)], name);
    server.put(name, blob, behaviour);
    d
}

/// Serves a layer of the one file `etc/<name>` at `<name>`.
fn plain(server: &LayerServer, name: &str, content: &[u8]) -> LayerDesc {
    let path = format!("etc/{name}");
    served(server, name, layer(&[(&path, content)]), Behaviour::Normal)
}

fn open(dir: &Path, clock: &FakeClock, server: &LayerServer) -> Store {
    let policy = FetchPolicy::default().allow(&server.origin()).unwrap();
    clock.builder(dir).fetch_policy(policy).open().unwrap()
}

fn apply(store: &Store, desired: &[&LayerDesc], ttl: u64, lend: &[&Path]) -> Vec<LayerResult> {
    let desired: Vec<LayerDesc> = desired.iter().map(|d| (*d).clone()).collect();
    let options = kist::LayerOptions {
        cache_ttl_seconds: Some(ttl),
        max_unpacked: None,
        wait_ms: 10_000,
    };
    store
        .layers()
        .process_desired(&desired, &options, lend, |_| {})
        .expect("a run")
}

/// The outcome for `d` in `results` (exactly one).
fn outcome<'a>(results: &'a [LayerResult], d: &LayerDesc) -> &'a Result<LayerAction, LayerError> {
    let mine: Vec<_> = results.iter().filter(|r| r.digest == d.digest).collect();
    assert_eq!(mine.len(), 1, "one result for {}: {results:?}", d.id);
    &mine[0].outcome
}

fn action(results: &[LayerResult], d: &LayerDesc) -> LayerAction {
    match outcome(results, d) {
        Ok(a) => *a,
        Err(e) => panic!("{}: {e:?}", d.id),
    }
}

fn assert_clean(store: &Store) {
    let problems = fsck(store, false);
    assert!(problems.is_empty(), "fsck: {problems:?}");
}

fn state(store: &Store, d: &LayerDesc) -> Option<LayerState> {
    match store.layers().info(&d.digest) {
        Ok(info) => Some(info.state),
        Err(Error::NotFound) => None,
        Err(e) => panic!("info {}: {e}", d.id),
    }
}

#[test]
fn desired_sets_install_cache_restore_and_expire_from_caching_time() {
    require_root();
    let server = LayerServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let store = open(dir.path(), &clock, &server);
    let a = plain(&server, "a", b"alpha\n");
    let b = plain(&server, "b", b"beta\n");
    let c = plain(&server, "c", b"gamma\n");
    const TTL: u64 = 100;

    let r = apply(&store, &[&a, &b], TTL, &[]);
    assert_eq!(
        (action(&r, &a), action(&r, &b)),
        (LayerAction::Installed, LayerAction::Installed)
    );
    assert_eq!(r.len(), 2, "{r:?}");
    let info = store.layers().info(&a.digest).unwrap();
    assert_eq!(
        std::fs::read(Path::new(&info.path).join("etc/a")).unwrap(),
        b"alpha\n"
    );
    assert_eq!(
        (info.desc.id.as_str(), info.desc.os_version.as_str()),
        ("a", "bookworm")
    );
    assert!(info.diff_id.starts_with("sha256:") && info.size > 0 && info.expires.is_none());
    // The tree is the layer: the blob is released by `layers` once unpacked.
    assert_eq!(digests(&store, &[]), Vec::<String>::new());

    // Installed long ago, cached now: the TTL counts from now.
    clock.advance(Duration::from_secs(1000));
    let r = apply(&store, &[&b, &c], TTL, &[]);
    assert_eq!(action(&r, &b), LayerAction::Unchanged);
    assert_eq!(action(&r, &c), LayerAction::Installed);
    assert_eq!(action(&r, &a), LayerAction::Cached);
    let cached = store.layers().info(&a.digest).unwrap();
    assert_eq!(cached.state, LayerState::Cached);
    assert_eq!(cached.expires.unwrap().seconds, cached.since.seconds + TTL);
    assert_eq!(
        store.layers().list(&["state==cached"]).unwrap().len(),
        1,
        "filters see the state"
    );

    // Desired again: restored, not downloaded.
    clock.advance(Duration::from_secs(10));
    let r = apply(&store, &[&a, &c], TTL, &[]);
    assert_eq!(action(&r, &a), LayerAction::Restored);
    assert_eq!(action(&r, &b), LayerAction::Cached);
    assert_eq!(server.requests("a").len(), 1, "a restore downloads nothing");
    assert_eq!(state(&store, &a), Some(LayerState::Installed));

    // b was cached 10 s ago by the test clock: 50 s more keeps it ...
    clock.advance(Duration::from_secs(50));
    let r = apply(&store, &[&a, &c], TTL, &[]);
    assert_eq!(r.len(), 2, "nothing else changed: {r:?}");
    assert_eq!(state(&store, &b), Some(LayerState::Cached));
    // ... and past its TTL it goes, tree and all.
    let tree = store.layers().info(&b.digest).unwrap().path;
    clock.advance(Duration::from_secs(60));
    let r = apply(&store, &[&a, &c], TTL, &[]);
    assert_eq!(action(&r, &b), LayerAction::Removed);
    assert_eq!(state(&store, &b), None);
    assert!(!Path::new(&tree).exists(), "{tree} removed");

    // Desired once more after it went: installed from its blob, which the
    // store still caches (released, not yet collected) ...
    let r = apply(&store, &[&a, &c, &b], TTL, &[]);
    assert_eq!(action(&r, &b), LayerAction::Installed);
    assert_eq!(server.requests("b").len(), 1, "the cached blob is used");
    // ... and once a collection took the blob, downloaded again.
    clock.advance(Duration::from_secs(10));
    apply(&store, &[&a, &c], TTL, &[]);
    clock.advance(Duration::from_secs(TTL + 1));
    apply(&store, &[&a, &c], TTL, &[]);
    assert!(kist_tests::collect(&store) > 0);
    let r = apply(&store, &[&a, &b, &c], TTL, &[]);
    assert_eq!(action(&r, &b), LayerAction::Installed);
    assert_eq!(
        [&a, &b, &c].map(|d| server.requests(&d.id).len()),
        [1, 2, 1],
        "downloads per layer"
    );
    assert_clean(&store);
}

#[test]
fn a_quota_evicts_cached_layers_oldest_first_then_refuses() {
    require_root();
    let server = LayerServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let store = open(dir.path(), &clock, &server);
    const MIB: usize = 1 << 20;
    // Each layer: a 1 MiB blob that unpacks to a 1 MiB tree; both count.
    let l: Vec<LayerDesc> = (1..=4)
        .map(|i| {
            served(
                &server,
                &format!("l{i}"),
                sized_layer("data", MIB, i),
                Behaviour::Normal,
            )
        })
        .collect();
    let big = served(
        &server,
        "big",
        sized_layer("data", 3 * MIB, 9),
        Behaviour::Normal,
    );
    store
        .retention()
        .set_quota(Some("layers"), kist::Limit::Bytes(9 * MIB as u64 / 2))
        .unwrap();
    let step = |desired: &[&LayerDesc]| {
        clock.advance(Duration::from_secs(10));
        apply(&store, desired, 86_400, &[])
    };

    let r = step(&[&l[0], &l[1]]);
    assert!(
        r.iter()
            .all(|r| matches!(r.outcome, Ok(LayerAction::Installed))),
        "{r:?}"
    );
    step(&[&l[1]]); // l1 cached first
    let r = step(&[&l[2]]); // then l2; l3 fits beside both trees
    assert_eq!(action(&r, &l[2]), LayerAction::Installed);
    assert_eq!(state(&store, &l[0]), Some(LayerState::Cached));
    let r = step(&[&l[3]]); // l3 cached; l4 needs room: the oldest cached goes
    assert_eq!(action(&r, &l[3]), LayerAction::Installed);
    assert_eq!(action(&r, &l[0]), LayerAction::Removed, "{r:?}");
    assert_eq!(
        state(&store, &l[1]),
        Some(LayerState::Cached),
        "l2 was cached later: kept"
    );
    assert_eq!(state(&store, &l[2]), Some(LayerState::Cached));

    // A layer that cannot fit even with every cached layer gone.
    let r = step(&[&l[3], &big]);
    match outcome(&r, &big) {
        Err(LayerError::Store(kist::StoreError::NoSpace(m))) => {
            assert!(m.contains("layers"), "the message names the quota: {m}")
        }
        other => panic!("big: {other:?}"),
    }
    assert_eq!(action(&r, &l[3]), LayerAction::Unchanged);
    assert_eq!(state(&store, &big), None, "nothing of it installed");
    let l4 = store.layers().info(&l[3].digest).unwrap();
    assert_eq!(
        std::fs::read(Path::new(&l4.path).join("etc/data")).unwrap(),
        bytes(MIB, 4)
    );
    assert_clean(&store);
}

#[test]
fn bad_sources_fail_alone_and_leave_nothing_installed() {
    require_root();
    let server = LayerServer::start();
    let elsewhere = LayerServer::start(); // a live server that is not allowed
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let lent = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &FakeClock::new(), &server);

    let good = plain(&server, "good", b"ok\n");
    let corrupt = served(
        &server,
        "corrupt",
        sized_layer("x", 100_000, 1),
        Behaviour::Corrupt,
    );
    let short = served(
        &server,
        "short",
        sized_layer("x", 100_000, 2),
        Behaviour::LieLength,
    );
    let mut too_big = served(
        &server,
        "too-big",
        sized_layer("x", 1000, 3),
        Behaviour::Normal,
    );
    too_big.size -= 10; // the server sends more than described
    let mut too_small = served(
        &server,
        "too-small",
        sized_layer("x", 1000, 4),
        Behaviour::Normal,
    );
    too_small.size += 10; // the server's data ends early
    let hostile_blob = kist_tests::tar_gz(&[kist_tests::Entry::File("../../escaped", b"x")]);
    let hostile = served(&server, "hostile", hostile_blob, Behaviour::Normal);
    let foreign_blob = layer(&[("etc/foreign", b"f\n")]);
    elsewhere.put("foreign", foreign_blob.clone(), Behaviour::Normal);
    let not_allowed = desc(&foreign_blob, &[elsewhere.url("foreign")], "not-allowed");
    let secret = layer(&[("etc/secret", b"s\n")]);
    std::fs::write(outside.path().join("secret.tar.gz"), &secret).unwrap();
    let outside_url = format!("file://{}/secret.tar.gz", outside.path().display());
    let escape_url = format!(
        "file://{}/../{}/secret.tar.gz",
        lent.path().display(),
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    let unlent = desc(&secret, &[outside_url, escape_url], "unlent");
    let local_blob = layer(&[("etc/local", b"l\n")]);
    std::fs::write(lent.path().join("local.tar.gz"), &local_blob).unwrap();
    let local = desc(
        &local_blob,
        &[format!("file://{}/local.tar.gz", lent.path().display())],
        "local",
    );
    let missing = desc(b"never served", &[server.url("nothing-here")], "missing");
    let mut fallback = plain(&server, "fallback", b"second url\n");
    fallback.urls.insert(0, server.url("also-nothing"));
    let mut malformed = good.clone();
    malformed.digest = "sha256:nothex".into();

    let all = [
        &good,
        &corrupt,
        &short,
        &too_big,
        &too_small,
        &hostile,
        &not_allowed,
        &unlent,
        &local,
        &malformed,
        &missing,
        &fallback,
    ];
    let r = apply(&store, &all, 100, &[lent.path()]);
    assert_eq!(action(&r, &good), LayerAction::Installed);
    assert_eq!(
        action(&r, &fallback),
        LayerAction::Installed,
        "the second URL serves it"
    );
    assert_eq!(
        action(&r, &local),
        LayerAction::Installed,
        "file:// under a lent directory works"
    );
    let failed = |d: &LayerDesc| match outcome(&r, d) {
        Err(e) => format!("{e:?}"),
        Ok(a) => panic!("{} should fail, got {a:?}", d.id),
    };
    let expect = [
        (&corrupt, "Integrity", "digest mismatch"),
        (&short, "Download", "before all bytes"),
        (&too_big, "Integrity", "more than"),
        (&too_small, "Download", "ended at byte"),
        (&hostile, "Store", ".."),
        (&not_allowed, "Download", "not allowed"),
        (&unlent, "Download", "not under a directory the host lends"),
        (&malformed, "Invalid", "digest"),
        (&missing, "Download", "HTTP status 404"),
    ];
    for (d, kind, words) in expect {
        let e = failed(d);
        assert!(
            e.contains(&format!("::{kind}(")) && e.contains(words),
            "{}: {e}",
            d.id
        );
    }
    assert!(
        failed(&unlent).contains("`..`"),
        "a `..` path is refused too: {}",
        failed(&unlent)
    );
    assert!(
        elsewhere.log().is_empty(),
        "nothing connected to a refused origin"
    );
    assert!(!dir.path().parent().unwrap().join("escaped").exists());
    let installed: Vec<String> = store
        .layers()
        .list(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.desc.id)
        .collect();
    assert_eq!(
        installed,
        sorted(&[&good, &local, &fallback]),
        "only the good layers are stored"
    );
    // Wrong bytes are dropped; a cut download stays to be resumed.
    let ingests: Vec<String> = store
        .list_statuses(&[])
        .unwrap()
        .into_iter()
        .map(|s| s.ref_)
        .collect();
    let mut cut: Vec<String> = [&short, &too_small]
        .iter()
        .map(|d| format!("layers/{}", d.digest))
        .collect();
    cut.sort();
    let named: Vec<(&str, &str)> = all
        .iter()
        .map(|d| (d.id.as_str(), d.digest.as_str()))
        .collect();
    assert_eq!(ingests, cut, "{named:?}");
    assert_clean(&store);

    // The short one's server mends its ways: the next run resumes it.
    server.set("short", Behaviour::Normal);
    let r = apply(&store, &[&good, &short], 100, &[]);
    assert_eq!(action(&r, &short), LayerAction::Installed);
    let last = server.requests("short").pop().unwrap();
    let half = format!("bytes={}-", short.size / 2);
    assert_eq!(last.range, Some(half), "resumed at the cut");
}

#[test]
fn records_and_snapshots_are_reconciled_at_the_next_run() {
    require_root();
    let server = LayerServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &FakeClock::new(), &server);
    let [a, b, c] = ["a", "b", "c"].map(|n| plain(&server, n, n.as_bytes()));
    apply(&store, &[&a, &b, &c], 100, &[]);
    // a loses its snapshot; b and c lose their records (what a crash
    // between the two writes, or a hand, could leave).
    store
        .snapshots()
        .remove(&format!("layers/{}", a.digest))
        .unwrap();
    let file = dir.path().join("layers/layers.json");
    let mut records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    for d in [&b, &c] {
        records["items"].as_object_mut().unwrap().remove(&d.digest);
    }
    std::fs::write(&file, serde_json::to_vec(&records).unwrap()).unwrap();

    let r = apply(&store, &[&b], 100, &[]);
    assert_eq!(
        action(&r, &b),
        LayerAction::Installed,
        "b's snapshot adopted"
    );
    assert_eq!(action(&r, &a), LayerAction::Removed, "a's record dropped");
    assert_eq!(
        action(&r, &c),
        LayerAction::Removed,
        "c's snapshot released"
    );
    assert_eq!(server.requests("b").len(), 1, "adopting downloads nothing");
    let listed: Vec<String> = store
        .layers()
        .list(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.desc.id)
        .collect();
    assert_eq!(listed, vec!["b".to_owned()]);
    let snapshots: Vec<String> = store
        .snapshots()
        .walk(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(snapshots, vec![format!("layers/{}", b.digest)]);
    assert_clean(&store);
}

/// The ids of `descs`, sorted by digest (as `list` sorts).
fn sorted(descs: &[&LayerDesc]) -> Vec<String> {
    let mut d: Vec<&&LayerDesc> = descs.iter().collect();
    d.sort_by(|a, b| a.digest.cmp(&b.digest));
    d.into_iter().map(|d| d.id.clone()).collect()
}

/// `kist --store STORE layer apply DESIRED --allow-origin ORIGIN ARGS`.
fn cli_apply(store: &Path, desired: &[&LayerDesc], origin: &str, args: &[&str]) -> Command {
    let list: Vec<serde_json::Value> = desired
        .iter()
        .map(|d| serde_json::json!({ "digest": d.digest, "size": d.size, "urls": d.urls, "id": d.id }))
        .collect();
    let file = store.with_extension(format!("desired-{}.json", desired.len()));
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let mut cmd = Command::new(kist_bin());
    cmd.arg("--store")
        .arg(store)
        .args(["--format", "json", "layer", "apply"])
        .arg(&file)
        .args(["--allow-origin", origin])
        .args(args);
    cmd
}

/// `cli_apply` started in the background, its output discarded.
fn spawn_apply(store: &Path, desired: &[&LayerDesc], origin: &str) -> Child {
    cli_apply(store, desired, origin, &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILLs `child` (by its PID) once `ready` holds; false if it exited
/// first.
fn kill_when(child: &mut Child, ready: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the condition never held");
}

/// A server, and a store path in a temp dir for `kist` processes.
fn cli_scene() -> (LayerServer, tempfile::TempDir, std::path::PathBuf) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    (LayerServer::start(), dir, root)
}

fn results_of(out: &std::process::Output) -> Vec<serde_json::Value> {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn killed_downloads_resume_with_a_range_and_killed_unpacks_start_over() {
    let (server, _dir, root) = cli_scene();
    // 8 MiB trickled at 2 MiB/s: the kill lands mid-download.
    let big = served(
        &server,
        "big",
        sized_layer("big", 8 << 20, 7),
        Behaviour::Trickle(2 << 20),
    );
    let mut child = spawn_apply(&root, &[&big], &server.origin());
    let store = Store::open(&root).unwrap();
    let r = format!("layers/{}", big.digest);
    let offset = || store.status(&r).map(|s| s.offset).unwrap_or(0);
    assert!(
        kill_when(&mut child, || offset() > 1 << 20),
        "killed mid-download"
    );
    let cut = offset();
    assert!(cut < big.size, "{cut} of {}", big.size);
    server.set("big", Behaviour::Normal);
    let out = cli_apply(&root, &[&big], &server.origin(), &[])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(results_of(&out)[0]["action"], "installed");
    let ranges: Vec<Option<String>> = server
        .requests("big")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    let resumed_at: u64 = ranges[1]
        .as_deref()
        .unwrap()
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        resumed_at > 0 && resumed_at <= cut,
        "resumed at {resumed_at}, cut at {cut}"
    );

    // Many files: the kill lands while they are unpacked.
    let names: Vec<String> = (0..4000).map(|i| format!("etc/f{i}")).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), &b"0123456789"[..]))
        .collect();
    let many = served(&server, "many", layer(&files), Behaviour::Normal);
    let extract = format!("layers/{}/extract", many.digest);
    let snapshots = store.snapshots();
    let mut landed = false;
    for _ in 0..5 {
        let mut child = spawn_apply(&root, &[&big, &many], &server.origin());
        if kill_when(&mut child, || snapshots.stat(&extract).is_ok()) {
            landed = true;
            break;
        }
        // It finished first: start over without it.
        let out = cli_apply(&root, &[&big], &server.origin(), &[])
            .output()
            .unwrap();
        assert!(out.status.success());
        let out = Command::new(kist_bin())
            .arg("--store")
            .arg(&root)
            .args(["gc"])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    assert!(landed, "no kill landed during an unpack in 5 tries");
    let out = cli_apply(&root, &[&big, &many], &server.origin(), &[])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = results_of(&out);
    assert_eq!(
        (results[0]["action"].as_str(), results[1]["action"].as_str()),
        (Some("unchanged"), Some("installed"))
    );
    let info = store.layers().info(&many.digest).unwrap();
    assert_eq!(
        std::fs::read_dir(Path::new(&info.path).join("etc"))
            .unwrap()
            .count(),
        4000
    );
    assert!(
        snapshots.stat(&extract).is_err(),
        "the half-unpacked snapshot is gone"
    );
    assert_clean(&store);
}

#[test]
fn two_layer_apply_processes_take_turns() {
    let (server, _dir, root) = cli_scene();
    let slow = served(
        &server,
        "slow",
        sized_layer("s", 3 << 20, 5),
        Behaviour::Trickle(1 << 20),
    );
    let store_probe = || {
        Store::open(&root)
            .unwrap()
            .status(&format!("layers/{}", slow.digest))
            .is_ok()
    };
    let mut first = cli_apply(&root, &[&slow], &server.origin(), &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !store_probe() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Not waiting: refused at once while the first runs.
    let busy = cli_apply(&root, &[&slow], &server.origin(), &["--wait", "0"])
        .output()
        .unwrap();
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("unavailable"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    // Waiting: runs after the first, and finds the layer installed.
    let second = cli_apply(&root, &[&slow], &server.origin(), &[])
        .output()
        .unwrap();
    let first_out = {
        let mut out = String::new();
        std::io::Read::read_to_string(first.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(first.wait().unwrap().success());
        out
    };
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let first_results: Vec<serde_json::Value> = serde_json::from_str(&first_out).unwrap();
    assert_eq!(first_results[0]["action"], "installed");
    assert_eq!(results_of(&second)[0]["action"], "unchanged");
    assert_eq!(server.requests("slow").len(), 1, "downloaded once");
    let info = Command::new(kist_bin())
        .arg("--store")
        .arg(&root)
        .args(["--format", "json", "layer", "info", &slow.digest])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        (info[0]["state"].as_str(), info[0]["id"].as_str()),
        (Some("installed"), Some("slow"))
    );
    let listed = Command::new(kist_bin())
        .arg("--store")
        .arg(&root)
        .args(["layer", "ls", "id==slow"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&slow.digest));
    assert_clean(&Store::open(&root).unwrap());
}

/// The layer manager owns its snapshots by holder, never by name (issue
/// 27, item 1): another holder's snapshot under `layers/` (a user's work,
/// a containerd namespace called `layers`) survives every run, files and
/// all, and a layer whose snapshot name another holder took fails alone.
#[test]
fn layer_runs_leave_other_holders_snapshots_alone() {
    require_root();
    let server = LayerServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &FakeClock::new(), &server);
    let [a, b] = ["a", "b"].map(|n| plain(&server, n, n.as_bytes()));
    let admin = store.snapshots();
    let mounts = admin.prepare("layers/my-work", None, &[]).unwrap();
    let work = Path::new(&mounts[0].source).join("notes.txt");
    std::fs::write(&work, "mine").unwrap();
    let containerd = store.confined_to("containerd").snapshots();
    containerd
        .prepare("layers/1/sha256:0123", None, &[])
        .unwrap();
    let taken = format!("layers/{}", a.digest);
    admin.prepare(&taken, None, &[]).unwrap();

    let r = apply(&store, &[&a, &b], 100, &[]);
    assert!(
        matches!(outcome(&r, &a), Err(LayerError::Store(_))),
        "{r:?}"
    );
    assert_eq!(action(&r, &b), LayerAction::Installed);
    let r = apply(&store, &[], 100, &[]);
    assert_eq!(action(&r, &b), LayerAction::Cached);
    assert_eq!(r.len(), 1, "{r:?}");
    let names: Vec<String> = admin
        .walk(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    let mut expected = vec![
        "layers/1/sha256:0123".to_owned(),
        format!("layers/{}", b.digest),
        "layers/my-work".to_owned(),
        taken,
    ];
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(std::fs::read_to_string(&work).unwrap(), "mine");
}

/// A snapshot someone made on top of a cached layer keeps that layer past
/// its TTL, and every other layer of later runs proceeds (issue 27, item
/// 10: the whole run failed, "is the parent of other snapshots"); once the
/// child is gone the layer expires.
#[test]
fn a_cached_layer_with_children_stays_and_other_layers_proceed() {
    require_root();
    let server = LayerServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new();
    let store = open(dir.path(), &clock, &server);
    let [a, b] = ["a", "b"].map(|n| plain(&server, n, n.as_bytes()));
    apply(&store, &[&a], 100, &[]);
    apply(&store, &[], 100, &[]);
    assert_eq!(state(&store, &a), Some(LayerState::Cached));
    let admin = store.snapshots();
    admin
        .prepare("on-top", Some(&format!("layers/{}", a.digest)), &[])
        .unwrap();
    clock.advance(Duration::from_secs(200));
    let r = apply(&store, &[&b], 100, &[]);
    assert_eq!(action(&r, &b), LayerAction::Installed);
    assert_eq!(
        state(&store, &a),
        Some(LayerState::Cached),
        "kept by its child"
    );
    admin.remove("on-top").unwrap();
    let r = apply(&store, &[&b], 100, &[]);
    assert_eq!(action(&r, &a), LayerAction::Removed);
    assert_eq!(state(&store, &a), None);
    assert_clean(&store);
}

/// A layer is charged to the `layers` quota while it unpacks, not after:
/// a gzip bomb (200 MiB of zeros in a blob of about 2 MiB) under a
/// 50 MiB quota stops within the quota and fails alone with `no-space`
/// (issue 27, item 9: the store grew to 979 MiB before it was refused).
#[test]
fn layers_are_charged_while_they_unpack() {
    require_root();
    let server = LayerServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &FakeClock::new(), &server);
    store
        .retention()
        .set_quota(Some("layers"), kist::Limit::Bytes(50 << 20))
        .unwrap();
    let zeros = vec![0u8; 200 << 20];
    let bomb = served(
        &server,
        "bomb",
        layer(&[("etc/zeros", &zeros)]),
        Behaviour::Normal,
    );
    assert!(bomb.size < 4 << 20, "{}", bomb.size);
    let fine = plain(&server, "fine", b"fine\n");
    let r = apply(&store, &[&bomb, &fine], 100, &[]);
    match outcome(&r, &bomb) {
        Err(LayerError::Store(kist::StoreError::NoSpace(why))) => {
            assert!(why.contains("quota"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(action(&r, &fine), LayerAction::Installed);
    let usage = store.retention().usage().unwrap();
    let layers = &usage.quotas[0];
    assert!(layers.used < 50 << 20, "{usage:?}");
    assert_clean(&store);
}

/// A TTL past the year 9999, as seconds or a duration, is forever: the
/// layer's and the lease's expiries are kept at 9999-12-31T23:59:59Z and
/// every listing shows them (issue 27: `layer ls`, `layer info` and
/// `lease ls` panicked for the whole store, and the TTL overflowed).
#[test]
fn ttls_past_the_year_9999_are_forever_and_listable() {
    require_root();
    let server = LayerServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &FakeClock::new(), &server);
    let a = plain(&server, "a", b"alpha\n");
    let ttl = u64::MAX.to_string();
    for args in [vec!["--ttl", ttl.as_str()], vec!["--ttl", "30000000d"]] {
        let out = cli_apply(dir.path(), &[&a], &server.origin(), &args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = cli_apply(dir.path(), &[], &server.origin(), &args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(state(&store, &a), Some(LayerState::Cached));
    }
    let kist = |args: &[&str]| {
        let out = Command::new(kist_bin())
            .arg("--store")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(kist(&["layer", "ls"]).contains("9999-12-31T23:59:59Z"));
    assert!(kist(&["layer", "info", &a.digest]).contains("9999-12-31T23:59:59Z"));
    kist(&["lease", "create", "--id", "long", "--expire", &ttl]);
    assert!(kist(&["lease", "ls"]).contains("9999-12-31T23:59:59Z"));
}

/// A download slower than the minimum rate fails after its grace instead
/// of holding the layers lock for as long as the origin drips (a small
/// item of issue 27), and the next run resumes it with a `Range`.
#[test]
fn a_dripping_origin_is_cut_and_the_next_run_resumes() {
    require_root();
    let server = LayerServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = FetchPolicy::default()
        .allow(&server.origin())
        .unwrap()
        .min_rate(4096, Duration::from_secs(2));
    let store = FakeClock::new()
        .builder(dir.path())
        .fetch_policy(policy)
        .open()
        .unwrap();
    let slow = served(
        &server,
        "slow",
        sized_layer("data", 200_000, 7),
        Behaviour::Trickle(1000),
    );
    let started = Instant::now();
    let r = apply(&store, &[&slow], 100, &[]);
    assert!(
        matches!(outcome(&r, &slow), Err(LayerError::Download(_))),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    server.set("slow", Behaviour::Normal);
    let r = apply(&store, &[&slow], 100, &[]);
    assert_eq!(action(&r, &slow), LayerAction::Installed);
    let ranges: Vec<_> = server
        .requests("slow")
        .into_iter()
        .map(|q| q.range)
        .collect();
    assert!(
        ranges
            .last()
            .unwrap()
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=")),
        "{ranges:?}"
    );
}
