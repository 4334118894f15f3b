//! A hostile component (`tests/hostile`) in kist's sandbox: every escape
//! is refused, every runaway is capped or interrupted, and the host keeps
//! serving the next call, then the real store, on the same directory.

use std::time::{Duration, Instant};

use kist::{Error, FetchPolicy, Store};
use kist_tests::layer_server::{Behaviour, LayerServer};
use kist_tests::{hostile_component, open_embedded, tree};

/// A store directory beside an `outside` directory holding a canary, and
/// a symlink inside the store that points at `outside`.
struct Scene {
    _dir: tempfile::TempDir,
    store: std::path::PathBuf,
    outside: std::path::PathBuf,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, outside) = (dir.path().join("store"), dir.path().join("outside"));
        std::fs::create_dir(&store).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("canary"), b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, store.join("planted")).unwrap();
        // The real store lays out the directory, so the attacks meet it.
        open_embedded(&store).put(b"real data").unwrap();
        Self {
            _dir: dir,
            store,
            outside,
        }
    }

    fn hostile(&self, timeout: Duration) -> Store {
        Store::builder(&self.store)
            .component(hostile_component())
            .memory_limit(64 << 20)
            .call_timeout(timeout)
            .open()
            .expect("kist loads the hostile component")
    }
}

/// Runs `attack` and returns its report (`info` carries it as `io`).
fn report(store: &Store, attack: &str) -> Result<String, Error> {
    match store.info(attack) {
        Err(Error::Io(report)) => Ok(report),
        Err(other) => Err(other),
        Ok(info) => panic!("{attack}: unexpected answer {info:?}"),
    }
}

fn assert_outside_untouched(scene: &Scene) {
    assert_eq!(tree(&scene.outside), vec!["canary".to_owned()]);
    assert_eq!(
        std::fs::read(scene.outside.join("canary")).unwrap(),
        b"secret"
    );
}

/// Proves: paths out of the preopen, absolute paths, planted and
/// guest-made symlinks and renames out are all refused.
#[test]
fn escapes_are_refused() {
    let scene = Scene::new();
    let store = scene.hostile(Duration::from_secs(10));
    for attack in [
        "read-dotdot",
        "write-dotdot",
        "absolute",
        "follow-planted-symlink",
        "write-through-planted-symlink",
        "make-symlink-out",
        "rename-out",
        "trees-escapes",
    ] {
        let report = report(&store, attack).unwrap();
        assert!(!report.contains("ESCAPED"), "{attack}: {report}");
        assert!(report.starts_with("refused"), "{attack}: {report}");
    }
    assert_outside_untouched(&scene);
    let canary = std::fs::metadata(scene.outside.join("canary")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&canary.permissions()) & 0o777,
        0o644,
        "the canary's mode is untouched"
    );
    assert_ne!(
        std::os::unix::fs::MetadataExt::uid(&canary),
        4242,
        "its owner too"
    );
    assert!(scene.store.join("oci-layout").is_file());
}

/// Proves: `copier` writes only into files the guest opened for writing,
/// reads only what it opened for reading, refuses directories and offsets
/// that wrap around, leaves the hash unchanged when it refuses, and copies
/// (and hashes) exactly the source's bytes when asked for more.
#[test]
fn copier_moves_only_what_the_guest_may_move() {
    let scene = Scene::new();
    let layout = std::fs::read(scene.store.join("oci-layout")).unwrap();
    let store = scene.hostile(Duration::from_secs(10));
    let report = report(&store, "copy-escapes").unwrap();
    assert!(!report.contains("ESCAPED"), "{report}");
    assert_eq!(report.matches("refused").count(), 7, "{report}");
    assert_eq!(report.matches("BadDescriptor").count(), 5, "{report}");
    assert!(
        report.contains(&format!("copied Ok({})", layout.len())),
        "{report}"
    );
    assert!(report.contains("beyond Ok(0)"), "{report}");
    let hex = kist_tests::sha256(&layout);
    assert!(
        report.ends_with(hex.trim_start_matches("sha256:")),
        "{report}"
    );
    assert_eq!(
        std::fs::read(scene.store.join("oci-layout")).unwrap(),
        layout,
        "the read-only file is untouched"
    );
    assert_eq!(
        std::fs::read(scene.store.join("copy-scratch")).unwrap(),
        layout
    );
    assert_outside_untouched(&scene);
}

/// Proves: the host reads only what the component could lend it: a
/// regular file it opened for reading beneath the store, within the
/// file's bytes. A directory, a write-only descriptor, a range past the
/// end or wrapping around are refused by `lender`; `..` and a planted
/// symlink never open; what is lent is read exactly.
#[test]
fn the_host_reads_only_what_the_guest_may_lend() {
    use std::io::Read;
    let scene = Scene::new();
    let store = scene.hostile(Duration::from_secs(10));
    for (attack, refusal) in [
        ("directory", "BadDescriptor"),
        ("write-only", "BadDescriptor"),
        ("past-the-end", "OutOfRange"),
        ("offset-wraps", "OutOfRange"),
        ("dotdot", "opening ../outside/canary"),
        ("planted-symlink", "opening planted/canary"),
    ] {
        match store.reader(attack) {
            Err(Error::Io(m)) => {
                assert!(
                    m.starts_with("refused: ") && m.contains(refusal),
                    "{attack}: {m}"
                )
            }
            Err(other) => panic!("{attack}: unexpected error {other:?}"),
            Ok(r) => panic!("{attack}: ESCAPED, the host was lent {} bytes", r.size()),
        }
    }
    let mut lent = Vec::new();
    store
        .reader("oci-layout")
        .unwrap()
        .read_to_end(&mut lent)
        .unwrap();
    assert_eq!(lent, std::fs::read(scene.store.join("oci-layout")).unwrap());
    assert_outside_untouched(&scene);
}

/// Proves: `fetch` reaches only the allowed origin: another origin
/// (directly, through a redirect from the allowed one, hidden behind
/// userinfo or another name for its host), other schemes and empty URLs are refused, and the
/// forbidden server never sees a connection.
#[test]
fn fetch_reaches_only_allowed_origins() {
    let scene = Scene::new();
    let allowed = LayerServer::start();
    let forbidden = LayerServer::start();
    allowed.put(
        "redirect",
        Vec::new(),
        Behaviour::RedirectTo(forbidden.port()),
    );
    let store = Store::builder(&scene.store)
        .component(hostile_component())
        .fetch_policy(FetchPolicy::default().allow(&allowed.origin()).unwrap())
        .open()
        .unwrap();
    let attack = format!("fetch-escapes {} {}", allowed.origin(), forbidden.origin());
    let report = report(&store, &attack).unwrap();
    assert!(!report.contains("ESCAPED"), "{report}");
    assert_eq!(report.matches("refused").count(), 7, "{report}");
    assert_eq!(report.matches("NotAllowed").count(), 4, "{report}");
    assert_eq!(
        allowed.requests("redirect").len(),
        1,
        "the allowed origin answered"
    );
    assert!(forbidden.log().is_empty(), "{:?}", forbidden.log());
    assert_outside_untouched(&scene);
}

/// Proves: absurd lock names are refused, a guest cannot hold more than
/// the host's cap of locks or hashers, and a garbage hash state is
/// rejected; the host answers the next call each time.
#[test]
fn capabilities_refuse_absurd_use() {
    let scene = Scene::new();
    let store = scene.hostile(Duration::from_secs(30));
    let names = report(&store, "lock-absurd-names").unwrap();
    assert_eq!(names.matches("refused").count(), 3, "{names}");
    assert!(names.contains("InvalidName"), "{names}");
    let flood = report(&store, "lock-flood").unwrap();
    assert!(flood.starts_with("refused: after 1024 locks"), "{flood}");
    let garbage = report(&store, "hasher-garbage-state").unwrap();
    assert!(garbage.starts_with("refused"), "{garbage}");
    let hashers = report(&store, "hasher-flood");
    assert!(
        matches!(&hashers, Err(Error::Component(m)) if m.contains("hashers")),
        "{hashers:?}"
    );
    // Every lock and hasher of the trapped instance was released.
    let flood = report(&store, "lock-flood").unwrap();
    assert!(flood.starts_with("refused: after 1024 locks"), "{flood}");
}

/// Proves: memory exhaustion traps at the limit, an endless loop and an
/// endless lock wait end at the call deadline, and the host serves the
/// hostile store and the real one afterwards.
#[test]
fn runaways_are_stopped() {
    let scene = Scene::new();
    let timeout = Duration::from_secs(2);
    let store = scene.hostile(timeout);

    let memory = report(&store, "memory");
    assert!(matches!(memory, Err(Error::Component(_))), "{memory:?}");

    let start = Instant::now();
    let spin = report(&store, "spin");
    assert!(matches!(spin, Err(Error::Timeout)), "{spin:?}");
    assert!(start.elapsed() < timeout * 3, "{:?}", start.elapsed());

    let start = Instant::now();
    let wait = report(&store, "lock-wait-forever");
    assert!(
        matches!(&wait, Err(Error::Timeout)) || matches!(&wait, Ok(r) if r.starts_with("refused")),
        "{wait:?}"
    );
    assert!(start.elapsed() < timeout * 3, "{:?}", start.elapsed());

    // The host is still up: the hostile store answers, and so does the
    // real store on the same directory.
    assert!(
        report(&store, "read-dotdot")
            .unwrap()
            .starts_with("refused")
    );
    let real = open_embedded(&scene.store);
    let digest = real.put(b"after the attacks").unwrap();
    assert_eq!(real.get(&digest).unwrap(), b"after the attacks");
    assert_outside_untouched(&scene);
}

/// A component that does not fit the store world is refused at open.
#[test]
fn foreign_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::builder(dir.path())
        .component(b"\0asm not really".to_vec())
        .open();
    assert!(
        matches!(opened, Err(Error::Component(_))),
        "{:?}",
        opened.err()
    );
}
