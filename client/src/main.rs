//! `kist-import`: a WASI command in the `kist:content/client` world, built
//! to be composed with a kist store (`wac plug kist-import.wasm --plug
//! kist-portable.wasm`) and run by any WASI 0.2 host.
//!
//! ```text
//! kist-import import DIR    store every regular file in DIR (sorted by name),
//!                           labelled with its name; print "DIGEST NAME" each
//! kist-import verify        re-hash every blob (kist fsck); print each problem,
//!                           exit 1 if there is any
//! ```
//!
//! The store uses the first directory the host preopens; DIR must be under
//! another one (e.g. `wasmtime run --dir store::/store --dir in::/in`).

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "client",
        generate_all,
    });
}

use std::io::Read;
use std::process::ExitCode;

use bindings::kist::content::fsck::Check;
use bindings::kist::content::ingester::{self, Writer};
use bindings::kist::content::types::{Error, Label};

/// Bytes handed to the store per `write`.
const CHUNK: usize = 1 << 20;
/// The label that records a blob's file name (as in OCI image layouts).
const TITLE: &str = "org.opencontainers.image.title";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["import", dir] => import(dir),
        ["verify"] => verify(),
        _ => Err("usage: kist-import import DIR | kist-import verify".into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kist-import: {e}");
            ExitCode::from(2)
        }
    }
}

/// Stores every regular file of `dir` and prints its digest and name.
fn import(dir: &str) -> Result<ExitCode, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for name in files {
        let digest = store_file(&format!("{dir}/{name}"), &name)?;
        println!("{digest} {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams one file into the store through a writer; content the store
/// already has counts as stored.
fn store_file(path: &str, name: &str) -> Result<String, String> {
    let fail = |e: Error| format!("{path}: {e:?}");
    let mut file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let options = ingester::WriterOptions {
        expected_size: None,
        expected: None,
        labels: Vec::new(),
        holder: None,
    };
    let writer: Writer =
        ingester::open_writer(&format!("kist-import:{name}"), &options).map_err(fail)?;
    let mut buf = vec![0; CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(|e| format!("{path}: {e}"))?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).map_err(fail)?;
    }
    let digest = writer.digest();
    let labels = [Label {
        key: TITLE.into(),
        value: name.into(),
    }];
    match Writer::commit(writer, None, Some(&digest), &labels) {
        Ok(_) | Err(Error::AlreadyExists) => Ok(digest),
        Err(e) => Err(fail(e)),
    }
}

/// Runs the store's check to the end and prints every problem.
fn verify() -> Result<ExitCode, String> {
    let check = Check::new(false);
    let mut problems = 0;
    while let Some(found) = check.next().map_err(|e| format!("{e:?}"))? {
        for p in found {
            println!("{:?} {}: {}", p.kind, p.path, p.detail);
            problems += 1;
        }
    }
    let (entries, bytes) = check.progress();
    println!("{problems} problems in {entries} entries, {bytes} bytes hashed");
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
