//! Delta pulls through the real component: a layer's tree (its files by
//! content and the bytes that regenerate its tar), the pack of what a
//! node that holds v1 lacks for v2, and v2 unpacked from v1's snapshot
//! plus the pack — equal to v2 unpacked from its blob, entry by entry —
//! with every wrong input caught before anything is committed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kist::{Error, LayerTree, Registry, RegistryError, Snapshots, Store};
use kist_tests::layer_tar::Layer;
use kist_tests::trees::{Mounted, assert_same, require_root};
use kist_tests::{Harness, bytes, fsck, open_embedded, sha256};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REPO: &str = "library/app";

/// Content that changes between versions, as a `.pyc` header does.
fn module(version: u8, seed: u64) -> Vec<u8> {
    let mut b = bytes(40_000, seed);
    b[4] = version;
    b
}

/// v1 of a layer: directories, owners, a symlink, hard links, a file
/// whose content another has too, an empty file, a path too long for a
/// ustar header, and an extended attribute.
fn v1() -> Layer {
    base(1)
}

/// v2: v1 with three files changed, one added, one gone, and a new
/// content twice.
fn v2() -> Layer {
    base(2)
        .file("usr/lib/python/new.py", &bytes(30_000, 9), 0o644)
        .file("usr/lib/python/copy-a.py", &bytes(5_000, 10), 0o644)
        .file("usr/lib/python/copy-b.py", &bytes(5_000, 10), 0o644)
        .hardlink("usr/bin/python-again", "usr/bin/python")
}

fn base(version: u8) -> Layer {
    let long = format!("usr/share/{}/deep.txt", "d".repeat(120));
    let mut layer = Layer::new()
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file("usr/bin/python", &module(version, 1), 0o755)
        .hardlink("usr/bin/python3", "usr/bin/python")
        .symlink("usr/bin/py", "python3")
        .dir("usr/lib/python", 0o755)
        .file("usr/lib/python/json.pyc", &module(version, 2), 0o644)
        .file("usr/lib/python/ssl.pyc", &module(version, 3), 0o644)
        .file("usr/lib/python/stable.py", &bytes(20_000, 4), 0o644)
        .file("usr/lib/python/stable-copy.py", &bytes(20_000, 4), 0o644)
        .file("usr/lib/python/empty.py", b"", 0o644)
        .owned("home/app/notes", &bytes(3_000, 5), 1000, 1000)
        .file(&long, &bytes(2_000, 6), 0o600);
    if version == 1 {
        layer = layer.file("usr/lib/python/removed.py", &bytes(7_000, 7), 0o644);
    }
    layer.xattr_file(
        "usr/lib/python/tagged.py",
        &bytes(1_000, 8),
        "user.origin",
        b"debian",
    )
}

/// A store whose repository holds v1 and v2, v1 unpacked and committed
/// as snapshot `v1` (what a node holds), and v2's blob digests.
struct Setup {
    harness: Harness,
    store: Store,
    v1: String,
    v2: String,
    v2_tar: Vec<u8>,
}

impl Setup {
    fn new() -> Self {
        require_root();
        let h = Harness::new(open_embedded);
        let store = h.store();
        let v2_tar = v2().tar();
        let v1 = push(&store.registry(), &v1().gzip());
        let v2 = push(&store.registry(), &v2().gzip());
        let s = store.snapshots();
        s.prepare("extract v1", None, &[]).unwrap();
        s.apply("extract v1", &v1, GZIP).unwrap();
        s.commit("v1", "extract v1", &[]).unwrap();
        Self {
            harness: h,
            store,
            v1,
            v2,
            v2_tar,
        }
    }

    fn snapshots(&self) -> Snapshots {
        self.store.snapshots()
    }

    fn tree(&self, layer: &str) -> LayerTree {
        self.store.registry().tree_of_layer(REPO, layer).unwrap()
    }

    /// The pack of v2 for a node that has v1, stored on the node.
    fn pack(&self) -> String {
        let (pack, size) = self
            .store
            .registry()
            .layer_pack(REPO, &self.v2, std::slice::from_ref(&self.v1))
            .unwrap();
        assert_eq!(self.store.info(&pack).unwrap().size, size);
        pack
    }
}

/// Pushes `bytes` to the repository as a blob.
fn push(registry: &Registry, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let mut w = registry
        .open_upload(REPO, &format!("up{}", &d[7..39]), true)
        .unwrap();
    w.write_all(bytes).unwrap();
    w.commit(Some(bytes.len() as u64), Some(&d), &[]).unwrap();
    d
}

/// The frames of a pack: (digest, size, whole or a delta's length) of
/// each file, in order.
fn frames(store: &Store, pack: &str) -> Vec<(String, u64, Sent)> {
    let gz = read(store, pack);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let magic = b"kist-layer-pack/2\n";
    assert!(raw.starts_with(magic), "a pack starts with its magic");
    let mut at = magic.len();
    let mut out = Vec::new();
    let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap());
    while at < raw.len() {
        let digest = format!("sha256:{}", hex(&raw[at..at + 32]));
        let size = u64_at(at + 32);
        let sent = match raw[at + 40] {
            0 => {
                at += 41 + size as usize;
                Sent::Whole
            }
            1 => {
                let len = u64_at(at + 41 + 32);
                at += 41 + 40 + len as usize;
                Sent::Delta(len)
            }
            k => panic!("frame kind {k}"),
        };
        out.push((digest, size, sent));
    }
    assert_eq!(at, raw.len(), "the frames fill the pack exactly");
    out
}

/// How a pack sends a file.
#[derive(Debug, PartialEq)]
enum Sent {
    Whole,
    /// A delta of this many bytes.
    Delta(u64),
}

fn read(store: &Store, d: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.reader(d).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What `describe` does not show: times, link counts, which entries
/// share an inode, and `user.` extended attributes.
fn details(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    for entry in walkdir(root) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        let rel = entry.strip_prefix(root).unwrap().display().to_string();
        let shares = if meta.is_file() && meta.nlink() > 1 {
            inodes
                .entry(meta.ino())
                .or_insert_with(|| rel.clone())
                .clone()
        } else {
            String::new()
        };
        let xattr = xattrs(&entry);
        let mtime = if meta.file_type().is_symlink() {
            0
        } else {
            meta.mtime()
        };
        out.insert(rel, format!("{mtime} {} {shares} {xattr}", meta.nlink()));
    }
    out
}

/// `user.` extended attributes, as `name=value` lines.
fn xattrs(path: &Path) -> String {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut names).unwrap_or(0);
    let mut out = String::new();
    for name in names[..n]
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"user."))
    {
        let name = std::str::from_utf8(name).unwrap();
        let mut value = vec![0u8; 4096];
        let len = rustix::fs::lgetxattr(path, name, &mut value).unwrap();
        out.push_str(&format!("{name}={:?}\n", &value[..len]));
    }
    out
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        out.push(path.clone());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walkdir(&path));
        }
    }
    out
}

#[test]
fn v2_from_v1_and_a_pack_equals_v2_from_its_blob() {
    let t = Setup::new();
    let s = t.snapshots();
    let (tree1, tree2) = (t.tree(&t.v1), t.tree(&t.v2));
    assert_eq!(
        tree2.diff_id,
        sha256(&t.v2_tar),
        "a tree knows its layer's diff id"
    );
    assert_eq!(
        tree2.files, 11,
        "v2's regular files with content: {tree2:?}"
    );

    // The pack has what v1 lacks: the changed and new contents, each once,
    // the changed ones as deltas against v1's file at their path.
    let pack = t.pack();
    let sent = frames(&t.store, &pack);
    let kinds: Vec<(String, u64, bool)> = sent
        .iter()
        .map(|(d, size, how)| (d.clone(), *size, *how == Sent::Whole))
        .collect();
    let expected: Vec<(String, u64, bool)> = [
        (module(2, 1), false),
        (module(2, 2), false),
        (module(2, 3), false),
        (bytes(30_000, 9), true),
        (bytes(5_000, 10), true),
    ]
    .iter()
    .map(|(b, whole)| (sha256(b), b.len() as u64, *whole))
    .collect();
    assert_eq!(kinds, expected, "only new content, once each, in tar order");
    for (_, size, how) in &sent {
        if let Sent::Delta(len) = how {
            assert!(
                *len < size / 20,
                "a one-byte change is a small delta: {len} of {size}"
            );
        }
    }
    assert_eq!(
        t.store
            .registry()
            .layer_pack(REPO, &t.v2, std::slice::from_ref(&t.v1))
            .unwrap()
            .0,
        pack,
        "a pack is made once per pair and kept"
    );

    // The node: v2 from v1's files and the pack, checked against the
    // diff id from the image's config.
    s.prepare("delta v2", None, &[]).unwrap();
    let diff_id = s
        .apply_delta(
            "delta v2",
            &tree2.diff_id,
            &tree2.tree,
            Some(&pack),
            &[("v1", &tree1.tree)],
        )
        .unwrap();
    assert_eq!(diff_id, tree2.diff_id);
    s.commit("v2 by delta", "delta v2", &[]).unwrap();

    s.prepare("extract v2", None, &[]).unwrap();
    s.apply("extract v2", &t.v2, GZIP).unwrap();
    s.commit("v2", "extract v2", &[]).unwrap();

    let by_delta = Mounted::new(&s.view("look delta", Some("v2 by delta"), &[]).unwrap());
    let by_blob = Mounted::new(&s.view("look blob", Some("v2"), &[]).unwrap());
    assert_same(by_delta.path(), by_blob.path());
    assert_eq!(details(by_delta.path()), details(by_blob.path()));
    assert!(
        details(by_blob.path())["usr/lib/python/tagged.py"].contains("user.origin"),
        "extended attributes are compared"
    );
    assert!(fsck(&t.store, false).is_empty(), "fsck is clean");
}

/// Fails unless `result` is `invalid-argument` whose message has `says`,
/// and the snapshot `key` was left empty.
fn refused(s: &Snapshots, key: &str, result: kist::Result<String>, says: &str) {
    match result {
        Err(Error::InvalidArgument(m)) => assert!(m.contains(says), "{says:?} not in {m:?}"),
        other => panic!("expected invalid-argument ({says}), got {other:?}"),
    }
    let m = Mounted::new(&s.mounts(key).unwrap());
    assert_eq!(
        std::fs::read_dir(m.path()).unwrap().count(),
        0,
        "nothing of a refused layer is left in {key:?}"
    );
}

#[test]
fn wrong_files_trees_and_diff_ids_are_caught_and_nothing_is_committed() {
    let t = Setup::new();
    let s = t.snapshots();
    let (tree1, tree2) = (t.tree(&t.v1), t.tree(&t.v2));
    let pack = t.pack();
    s.prepare("target", None, &[]).unwrap();
    let bases = [("v1", tree1.tree.as_str())];

    // Without the base, the pack lacks what v1 has.
    let r = s.apply_delta("target", &tree2.diff_id, &tree2.tree, Some(&pack), &[]);
    refused(&s, "target", r, "which no base has");

    // A diff id other than the tree's.
    let r = s.apply_delta("target", &tree1.diff_id, &tree2.tree, Some(&pack), &bases);
    refused(&s, "target", r, "not");

    // A pack whose file has other content than its digest says.
    let sent = frames(&t.store, &pack);
    let mut forged = b"kist-layer-pack/2\n".to_vec();
    let (digest, size, _) = &sent[0];
    forged.extend(hex_bytes(&digest[7..]));
    forged.extend(size.to_le_bytes());
    forged.push(0);
    forged.extend(vec![b'x'; *size as usize]);
    let forged = t.store.put(&gzip(&forged)).unwrap();
    let r = s.apply_delta("target", &tree2.diff_id, &tree2.tree, Some(&forged), &bases);
    refused(&s, "target", r, "is not");

    // A delta that does not give the file it claims.
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&read(&t.store, &pack)[..])
        .read_to_end(&mut raw)
        .unwrap();
    let first = b"kist-layer-pack/2\n".len();
    assert_eq!(raw[first + 40], 1, "the first file comes as a delta");
    let len = u64::from_le_bytes(raw[first + 73..first + 81].try_into().unwrap()) as usize;
    raw[first + 81 + len / 2] ^= 0x55;
    let bad_delta = t.store.put(&gzip(&raw)).unwrap();
    let r = s.apply_delta(
        "target",
        &tree2.diff_id,
        &tree2.tree,
        Some(&bad_delta),
        &bases,
    );
    refused(&s, "target", r, &sha256(&module(2, 1)));

    // A tree with one header byte changed (a mode): its tar is not the
    // layer's, whatever the files.
    let mut raw = Vec::new();
    let gz = read(&t.store, &tree2.tree);
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let header = raw.iter().position(|b| *b == b'\n').unwrap() + 1;
    let first_header = (header..raw.len())
        .find(|i| raw[*i..].starts_with(b"usr/"))
        .unwrap();
    raw[first_header + 100 + 4] ^= 1;
    // With its checksum right, so that only the diff id can tell.
    let block = &mut raw[first_header..first_header + 512];
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let tampered = t.store.put(&gzip(&raw)).unwrap();
    let r = s.apply_delta("target", &tree2.diff_id, &tampered, Some(&pack), &bases);
    refused(&s, "target", r, "not the diff id");

    // Not a tree at all.
    let junk = t
        .store
        .put(&gzip(b"kist-layer-tree/1\nsha256:00\n"))
        .unwrap();
    let r = s.apply_delta("target", &tree2.diff_id, &junk, Some(&pack), &bases);
    refused(&s, "target", r, "digest");

    // A base file changed on the node after v1 was committed (same size):
    // the host copies base files without the component reading them, and
    // the diff id still catches the change.
    let stable = std::fs::read_dir(t.harness.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path().join("fs/usr/lib/python/stable.py"))
        .find(|p| p.is_file())
        .expect("v1's snapshot holds stable.py");
    let original = std::fs::read(&stable).unwrap();
    let mut changed = original.clone();
    changed[100] ^= 0x55;
    std::fs::write(&stable, &changed).unwrap();
    let r = s.apply_delta("target", &tree2.diff_id, &tree2.tree, Some(&pack), &bases);
    refused(&s, "target", r, "not the diff id");
    std::fs::write(&stable, &original).unwrap();

    // After all that, the real inputs still work.
    s.apply_delta("target", &tree2.diff_id, &tree2.tree, Some(&pack), &bases)
        .unwrap();
    assert!(fsck(&t.store, false).is_empty(), "fsck is clean");
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn trees_and_packs_follow_the_registry_rules() {
    let t = Setup::new();
    let registry = t.store.registry();
    let other = {
        let d = sha256(b"not in the repository");
        let mut w = registry
            .open_upload("other/app", &format!("up{}", &d[7..39]), true)
            .unwrap();
        w.write_all(b"not in the repository").unwrap();
        w.commit(None, Some(&d), &[]).unwrap();
        d
    };
    let unknown = |r: kist::Result<_>| {
        assert!(
            matches!(r, Err(Error::Registry(RegistryError::BlobUnknown))),
            "blob-unknown expected"
        )
    };
    unknown(registry.tree_of_layer(REPO, &other).map(drop));
    // A base from another repository would tell what it holds.
    unknown(
        registry
            .layer_pack(REPO, &t.v2, std::slice::from_ref(&other))
            .map(drop),
    );
    let pull_only = t.store.granted(vec![kist::Grant {
        pattern: "elsewhere/*".to_owned(),
        actions: kist::Actions::PULL,
    }]);
    assert!(matches!(
        pull_only.registry().tree_of_layer(REPO, &t.v2),
        Err(Error::Denied(_))
    ));
    // A blob that is not a layer.
    let not_layer = push(&registry, b"{\"not\":\"a layer\"}");
    assert!(matches!(
        registry.tree_of_layer(REPO, &not_layer),
        Err(Error::InvalidArgument(_))
    ));
    // Trees and packs are held by `deltas`, so no repository's quota
    // pays for them and fsck knows them.
    let tree = t.tree(&t.v2);
    let info = t.store.info(&tree.tree).unwrap();
    assert!(
        info.holders.iter().any(|h| h == "deltas"),
        "held by deltas: {info:?}"
    );
    assert!(fsck(&t.store, false).is_empty());
}

/// v1 or v2 of an app layer over busybox: mostly files that stay, some
/// that change.
fn app_layer(version: u8) -> Vec<u8> {
    let mut layer = Layer::new().dir("app", 0o755).file(
        "app/version",
        format!("{version}\n").as_bytes(),
        0o644,
    );
    for i in 0..20u64 {
        // Every fifth file changes between versions.
        let seed = if i % 5 == 0 {
            100 * u64::from(version) + i
        } else {
            i
        };
        layer = layer.file(&format!("app/lib/{i}.bin"), &bytes(100_000, seed), 0o644);
    }
    layer.gzip()
}

/// `kist --store STORE pull ARGS`: its stdout.
fn kist_pull(store: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(kist_tests::kist_bin())
        .arg("--store")
        .arg(store)
        .arg("pull")
        .args(args)
        .env_remove("KIST_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kist pull {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The bytes `kist pull` says it fetched.
fn fetched(out: &str) -> u64 {
    let last = out.lines().last().unwrap();
    last.split(", ")
        .last()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `kist serve` holding v1 and v2 of `lib/app` (busybox and an app
/// layer), and the images.
fn serving_two_versions() -> (
    Harness,
    kist_tests::Server,
    kist_tests::oci::Image,
    kist_tests::oci::Image,
) {
    use kist_tests::oci::{Image, busybox_layer};
    let registry = Harness::new(open_embedded);
    let server = kist_tests::Server::start(registry.path());
    let client = kist_tests::registry::Client::new(&server);
    let v1 = Image::with_layers(vec![busybox_layer(), app_layer(1)], None);
    let v2 = Image::with_layers(vec![busybox_layer(), app_layer(2)], None);
    client.push_image("lib/app", "v1", &v1);
    client.push_image("lib/app", "v2", &v2);
    (registry, server, v1, v2)
}

/// The committed snapshot `kist pull` made for the top of `image`.
fn pulled(image: &kist_tests::oci::Image) -> String {
    let chain = image
        .layers
        .iter()
        .map(|l| {
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&l.bytes[..])
                .read_to_end(&mut tar)
                .unwrap();
            sha256(&tar)
        })
        .reduce(|parent, d| sha256(format!("{parent} {d}").as_bytes()))
        .unwrap();
    format!("kist-pull/{chain}")
}

/// Reads `path` in a view of the snapshot `name`.
fn read_in(store: &Store, name: &str, path: &str) -> Vec<u8> {
    let s = store.snapshots();
    let key = format!("look {name} {path}");
    let m = Mounted::new(&s.view(&key, Some(name), &[]).unwrap());
    let bytes = std::fs::read(m.join(path)).unwrap();
    drop(m);
    s.remove(&key).unwrap();
    bytes
}

/// A node with no base pulls whole layers; with v1 there, v2 comes as a
/// delta, while collections run all the time on the node; a pull
/// interrupted in its pack resumes from where it stopped.
#[test]
fn kist_pull_full_then_delta_resumes_and_survives_collections() {
    require_root();
    let (_registry, server, v1, v2) = serving_two_versions();
    let node = Harness::new(open_embedded);
    let store = node.store();
    let v1_url = format!("{}/lib/app:v1", server.base);
    let out = kist_pull(node.path(), &[&v1_url]);
    let whole: u64 = v1.layers.iter().map(|l| l.bytes.len() as u64).sum();
    assert_eq!(fetched(&out), whole, "no base: whole layers: {out}");
    assert_eq!(read_in(&store, &pulled(&v1), "app/version"), b"1\n");

    // What a pull killed inside v2's pack leaves: half the pack in its
    // resumable ingest.
    let (busybox, app1, app2) = (
        &v1.layers[0].digest,
        &v1.layers[1].digest,
        &v2.layers[1].digest,
    );
    let pack_path = format!("lib/app/packs/{app2}?base={busybox}&base={app1}");
    let pack = kist_tests::http::body(kist_tests::http::fetch(ureq::get(&format!(
        "{}/kist/v1/{pack_path}",
        server.base
    ))));
    let tree_path = format!("{}/kist/v1/lib/app/trees/{app2}", server.base);
    let tree = kist_tests::http::body(kist_tests::http::fetch(ureq::get(&tree_path)));
    let half = pack.len() / 2;
    let mut w = store
        .writer(&format!("kist-pull {pack_path}"), None, None)
        .unwrap();
    w.write_all(&pack[..half]).unwrap();
    drop(w);

    kist_tests::no_registry_graces(&store, 0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (out, collections) = std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for removed in store.retention().collect(false).unwrap() {
                    removed.unwrap();
                }
                n += 1;
            }
            n
        });
        let v2_url = format!("{}/lib/app:v2", server.base);
        let out = kist_pull(node.path(), &["--from", "v1", &v2_url]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, collector.join().unwrap())
    });
    assert!(collections > 0, "collections ran during the pull");
    assert_eq!(
        fetched(&out),
        (tree.len() + pack.len() - half) as u64,
        "the pack resumed after its first half: {out}"
    );
    let top = pulled(&v2);
    assert_eq!(read_in(&store, &top, "app/version"), b"2\n");
    assert_eq!(read_in(&store, &top, "app/lib/5.bin"), bytes(100_000, 205));
    assert_eq!(read_in(&store, &top, "app/lib/6.bin"), bytes(100_000, 6));
    assert!(fsck(&store, false).is_empty(), "the node's store is clean");
}

/// A node whose containerd pulled v1 from `kist serve` gets v2 with `kist
/// pull --from v1 --containerd`, fetching only v2's changed files and no
/// layer blob; containerd then runs v2 from those snapshots.
#[test]
fn containerd_runs_v2_after_a_delta_pull_from_v1() {
    use kist_tests::containerd::{Containerd, KistSocket};
    require_root();
    let (_registry, server, _, v2) = serving_two_versions();
    let host = server.base.split("://").nth(1).unwrap().to_owned();

    let node = Harness::new(open_embedded);
    let plugin = KistSocket::start(&node);
    let c = Containerd::with_kist(&plugin.socket);
    let run = |reference: &str, id: &str| {
        let out = c.ctr(&[
            "run",
            "--rm",
            "--snapshotter",
            "kistsnap",
            reference,
            id,
            "/bin/busybox",
            "cat",
            "/app/version",
        ]);
        assert!(
            out.status.success(),
            "ctr run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let v1_ref = format!("{host}/lib/app:v1");
    let out = c.ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "kistsnap",
        &v1_ref,
    ]);
    assert!(
        out.status.success(),
        "ctr pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run(&v1_ref, "one"), "1\n");

    let socket = c.socket();
    let socket = socket.to_str().unwrap();
    let v2_url = format!("{}/lib/app:v2", server.base);
    let pull = ["--from", "v1", "--containerd", socket, v2_url.as_str()];
    let out = kist_pull(&plugin.store, &pull);
    let changed = v2.layers[1].bytes.len() as u64;
    assert!(
        out.contains("1 here already"),
        "busybox's layer is shared: {out}"
    );
    assert!(
        fetched(&out) < changed / 3,
        "a delta fetches the 4 changed files of 21, not the layer ({changed} bytes): {out}"
    );
    let node_store = Store::open(&plugin.store).unwrap();
    assert!(
        matches!(node_store.info(&v2.layers[1].digest), Err(Error::NotFound)),
        "v2's changed layer was never fetched"
    );
    let v2_ref = format!("{host}/lib/app:v2");
    assert_eq!(
        run(&v2_ref, "two"),
        "2\n",
        "containerd runs v2 from the delta's snapshots"
    );
    assert!(
        fsck(&node_store, false).is_empty(),
        "the node's store is clean"
    );

    // Pulled again: every layer is here, and containerd's record stays.
    let again = kist_pull(&plugin.store, &pull);
    assert!(
        again.contains("2 here already") && fetched(&again) == 0,
        "{again}"
    );
    assert_eq!(run(&v2_ref, "three"), "2\n");
}

/// The delta endpoints as a hostile client uses them: too many bases,
/// malformed and foreign digests, names that climb out, ranges past the
/// end and a query too long for any server; each gets a typed error. Then
/// sixteen connections ask for the pack and never read it: a fresh client
/// still gets the tree and the pack in full, and `kist serve` answers
/// throughout.
#[test]
fn delta_endpoints_answer_hostile_clients_and_keep_serving() {
    use kist_tests::http::{body, fetch};
    let (_registry, server, v1, v2) = serving_two_versions();
    let (busybox, app1, app2) = (
        &v1.layers[0].digest,
        &v1.layers[1].digest,
        &v2.layers[1].digest,
    );
    let get = |path: &str| fetch(ureq::get(&format!("{}/kist/v1/{path}", server.base)));
    let code = |r: ureq::Response| {
        let status = r.status();
        let text = String::from_utf8_lossy(&body(r)).into_owned();
        (status, text)
    };
    let refused = |path: &str, status: u16, says: &str| {
        let (got, text) = code(get(path));
        assert_eq!(got, status, "{path}: {text}");
        assert!(text.contains(says), "{path}: {text} lacks {says}");
    };
    let many = vec![format!("base={app1}"); 257].join("&");
    refused(&format!("lib/app/packs/{app2}?{many}"), 400, "256");
    refused(
        &format!("lib/app/packs/{app2}?base=sha256:zz"),
        400,
        "DIGEST_INVALID",
    );
    refused("lib/app/trees/sha256:zz", 400, "DIGEST_INVALID");
    refused(&format!("../../etc/trees/{app2}"), 404, "");
    refused(&format!("lib/app/../../trees/{app2}"), 404, "");
    // A digest this repository does not hold, as layer and as base.
    let stranger = sha256(b"nobody pushed this");
    refused(&format!("lib/app/trees/{stranger}"), 404, "BLOB_UNKNOWN");
    refused(
        &format!("lib/app/packs/{app2}?base={stranger}"),
        404,
        "BLOB_UNKNOWN",
    );
    refused(&format!("other/app/trees/{app2}"), 404, "");
    let past = fetch(
        ureq::get(&format!("{}/kist/v1/lib/app/trees/{app2}", server.base))
            .set("Range", "bytes=999999999-"),
    );
    assert_eq!(past.status(), 416);
    let endless = vec![format!("base={app1}"); 20_000].join("&");
    let (got, _) = code(get(&format!("lib/app/packs/{app2}?{endless}")));
    assert!((400..500).contains(&got), "a 1.4 MB query: {got}");

    // Sixteen connections that ask for the pack and never read.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let pack_path = format!("/kist/v1/lib/app/packs/{app2}?base={busybox}&base={app1}");
    let stalled: Vec<_> = (0..16)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(s, "GET {pack_path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            s
        })
        .collect();
    let tree = body(get(&format!("lib/app/trees/{app2}")));
    assert!(!tree.is_empty());
    let pack = get(&pack_path["/kist/v1/".len()..]);
    assert_eq!(pack.status(), 200);
    let size: usize = pack.header("content-length").unwrap().parse().unwrap();
    assert_eq!(body(pack).len(), size, "a fresh client gets the whole pack");
    drop(stalled);
    assert_eq!(get(&format!("lib/app/trees/{app2}")).status(), 200);
}
