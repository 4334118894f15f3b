//! kist in hosts it did not write: the `kist-import` client component
//! composed with `kist-portable.wasm` (imports: WASI 0.2 only), run by the
//! stock `wasmtime` CLI on a real directory, which kist's own host then
//! reads back.

use std::path::Path;
use std::process::{Command, Output};

use kist::components;
use kist_tests::{Harness, bytes, client_component, open_embedded, peer, sha256};

/// `kist-import` plugged with the portable store, written to `dir`.
fn composed(dir: &Path) -> std::path::PathBuf {
    let wasm = components::plug(&client_component(), &[components::PORTABLE])
        .expect("plugging kist-portable.wasm into kist-import");
    let path = dir.join("kist-import+portable.wasm");
    std::fs::write(&path, wasm).unwrap();
    path
}

/// `wasmtime run` of the composition with the store preopened first.
fn wasmtime_run(wasm: &Path, store: &Path, input: &Path, args: &[&str]) -> Output {
    let dirs = |host: &Path, guest: &str| format!("{}::{guest}", host.display());
    Command::new(peer("wasmtime"))
        .arg("run")
        .args([
            "--dir",
            &dirs(store, "/store"),
            "--dir",
            &dirs(input, "/input"),
        ])
        .arg(wasm)
        .args(args)
        .output()
        .expect("running wasmtime")
}

/// The stock wasmtime CLI runs the composed client: it imports files into
/// a store that kist's native host then reads, labels included, and its
/// `verify` finds a corrupted blob.
#[test]
fn wasmtime_cli_runs_the_composition() {
    let h = Harness::new(open_embedded);
    let scratch = tempfile::tempdir().unwrap();
    let input = scratch.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let files = [
        ("a.txt", b"hello from wasmtime".to_vec()),
        ("big.bin", bytes(3 << 20, 7)),
        ("empty", vec![]),
    ];
    for (name, data) in &files {
        std::fs::write(input.join(name), data).unwrap();
    }
    let wasm = composed(scratch.path());

    let out = wasmtime_run(&wasm, h.path(), &input, &["import", "/input"]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let expected: String = files
        .iter()
        .map(|(n, d)| format!("{} {n}\n", sha256(d)))
        .collect();
    assert_eq!(printed, expected);

    let store = h.store();
    for (name, data) in &files {
        let info = store.info(&sha256(data)).unwrap();
        assert!(
            info.labels
                .iter()
                .any(|l| l.key == "org.opencontainers.image.title" && l.value == *name)
        );
        assert_eq!(store.get(&info.digest).unwrap(), *data);
    }
    let locks = std::fs::read_dir(h.path().join("locks/portable"))
        .unwrap()
        .count();
    assert_eq!(locks, 0, "the portable locks left files behind");

    let out = wasmtime_run(&wasm, h.path(), &input, &["verify"]);
    assert!(out.status.success(), "{out:?}");
    std::fs::write(
        h.path()
            .join("blobs/sha256")
            .join(&sha256(b"hello from wasmtime")["sha256:".len()..]),
        b"tampered",
    )
    .unwrap();
    let out = wasmtime_run(&wasm, h.path(), &input, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CorruptBlob"),
        "{out:?}"
    );
}

/// jco transpiles kist for Node.js in both shapes a JavaScript user has:
/// the portable composition as one module, and the store linked to the
/// capabilities transpiled beside it (`--map`, so bytes cross between the
/// two as typed arrays). Each runs on a real directory through the
/// preview2 shim: blobs put, streamed, copied from a file the script opens
/// (`write-from`), labelled, walked and read there are the ones kist's
/// native host finds, and WIT errors arrive as their variant cases.
#[test]
fn node_runs_the_portable_store_through_jco() {
    let node = peer("node");
    let jco = peer("jco");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    let scratch = tempfile::tempdir().unwrap();
    let transpile = |component: &[u8], name: &str, out: &Path, args: &[&str]| {
        let wasm = scratch.path().join(format!("{name}.wasm"));
        std::fs::write(&wasm, component).unwrap();
        let transpiled = Command::new(&node)
            .arg(&jco)
            .arg("transpile")
            .arg(&wasm)
            .arg("-o")
            .arg(out)
            .args(["--name", name, "--quiet"])
            .args(args)
            .output()
            .expect("running jco");
        assert!(transpiled.status.success(), "{transpiled:?}");
    };
    // Under tests/node, so that the shim resolves from its node_modules.
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let (composed, split) = (out.join("composed"), out.join("split"));
    transpile(components::PORTABLE, "kist", &composed, &[]);
    transpile(components::CAPABILITIES, "capabilities", &split, &[]);
    let map = "kist:content/*=./capabilities.js#*";
    transpile(components::STORE, "kist", &split, &["--map", map]);

    for (shape, out) in [("composed", &composed), ("split", &split)] {
        let h = Harness::new(open_embedded);
        let ran = Command::new(&node)
            .arg(dir.join("portable.mjs"))
            .arg(h.path())
            .arg(scratch.path())
            .arg(out)
            .output()
            .expect("running node");
        assert!(ran.status.success(), "{shape}: {ran:?}");
        let report: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
        check_node_report(&h, &report);
        eprintln!(
            "ingest through jco ({shape}): {} MB/s streamed, {} MB/s from a file (write-from)",
            report["ingestMBps"], report["fileMBps"]
        );
    }
}

/// What `tests/node/portable.mjs` reports of its run on `h`'s store, and
/// the store itself, agree with kist's native host.
fn check_node_report(h: &Harness, report: &serde_json::Value) {
    let put = sha256(b"hello from node");
    assert_eq!(report["put"], put.as_str());
    assert_eq!(report["big"], report["bigExpected"]);
    assert_eq!(report["readBack"], "hello from node");
    assert_eq!(report["notFound"], "not-found");
    assert_eq!(report["invalid"], "invalid-argument");
    let big = report["big"].as_str().unwrap();
    let mut both = vec![put.clone(), big.to_owned()];
    both.sort();
    assert_eq!(report["walked"], serde_json::json!(both));
    assert_eq!(report["file"], report["fileExpected"]);
    assert_eq!(report["fileCopied"], 64 << 20);
    let store = h.store();
    assert!(
        store
            .info(&put)
            .unwrap()
            .labels
            .iter()
            .any(|l| l.key == "via" && l.value == "jco")
    );
    assert_eq!(sha256(&store.get(big).unwrap()), big);
}

/// Each shipped component conforms to its published world (what `wac
/// targets` / `wasm-tools component targets` check): the store to
/// `store-component`, the capabilities to `portable-capabilities`, and the
/// composition to `store-core` (`store-component` without the capability
/// imports, and without `lending`, which it exports with loans of its own).
#[test]
fn components_target_their_worlds() {
    let mut resolve = wit_parser::Resolve::default();
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let (package, _) = resolve.push_dir(&wit).expect("parsing wit/");
    for (world, wasm) in [
        ("store-component", components::STORE),
        ("portable-capabilities", components::CAPABILITIES),
        ("store-core", components::PORTABLE),
    ] {
        let id = resolve.select_world(&[package], Some(world)).unwrap();
        wit_component::targets(&resolve, id, wasm)
            .unwrap_or_else(|e| panic!("a component does not target {world}: {e:#}"));
    }
}

/// `kist component` writes each built-in component byte for byte.
#[test]
fn kist_component_writes_the_components() {
    let scratch = tempfile::tempdir().unwrap();
    for (which, bytes) in [
        ("store", components::STORE),
        ("capabilities", components::CAPABILITIES),
        ("portable", components::PORTABLE),
    ] {
        let path = scratch.path().join(which);
        let out = Command::new(kist_tests::kist_bin())
            .args(["component", which, "-o"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            std::fs::read(&path).unwrap() == bytes,
            "kist component {which} differs"
        );
    }
}

/// The `wasmtime` package from PyPI runs `kist-portable.wasm` behind
/// `tests/python/kist_wasm.py`: puts with labels, info, walk and delete
/// work, WIT errors become `KistError` with their case, and kist's native
/// host finds the blobs.
#[test]
fn python_runs_the_portable_store() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let python = peer("python");
    let scratch = tempfile::tempdir().unwrap();
    let wasm = scratch.path().join("kist-portable.wasm");
    std::fs::write(&wasm, components::PORTABLE).unwrap();
    let h = Harness::new(open_embedded);
    let ran = Command::new(&python)
        .arg(dir.join("check_portable.py"))
        .arg(&wasm)
        .arg(h.path())
        .output()
        .expect("running python");
    assert!(ran.status.success(), "{ran:?}");
    let report: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    let put = sha256(b"hello from python");
    assert_eq!(report["put"], put.as_str());
    assert_eq!(report["info"]["size"], 17);
    assert_eq!(report["info"]["labels"]["via"], "python");
    assert_eq!(report["walked"], serde_json::json!([put]));
    assert_eq!(report["deleted"], "not-found");
    assert_eq!(report["invalid"], "invalid-argument");
    assert_eq!(report["noIngest"], "not-found");
    assert_eq!(report["badFilter"], "invalid-argument");

    let store = h.store();
    assert_eq!(store.get(&put).unwrap(), b"hello from python");
    assert!(matches!(
        store.info(&sha256(b"deleted from python")),
        Err(kist::Error::NotFound)
    ));
}
