//! The conformance suite against `kist-portable.wasm` (the store with the
//! pure-wasm hasher and locks plugged in), run by kist's host: the
//! portable composition behaves exactly like the store with native
//! capabilities.

fn open_portable(dir: &std::path::Path) -> kist::Store {
    kist::Store::builder(dir)
        .component(kist::components::PORTABLE)
        .open()
        .expect("opening a store on kist-portable.wasm")
}

kist_tests::conformance_suite!(open_portable);

/// The storer works on the portable composition too: archives (hashed by
/// the wasm hasher, compressed by the wasm build of the host's gzip, to
/// the same bytes as the native host), artifact locks (portable lock files), extraction and
/// blob freeing.
#[test]
fn storer_runs_on_the_portable_composition() {
    use kist::{ArchiveOptions, Error, ExtractOptions, Object, Source};
    let h = kist_tests::Harness::new(open_portable);
    let storer = h.store().storer();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), kist_tests::bytes(300_000, 7)).unwrap();
    // Text that compresses, over several of the encoder's blocks: both
    // hosts' gzip must match byte for byte, not only on stored data.
    let text: Vec<u8> = kist_tests::bytes(3 << 20, 8)
        .iter()
        .map(|b| b"abcdefgh \n"[usize::from(b % 10)])
        .collect();
    std::fs::write(src.join("text"), text).unwrap();
    let object = Object::new("Bucket", "ns", "b", "u");
    let source = Source::Directory(&src, ArchiveOptions::default());
    let a = storer
        .reconcile_artifact(&object, "r1", "a.tar.gz", source, &[])
        .unwrap();
    let native = kist::Store::open(work.path().join("native")).unwrap();
    let expected = native
        .storer()
        .archive(&src, &ArchiveOptions::default())
        .unwrap();
    assert_eq!(
        a.digest, expected.0,
        "same archive digest as the native host"
    );
    storer.verify(&a.path).unwrap();

    let held = storer.lock(&object, std::time::Duration::ZERO).unwrap();
    let other = h.store().storer();
    let busy = other.lock(&object, std::time::Duration::from_millis(50));
    assert!(matches!(busy, Err(Error::Unavailable)));
    drop(held);
    drop(other.lock(&object, std::time::Duration::ZERO).unwrap());

    let out = work.path().join("out");
    storer
        .extract(
            "bucket/ns/b/latest.tar.gz",
            "",
            &out,
            &ExtractOptions::default(),
        )
        .unwrap();
    assert_eq!(
        std::fs::read(out.join("d/f")).unwrap(),
        kist_tests::bytes(300_000, 7)
    );
    storer.remove_object(&object).unwrap();
    assert!(matches!(h.store().info(&a.digest), Err(Error::NotFound)));
}
