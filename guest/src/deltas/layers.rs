//! What the `snapshots` and `registry` interfaces offer for delta pulls:
//! a stored layer's tree, the pack of what a node lacks to rebuild it,
//! and a layer applied from a tree, a pack and base snapshots. The
//! callers check who may see what; this does the work.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use crate::bindings::exports::kist::content::types::LayerTree;
use crate::content::gzipped::Gzipped;
use crate::content::new_blob::{NewBlob, from_io};
use crate::deltas::pack::{self, BaseFiles, PackReader};
use crate::deltas::rebuild::Rebuilt;
use crate::deltas::tree::{MAX_DECODED, Tree};
use crate::deltas::{derived, split};
use crate::shared::digest::{Digest, key_of};
use crate::shared::error::{Result, invalid};
use crate::snapshots::apply::{clean, unpack};
use crate::snapshots::inflated::Inflated;
use crate::snapshots::records::{self, Lookup, State};
use crate::snapshots::tree as snapshot_tree;

/// gzip level of trees (mostly tar headers: they shrink tenfold).
const TREE_LEVEL: u8 = 9;

/// The tree of the stored layer `blob`, computed once and then kept (see
/// [`derived`]).
pub fn tree_of(blob: &Digest, media_type: &str) -> Result<(LayerTree, Tree)> {
    let mut made = None;
    let (digest, size) = derived::get("trees", &tree_key(blob), |out| {
        let tree = split::split(blob, media_type)?;
        write_tree(&tree, out)?;
        made = Some(tree);
        Ok(())
    })?;
    let tree = match made {
        Some(tree) => tree,
        None => load(&digest)?,
    };
    let info = LayerTree {
        tree: digest.to_string(),
        size,
        diff_id: tree.diff_id.to_string(),
        files: tree.files().count() as u64,
        file_bytes: tree.files().map(|f| f.size).sum(),
    };
    Ok((info, tree))
}

/// Keeps `tree`, made while the stored layer `blob` was applied, as its
/// tree (unless one is kept already).
pub fn keep_tree(blob: &Digest, tree: Tree) -> Result<()> {
    derived::get("trees", &tree_key(blob), |out| write_tree(&tree, out)).map(drop)
}

/// The name of `blob`'s tree among the derived blobs.
fn tree_key(blob: &Digest) -> String {
    format!(
        "{}-{}",
        crate::shared::digest::name(blob.algorithm),
        blob.hex
    )
}

fn write_tree(tree: &Tree, out: &mut NewBlob) -> Result<()> {
    let mut gz = Gzipped::new(TREE_LEVEL, out);
    gz.write_all(&tree.encode())
        .and_then(|()| gz.finish().map(drop))
        .map_err(|e| from_io(e, "tree"))
}

/// The stored tree blob `d`, decoded.
pub fn load(d: &Digest) -> Result<Tree> {
    let mut bytes = Vec::new();
    Inflated::gzipped(d)
        .take(MAX_DECODED + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| from_io(e, &d.to_string()))?;
    if bytes.len() as u64 > MAX_DECODED {
        return Err(invalid(format!(
            "{d}: a layer tree is at most {MAX_DECODED} bytes"
        )));
    }
    Tree::decode(&bytes)
}

/// The pack of the files of the stored layer `blob` that the stored
/// layers `bases` do not have; computed once per pair, then kept.
/// Returns its digest and size.
pub fn pack_of(blob: &Digest, media_type: &str, bases: &[Digest]) -> Result<(Digest, u64)> {
    let mut names: Vec<String> = bases.iter().map(Digest::to_string).collect();
    names.sort();
    names.dedup();
    // The format is part of the key: a pack an older format made is not
    // served.
    let magic = String::from_utf8_lossy(pack::MAGIC);
    let key = key_of(&format!("{magic}{blob}\n{}", names.join("\n")));
    derived::get("packs", &key, |out: &mut NewBlob| {
        let (_, tree) = tree_of(blob, media_type)?;
        let mut trees = Vec::new();
        let mut have = HashSet::new();
        for base in bases {
            let (_, base_tree) = tree_of(base, "")?;
            have.extend(base_tree.files().map(|f| f.sha256));
            trees.push((base, base_tree));
        }
        // The files sent whose path a base has too: deltas against those.
        let sent: HashSet<&[u8]> = tree
            .files()
            .filter(|f| !have.contains(&f.sha256))
            .map(|f| f.path.as_slice())
            .collect();
        let (mut base_files, mut used) = (BaseFiles::new(), 0);
        for (base, base_tree) in &trees {
            if base_tree.files().any(|f| sent.contains(f.path.as_slice())) {
                pack::base_files(base, base_tree, &sent, &mut used, &mut base_files)?;
            }
        }
        pack::write(blob, media_type, &tree, &have, &base_files, out).map(drop)
    })
}

/// Unpacks into the active snapshot `key` the layer whose tar has digest
/// `diff_id` and tree `tree` (a stored blob), its files from the stored
/// pack `pack` and the committed snapshots `bases` (each with the tree
/// of the layer it was made from). Returns the diff id, checked.
pub fn apply(
    key: &str,
    diff_id: &Digest,
    tree: &Digest,
    pack: Option<&Digest>,
    bases: &[(String, Digest)],
    max_size: u64,
) -> Result<Digest> {
    let decoded = load(tree)?;
    if decoded.diff_id != *diff_id {
        return Err(invalid(format!(
            "tree {tree} is of the layer {}, not {diff_id}",
            decoded.diff_id
        )));
    }
    let all = records::current()?;
    let mut files = HashMap::new();
    for (base, base_tree) in bases {
        let record = all.record(base)?;
        if record.kind != State::Committed {
            return Err(invalid(format!(
                "base {base:?} is not a committed snapshot"
            )));
        }
        let root = snapshot_tree::fs_path(record.id);
        for f in load(base_tree)?.files() {
            if let Ok(rel) = clean(&f.path) {
                files
                    .entry(f.sha256)
                    .or_insert_with(|| format!("{root}/{rel}"));
            }
        }
    }
    let pack = pack.map(PackReader::open).transpose()?;
    unpack(key, max_size, Some(diff_id), None, |staging| {
        Ok(Rebuilt::new(
            format!("tree {tree}"),
            decoded,
            pack,
            files,
            staging,
        ))
    })
}
