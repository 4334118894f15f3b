//! `registry/repositories/<name>`: one empty file per repository anything
//! was ever pushed to (`/` in the name written as `+`, which names never
//! contain), so the catalog is one sorted directory listing.
//!
//! On a bucket store each repository also has an empty object
//! `repositories/<name>`, written before the node's own file: the catalog
//! of every node lists a repository pushed through any of them, one
//! listing request per 1,000 names.

use crate::shared::bucket;
use crate::shared::error::Result;
use crate::shared::fs::{self, Durability};

/// Where the bucket's markers are.
const SHARED: &str = "repositories";

const DIR: &str = "registry/repositories";

/// The marker file's name of `repository`.
fn file_name(repository: &str) -> String {
    repository.replace('/', "+")
}

/// Notes that `repository` exists.
pub fn note(repository: &str) -> Result<()> {
    if exists_here(repository)? {
        return Ok(());
    }
    bucket::put_new(&shared_key(repository), b"")?;
    fs::mkdir("registry")?;
    fs::mkdir(DIR)?;
    match fs::write_atomic(DIR, &file_name(repository), b"", Durability::Synced) {
        // Two first pushes at once share the temporary name: one wins.
        Err(_) if exists_here(repository)? => Ok(()),
        other => other,
    }
}

/// The bucket's marker of `repository`.
fn shared_key(repository: &str) -> String {
    format!("{SHARED}/{}", file_name(repository))
}

/// Whether this node noted `repository`.
fn exists_here(repository: &str) -> Result<bool> {
    Ok(fs::stat(&format!("{DIR}/{}", file_name(repository)))?.is_some())
}

/// Whether `repository` exists, on this node or (on a bucket store) any.
pub fn exists(repository: &str) -> Result<bool> {
    Ok(exists_here(repository)? || bucket::size(&shared_key(repository))?.is_some())
}

/// Every repository, on this node or any other of its bucket, sorted.
pub fn all() -> Result<Vec<String>> {
    let here = fs::list_dir(DIR)?
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with('.'));
    let start = SHARED.len() + 1;
    let shared = bucket::keys(SHARED)?
        .into_iter()
        .map(|k| k[start..].to_owned());
    let names: std::collections::BTreeSet<String> =
        here.chain(shared).map(|n| n.replace('+', "/")).collect();
    Ok(names.into_iter().collect())
}
