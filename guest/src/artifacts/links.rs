//! Where a path in a tree leads once its symlinks are followed, decided
//! against the tree's own links (on disk for an archive, in the archive
//! for an extraction), never by reading what a link points at on the host.
//!
//! Looking at a link's text alone is not enough: with `l -> .`, the link
//! `m -> l/..` reads as one level deep but leads to the tree's parent.

use crate::shared::error::{Result, invalid};

/// Most links followed while resolving one path (Linux's limit).
const MAX_HOPS: usize = 40;

/// The symlinks of a tree.
pub trait Links {
    /// The target of the symlink at `path` (relative to the tree's root,
    /// no `.` or `..` in it), or `None` if `path` is not a symlink.
    fn target(&mut self, path: &str) -> Result<Option<String>>;
}

/// The path `path` leads to inside the tree, every symlink among its
/// components followed (the last one too when `follow_last`); `None` if
/// it leads outside the tree (through `..` above the root or an absolute
/// link). Fails on a loop of links.
pub fn resolve(links: &mut impl Links, path: &str, follow_last: bool) -> Result<Option<String>> {
    if path.starts_with('/') {
        return Ok(None);
    }
    let mut at: Vec<String> = Vec::new();
    let mut pending: Vec<String> = parts(path);
    pending.reverse();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if at.pop().is_none() {
                return Ok(None);
            }
            continue;
        }
        let here = if at.is_empty() {
            part.clone()
        } else {
            format!("{}/{part}", at.join("/"))
        };
        let last = pending.is_empty();
        match (!last || follow_last)
            .then(|| links.target(&here))
            .transpose()?
        {
            Some(Some(target)) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(invalid(format!(
                        "{path}: too many levels of symbolic links"
                    )));
                }
                if target.starts_with('/') {
                    return Ok(None);
                }
                // The target replaces the link, relative to its directory.
                pending.extend(parts(&target).into_iter().rev());
            }
            _ => at.push(part),
        }
    }
    Ok(Some(at.join("/")))
}

/// Whether a symlink at `path` with `target` leads outside the tree.
pub fn escapes(links: &mut impl Links, path: &str, target: &str) -> Result<bool> {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let joined = if dir.is_empty() {
        target.to_owned()
    } else {
        format!("{dir}/{target}")
    };
    Ok(target.starts_with('/') || resolve(links, &joined, true)?.is_none())
}

/// The components of `path` without empty ones and `.`.
fn parts(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_owned)
        .collect()
}
