//! Many small blobs: write rate, then read-and-verify rate, kist against
//! native loops and the `cacache` crate.

use std::cell::RefCell;
use std::path::Path;

use kist::{Durability, PutRequest};

use crate::measure::{Contender, interleave, time};
use crate::native;
use crate::report::{Report, Unit};

/// Size of each small blob.
const SIZE: usize = 4096;

/// `count` distinct blobs for repetition `rep` of contender `who`.
fn blobs(count: usize, who: u8, rep: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut b = vec![who; SIZE];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            b[8..16].copy_from_slice(&(rep as u64).to_le_bytes());
            b
        })
        .collect()
}

/// Times one `put_batch` of `data` and checks every blob was stored.
fn put_batch(
    store: &kist::Store,
    data: Vec<Vec<u8>>,
    durability: Durability,
) -> anyhow::Result<std::time::Duration> {
    let requests: Vec<PutRequest> = data
        .into_iter()
        .map(|data| PutRequest {
            data,
            expected: None,
            labels: Vec::new(),
            holder: None,
        })
        .collect();
    time(|| {
        for result in store.put_batch(&requests, durability)? {
            result?;
        }
        Ok(())
    })
}

pub fn run(report: &mut Report, work: &Path, count: usize, reps: usize) -> anyhow::Result<()> {
    let dir = |name: &str| -> anyhow::Result<std::path::PathBuf> {
        let d = work.join(format!("small-{name}"));
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let (fsync_dir, nosync_dir, cacache_dir) = (
        dir("native-fsync")?,
        dir("native-nofsync")?,
        dir("cacache")?,
    );
    let store = kist::Store::open(dir("kist")?)?;
    let written: RefCell<Vec<(&str, Vec<String>)>> = RefCell::default();
    let keep = |who: &'static str, names: Vec<String>| written.borrow_mut().push((who, names));
    let contenders = vec![
        Contender::new(
            "native loop, fsync (write + fsync + rename + dir fsync)",
            |rep| {
                let data = blobs(count, 1, rep);
                let mut names = Vec::new();
                let t = time(|| {
                    for b in &data {
                        names.push(native::put(&fsync_dir, b, true)?);
                    }
                    Ok(())
                })?;
                keep("native-fsync", names);
                Ok(t)
            },
        ),
        Contender::new("kist library, durable (Store::put)", |rep| {
            let data = blobs(count, 2, rep);
            let mut names = Vec::new();
            let t = time(|| {
                for b in &data {
                    names.push(store.put(b)?);
                }
                Ok(())
            })?;
            keep("kist", names);
            Ok(t)
        }),
        Contender::new(
            "kist library, durable batch (Store::put_batch, Synced)",
            |rep| put_batch(&store, blobs(count, 5, rep), Durability::Synced),
        ),
        Contender::new("native loop, no fsync (write + rename)", |rep| {
            let data = blobs(count, 3, rep);
            time(|| {
                data.iter()
                    .try_for_each(|b| native::put(&nosync_dir, b, false).map(drop))
            })
        }),
        Contender::new("kist library, no fsync (Store::put_batch, Cached)", |rep| {
            put_batch(&store, blobs(count, 6, rep), Durability::Cached)
        }),
        Contender::new("cacache (write_hash_sync)", |rep| {
            let data = blobs(count, 4, rep);
            let mut names = Vec::new();
            let t = time(|| {
                for b in &data {
                    names.push(cacache::write_hash_sync(&cacache_dir, b)?.to_string());
                }
                Ok(())
            })?;
            keep("cacache", names);
            Ok(t)
        }),
    ];
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!("Write {count} blobs of 4 KiB"),
        Unit::Ops(count as u64),
        &samples,
    );

    let written = written.into_inner();
    let names = |who: &str| {
        written
            .iter()
            .rev()
            .find(|(w, _)| *w == who)
            .map(|(_, n)| n.clone())
            .expect("written")
    };
    let (native_names, kist_names, cacache_names) =
        (names("native-fsync"), names("kist"), names("cacache"));
    let contenders = vec![
        Contender::new("native (read + sha256)", |_| {
            time(|| {
                native_names
                    .iter()
                    .try_for_each(|h| native::read_verified(&fsync_dir, h))
            })
        }),
        // Store::get checks the bytes against the digest itself.
        Contender::new("kist library (Store::get, verifies)", |_| {
            time(|| {
                for d in &kist_names {
                    store.get(d)?;
                }
                Ok(())
            })
        }),
        Contender::new("cacache (read_hash_sync, verifies)", |_| {
            time(|| {
                for sri in &cacache_names {
                    cacache::read_hash_sync(&cacache_dir, &sri.parse()?)?;
                }
                Ok(())
            })
        }),
    ];
    let samples = interleave(reps, contenders)?;
    report.section(
        &format!("Read and verify {count} blobs of 4 KiB"),
        Unit::Ops(count as u64),
        &samples,
    );
    Ok(())
}
