//! Archives: `kist artifact archive` (and the library's `Storer::archive`)
//! of a file tree against GNU `tar czf` of the same tree; the portable
//! component must make the very same bytes (its digest is checked).

use std::path::Path;
use std::process::Command;

use crate::big::Seeded;
use crate::measure::{Contender, interleave, time};
use crate::report::{Report, Unit};
use crate::tools::{Tools, timed};

/// Writes `size` bytes of text-like files (a few thousand words in random
/// order: they compress about 3:1, as source trees do) under `dir`, in
/// directories of 64 files.
fn text_tree(dir: &Path, size: u64, file_size: usize) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut random = Seeded::new(7);
    let words: Vec<Vec<u8>> = (0..4096)
        .map(|_| {
            let len = 2 + (random.bytes(1)[0] % 10) as usize;
            random.bytes(len).iter().map(|b| b'a' + b % 26).collect()
        })
        .collect();
    for i in 0..size.div_ceil(file_size as u64) {
        let sub = dir.join(format!("d{:03}", i / 64));
        std::fs::create_dir_all(&sub)?;
        let mut text = Vec::with_capacity(file_size + 16);
        while text.len() < file_size {
            let pick = u16::from_le_bytes(random.bytes(2).try_into().expect("2 bytes"));
            text.extend_from_slice(&words[usize::from(pick) % words.len()]);
            text.push(if pick % 13 == 0 { b'\n' } else { b' ' });
        }
        text.truncate(file_size);
        std::fs::write(sub.join(format!("f{i:05}.txt")), text)?;
    }
    Ok(())
}

pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    size: u64,
    reps: usize,
) -> anyhow::Result<()> {
    let tree = work.join("archive-tree");
    text_tree(&tree, size, 128 << 10)?;
    let out = work.join("archive.tar.gz");
    let cli_dir = work.join("archive-cli");
    let store = kist::Store::open(work.join("archive-lib"))?;
    let portable = kist::Store::builder(work.join("archive-portable"))
        .component(kist::components::PORTABLE)
        .open()?;
    let options = kist::ArchiveOptions::default();
    let native = store.storer().archive(&tree, &options)?;
    let wasm = portable.storer().archive(&tree, &options)?;
    anyhow::ensure!(
        native == wasm,
        "the portable component archived to {wasm:?}, the native host to {native:?}"
    );
    let archive = |s: &kist::Store| time(|| Ok(s.storer().archive(&tree, &options).map(drop)?));
    let contenders = vec![
        Contender::new("tar czf (GNU tar, gzip -6)", |_| {
            let d = timed(
                Command::new("tar")
                    .arg("czf")
                    .arg(&out)
                    .arg("-C")
                    .arg(&tree)
                    .arg("."),
                None,
            );
            std::fs::remove_file(&out)?;
            d
        }),
        Contender::new("kist library (Storer::archive)", |_| archive(&store)),
        Contender::new("kist artifact archive (CLI)", |rep| {
            timed(
                tools
                    .kist(&cli_dir)
                    .args(["artifact", "archive", "--kind", "Bucket"])
                    .args(["--namespace", "ns", "--name", "b"])
                    .args(["--revision", &format!("r{rep}")])
                    .arg(&tree),
                None,
            )
        }),
        Contender::new("kist library, portable component (gzip in wasm)", |_| {
            archive(&portable)
        }),
    ];
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!(
            "Archive of a {} MiB tree of text files (.tar.gz)",
            size >> 20
        ),
        Unit::Bytes(size),
        &samples,
    );
    report.note(&format!(
        "Native host and portable component made the same archive: {} ({} bytes).",
        native.0, native.1
    ));
    Ok(())
}
