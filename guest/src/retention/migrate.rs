//! Holds for a store laid out before holds existed (kist 0.1). Every blob
//! of such a store was stored by someone (`default`), except those the
//! storer created for artifacts, marked with the label
//! `kist.storer/managed`: their artifacts hold them now, and the mark
//! goes. Built in `holds.new/` and renamed into place at the end, so a
//! crash midway leaves the store as it was and the next open starts over.

use std::collections::{BTreeMap, BTreeSet};

use crate::artifacts::records;
use crate::content::{labels, store};
use crate::retention::holds::{self, ARTIFACT, DEFAULT, Record};
use crate::shared::digest::{self, ALGORITHMS, Digest};
use crate::shared::error::Result;
use crate::shared::fs::{self, Durability};
use crate::shared::layout::HOLDS;

/// The label kist 0.1's storer put on the blobs it created.
const MANAGED: &str = "kist.storer/managed";
/// Where the records are built.
const BUILDING: &str = "holds.new";

/// Lays out `holds/` for the store as it is; returns the blobs whose mark
/// is to go (see [`unmark`]). The caller holds the layout lock.
pub fn holds() -> Result<Vec<Digest>> {
    fs::remove_tree(BUILDING)?;
    fs::mkdir(BUILDING)?;
    for alg in ALGORITHMS {
        fs::mkdir(&format!("{BUILDING}/{}", digest::name(alg)))?;
    }
    // What artifacts hold.
    let mut held: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (place, _) in records::objects()? {
        for (file, record) in place.files()? {
            let holder = format!("{ARTIFACT}{}/{file}", place.key);
            held.entry(record.digest).or_default().insert(holder);
        }
    }
    // What the storer created.
    let mut managed = Vec::new();
    for alg in ALGORITHMS {
        for hex in labels::labelled(alg)? {
            let d = Digest {
                algorithm: alg,
                hex,
            };
            let marked = labels::load(&d).is_ok_and(|l| l.any_has(MANAGED));
            if marked && fs::stat(&d.blob_path())?.is_some() {
                managed.push(d);
            }
        }
    }
    let now = holds::now();
    let write = |d: &Digest, record: &Record| {
        let bytes = serde_json::to_vec(record).expect("records serialise");
        let dir = format!("{BUILDING}/{}", digest::name(d.algorithm));
        fs::write_atomic(&dir, &d.hex, &bytes, Durability::Cached)
    };
    for d in &managed {
        let holders = held.remove(&d.to_string()).unwrap_or_default();
        let released = holders.is_empty();
        write(
            d,
            &Record {
                holders,
                released: released.then_some(now),
                released_by: if released {
                    BTreeSet::from(["artifact/".to_owned()])
                } else {
                    BTreeSet::new()
                },
                ..Record::default()
            },
        )?;
    }
    // Blobs someone stored that artifacts point at too.
    for (d, mut holders) in held {
        let Ok(d) = Digest::parse(&d) else {
            continue;
        };
        if fs::stat(&d.blob_path())?.is_some() {
            holders.insert(DEFAULT.to_owned());
            write(
                &d,
                &Record {
                    holders,
                    ..Record::default()
                },
            )?;
        }
    }
    for alg in ALGORITHMS {
        fs::sync_dir(&format!("{BUILDING}/{}", digest::name(alg)))?;
    }
    fs::rename(BUILDING, HOLDS)?;
    fs::sync_dir(".")?;
    Ok(managed)
}

/// Removes the storer's marks, which nothing reads any more (a crash
/// before this leaves some: labels nobody needs). Takes blob locks: call
/// it without holding another.
pub fn unmark(managed: Vec<Digest>) -> Result<()> {
    for d in managed {
        let _lock = store::lock_blob(&d)?;
        if let Ok(mut l) = labels::load(&d)
            && l.remove_everywhere(MANAGED)
        {
            labels::save(&d, &l, Durability::Synced)?;
        }
    }
    Ok(())
}
