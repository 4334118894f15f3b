//! The names the registry accepts: repositories and tags (the
//! distribution spec's grammar), upload ids, and the holder and ingest
//! ref each becomes.

use crate::retention::holds::REGISTRY;
use crate::shared::digest::Digest;
use crate::shared::error;

/// A repository name's length limit: distribution's (and docker's).
const MAX_REPOSITORY: usize = 255;
/// An upload id's length limit.
const MAX_UPLOAD_ID: usize = 128;

/// A name the registry refused: the case of `registry-error` it maps to.
pub enum Refused {
    Name(String),
    Tag(String),
    Digest(String),
    Upload,
}

/// Checks a repository name against the spec's grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn repository(name: &str) -> Result<(), Refused> {
    let refused = |why: &str| Refused::Name(format!("repository {name:?}: {why}"));
    if name.is_empty() || name.len() > MAX_REPOSITORY {
        return Err(refused("1 to 255 characters"));
    }
    for component in name.split('/') {
        if !path_component(component) {
            return Err(refused(
                "each /-separated part is lower-case letters and digits, joined by '.', '_', '__' or dashes",
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(*first) || !alnum(*last) {
        return false;
    }
    // Separators between alphanumeric runs: '.', '_', '__' or '-'+.
    bytes
        .split(|b| alnum(*b))
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|b| *b == b'-'))
}

/// Checks a tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn tag(tag: &str) -> Result<(), Refused> {
    let ok = tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && matches!(b, b'.' | b'-'))
        })
        && !tag.is_empty();
    if ok {
        Ok(())
    } else {
        Err(Refused::Tag(format!(
            "tag {tag:?}: 1 to 128 of [a-zA-Z0-9_.-], not starting with '.' or '-'"
        )))
    }
}

/// A digest as the registry takes it.
pub fn digest(d: &str) -> Result<Digest, Refused> {
    Digest::parse(d).map_err(|e| Refused::Digest(error::message(&e)))
}

/// Checks an upload id: 1 to 128 of `[A-Za-z0-9_-]`.
pub fn upload_id(id: &str) -> Result<(), Refused> {
    let ok = !id.is_empty()
        && id.len() <= MAX_UPLOAD_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok { Ok(()) } else { Err(Refused::Upload) }
}

/// The holder a repository holds with.
pub fn holder(repository: &str) -> String {
    format!("{REGISTRY}{repository}")
}

/// The ref of the ingest behind an upload.
pub fn upload_ref(repository: &str, id: &str) -> String {
    format!("registry-upload/{repository}/{id}")
}

/// The name of a tag in `index.json`.
pub fn tag_name(repository: &str, tag: &str) -> String {
    format!("{repository}:{tag}")
}

/// The tag of `repository` an `index.json` name is, if it is one.
pub fn tag_of<'a>(name: &'a str, repository: &str) -> Option<&'a str> {
    name.strip_prefix(repository)?.strip_prefix(':')
}
