//! `registry/repositories/<name>`: one empty file per repository anything
//! was ever pushed to (`/` in the name written as `+`, which names never
//! contain), so the catalog is one sorted directory listing.

use crate::shared::error::Result;
use crate::shared::fs::{self, Durability};

const DIR: &str = "registry/repositories";

/// The marker file's name of `repository`.
fn file_name(repository: &str) -> String {
    repository.replace('/', "+")
}

/// Notes that `repository` exists.
pub fn note(repository: &str) -> Result<()> {
    if exists(repository)? {
        return Ok(());
    }
    fs::mkdir("registry")?;
    fs::mkdir(DIR)?;
    match fs::write_atomic(DIR, &file_name(repository), b"", Durability::Synced) {
        // Two first pushes at once share the temporary name: one wins.
        Err(_) if exists(repository)? => Ok(()),
        other => other,
    }
}

/// Whether `repository` exists.
pub fn exists(repository: &str) -> Result<bool> {
    Ok(fs::stat(&format!("{DIR}/{}", file_name(repository)))?.is_some())
}

/// Every repository, sorted.
pub fn all() -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::list_dir(DIR)?
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| !n.starts_with('.'))
        .map(|(n, _)| n.replace('+', "/"))
        .collect();
    names.sort();
    Ok(names)
}
