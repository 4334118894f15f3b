//! Large blobs: ingest and read back a random file, kist against the
//! native limit, `cat` and containerd.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::measure::{Contender, interleave, time};
use crate::report::{Report, Unit};
use crate::tools::{Tools, timed};
use crate::{limit, native};

/// Writes `size` pseudo-random bytes to `path` (kept between runs).
pub fn random_file(path: &Path, size: u64) -> anyhow::Result<()> {
    if path.metadata().is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    seeded_file(path, size, size)
}

/// Pseudo-random bytes (xorshift64) from a seed: incompressible, cheap.
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Self((0x9e37_79b9_7f4a_7c15 ^ seed) | 1)
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            let x = &mut self.0;
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
    }

    /// `len` next bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
    }
}

/// Writes `size` pseudo-random bytes from `seed` to `path`.
pub fn seeded_file(path: &Path, size: u64, seed: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(File::create(path)?);
    let mut random = Seeded::new(seed);
    let mut chunk = vec![0u8; native::CHUNK];
    for _ in 0..size.div_ceil(native::CHUNK as u64) {
        random.fill(&mut chunk);
        out.write_all(&chunk)?;
    }
    drop(out);
    File::options().write(true).open(path)?.set_len(size)?;
    Ok(())
}

/// Makes the next run's content unique (so no contender can short-cut an
/// existing blob) without rewriting the file.
fn stamp(src: &Path, n: &Cell<u64>) -> anyhow::Result<()> {
    n.set(n.get() + 1);
    File::options()
        .write(true)
        .open(src)?
        .write_at(&n.get().to_le_bytes(), 0)?;
    Ok(())
}

/// Ingest then read back `size` bytes, `reps` times per contender.
pub fn run(
    report: &mut Report,
    tools: &Tools,
    work: &Path,
    size: u64,
    reps: usize,
) -> anyhow::Result<()> {
    let label = human(size);
    let src = work.join(format!("src-{label}"));
    random_file(&src, size)?;
    let dir = |name: &str| -> anyhow::Result<PathBuf> {
        let d = work.join(format!("{name}-{label}"));
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let (native_dir, cli_dir) = (dir("native")?, dir("cli")?);
    let store = kist::Store::open(dir("lib")?)?;
    // The same store logic with pure-wasm hashing and lock files: what a
    // host without kist's native capabilities gets.
    let portable = kist::Store::builder(dir("portable")?)
        .component(kist::components::PORTABLE)
        .open()?;
    // The library's store again, writing through the page cache.
    let buffered = kist::Store::builder(dir("lib")?).direct_io(false).open()?;
    // The CLI's store, opened to discard what each repetition stored.
    let cli_store = kist::Store::open(&cli_dir)?;
    for s in [&store, &portable, &cli_store] {
        collect_at_once(s)?;
    }
    // Through the component: every chunk crosses as a `list<u8>` (the
    // path of streams: stdin, the registry's and containerd's writers).
    let stream = |store: &kist::Store, rep: usize| -> anyhow::Result<String> {
        let mut w = store.writer(&format!("stream-{rep}"), Some(size), None)?;
        std::io::copy(
            &mut File::open(&src)?,
            &mut std::io::BufWriter::with_capacity(native::CHUNK, &mut w),
        )?;
        Ok(w.commit(None, None, &[])?)
    };
    // The host copies the file itself (`Writer::write_from_file`).
    let copy = |store: &kist::Store, rep: usize| -> anyhow::Result<String> {
        let mut w = store.writer(&format!("copy-{rep}"), Some(size), None)?;
        w.write_from_file(&File::open(&src)?, 0, size)?;
        Ok(w.commit(None, None, &[])?)
    };
    let counter = Cell::new(0);
    // One ingest into `store` by `ingest`, timed; its blob is discarded.
    let once = |store: &kist::Store,
                ingest: &dyn Fn() -> anyhow::Result<String>|
     -> anyhow::Result<std::time::Duration> {
        stamp(&src, &counter)?;
        let mut digest = String::new();
        let d = time(|| {
            digest = ingest()?;
            Ok(())
        })?;
        discard(store, &digest)?;
        Ok(d)
    };
    // The last blob each contender wrote, for the read benchmark.
    let native_blob = RefCell::new(String::new());
    let lib_blob = RefCell::new(String::new());
    let cli_blob = RefCell::new(String::new());
    let ctr_blob = RefCell::new(String::new());

    let mut contenders = vec![
        Contender::new(
            "native Rust (sha2 + write + fsync + rename, 1 thread)",
            |_| {
                stamp(&src, &counter)?;
                remove_blob_file(&native_dir, &native_blob.borrow())?;
                time(|| {
                    *native_blob.borrow_mut() = native::ingest(&src, &native_dir)?;
                    Ok(())
                })
            },
        ),
        Contender::new("kist library (Writer::write_from_file)", |rep| {
            stamp(&src, &counter)?;
            discard(&store, &lib_blob.borrow())?;
            time(|| {
                *lib_blob.borrow_mut() = copy(&store, rep)?;
                Ok(())
            })
        }),
        Contender::new(
            "kist library, direct_io(false) (Writer::write_from_file)",
            |rep| once(&buffered, &|| copy(&buffered, rep)),
        ),
        Contender::new("kist library, streamed (Writer + io::copy)", |rep| {
            once(&store, &|| stream(&store, rep))
        }),
        Contender::new(
            "kist library, portable component (wasm sha2, write_from_file)",
            |rep| once(&portable, &|| copy(&portable, rep)),
        ),
        Contender::new("kist ingest FILE (CLI)", |_| {
            stamp(&src, &counter)?;
            discard(&cli_store, &cli_blob.borrow())?;
            let d = timed(tools.kist(&cli_dir).arg("ingest").arg(&src), None)?;
            *cli_blob.borrow_mut() = native::sha256_file(&src)?;
            Ok(d)
        }),
        Contender::new("kist ingest < FILE (CLI, stdin streamed)", |_| {
            stamp(&src, &counter)?;
            let d = timed(tools.kist(&cli_dir).arg("ingest"), Some(&src))?;
            discard(&cli_store, &native::sha256_file(&src)?)?;
            Ok(d)
        }),
    ];
    contenders.extend(limit::contenders(&src, &native_dir));
    if tools.ctr().is_some() {
        contenders.push(Contender::new("containerd (ctr content ingest)", |rep| {
            stamp(&src, &counter)?;
            let args = [
                "content",
                "ingest",
                "--expected-size",
                &size.to_string(),
                &format!("bench-{label}-{rep}"),
            ];
            let d = timed(tools.ctr().expect("containerd runs").args(args), Some(&src))?;
            *ctr_blob.borrow_mut() = native::sha256_file(&src)?;
            Ok(d)
        }));
    }
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!("Ingest of a {label} random file"),
        Unit::Bytes(size),
        &samples,
    );
    limit::report(report, &samples);

    let mut contenders = vec![
        Contender::new("cat > /dev/null", |_| {
            timed(
                std::process::Command::new("cat").arg(native_dir.join(&*native_blob.borrow())),
                None,
            )
        }),
        Contender::new("kist library (Reader::copy_to)", |_| {
            time(|| {
                store
                    .reader(&lib_blob.borrow())?
                    .copy_to(&mut std::io::sink())?;
                Ok(())
            })
        }),
        Contender::new("kist get > /dev/null (CLI, verifies)", |_| {
            timed(tools.kist(&cli_dir).args(["get", &cli_blob.borrow()]), None)
        }),
        Contender::new("kist get --no-verify > /dev/null (CLI)", |_| {
            timed(
                tools
                    .kist(&cli_dir)
                    .args(["get", "--no-verify", &cli_blob.borrow()]),
                None,
            )
        }),
    ];
    if tools.ctr().is_some() {
        contenders.push(Contender::new("containerd (ctr content get)", |_| {
            timed(
                tools
                    .ctr()
                    .expect("containerd runs")
                    .args(["content", "get", &ctr_blob.borrow()]),
                None,
            )
        }));
    }
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!("Read of the {label} blob (page cache warm)"),
        Unit::Bytes(size),
        &samples,
    );

    // The verified read of a blob `store` ingested just before.
    let read_after = |store: &kist::Store, rep: usize| {
        stamp(&src, &counter)?;
        let digest = copy(store, reps + rep)?;
        let d = time(|| {
            store
                .reader(&digest)?
                .copy_verified_to(&mut std::io::sink())?;
            Ok(())
        });
        discard(store, &digest)?;
        d
    };
    // Right after its ingest a blob kist wrote with direct I/O is not in
    // the page cache, where a buffered write leaves it: what that costs.
    let contenders = vec![
        Contender::new("native: buffered write + fsync, then read", |_| {
            stamp(&src, &counter)?;
            let blob = native::ingest(&src, &native_dir)?;
            let d = time(|| native::sha256_file(&native_dir.join(&blob)).map(drop));
            remove_blob_file(&native_dir, &blob)?;
            d
        }),
        Contender::new(
            "kist: write_from_file, then Reader::copy_verified_to",
            |rep| read_after(&store, rep),
        ),
        Contender::new(
            "kist, direct_io(false): write_from_file, then Reader::copy_verified_to",
            |rep| read_after(&buffered, rep),
        ),
    ];
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!("Read of a {label} blob right after its ingest"),
        Unit::Bytes(size),
        &samples,
    );
    Ok(())
}

/// Makes the store remove released blobs at the next collection.
fn collect_at_once(store: &kist::Store) -> anyhow::Result<()> {
    let retention = store.retention();
    let mut settings = retention.settings()?;
    settings.cache_ttl_seconds = 0;
    Ok(retention.set_settings(settings)?)
}

/// Releases `digest` (if any) and collects it: the disk does not fill up
/// with every repetition's gigabyte.
fn discard(store: &kist::Store, digest: &str) -> anyhow::Result<()> {
    if digest.is_empty() {
        return Ok(());
    }
    store.delete(digest)?;
    for step in store.retention().collect(false)? {
        step?;
    }
    Ok(())
}

/// Removes the native contender's blob `hex` (if any) from `dir`.
fn remove_blob_file(dir: &Path, hex: &str) -> anyhow::Result<()> {
    if !hex.is_empty() {
        std::fs::remove_file(dir.join(hex))?;
    }
    Ok(())
}

pub fn human(size: u64) -> String {
    if size >= 1 << 30 {
        format!("{} GiB", size >> 30)
    } else {
        format!("{} MiB", size >> 20)
    }
}
