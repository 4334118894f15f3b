//! What a registry client may do in a repository: the grants the host
//! passes with its identity (from an access policy or a token), decided
//! here so that every front end is held to them.

use crate::bindings::kist::content::caller::{Actions, Grant};

/// The actions `grants` allow in `repository`: those of the grant with
/// the longest pattern that matches it (as zot's access control), none if
/// no pattern does.
pub fn allowed(grants: &[Grant], repository: &str) -> Actions {
    grants
        .iter()
        .filter(|g| matches(g.pattern.as_bytes(), repository.as_bytes()))
        .max_by_key(|g| g.pattern.len())
        .map_or(Actions::empty(), |g| g.actions)
}

/// Whether `name` matches `pattern`: `**` any run of bytes, `*` any run
/// without `/`, anything else itself. Hand-written (a dozen lines) rather
/// than `globset`, which would bring a regex engine into the component for
/// two wildcards. Backtracking is bounded: patterns and names are at most
/// a few hundred bytes, and each `*` tries each split once.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern {
        [] => name.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=name.len()).any(|i| matches(rest, &name[i..])),
        [b'*', rest @ ..] => {
            let run = name.iter().position(|&b| b == b'/').unwrap_or(name.len());
            (0..=run).any(|i| matches(rest, &name[i..]))
        }
        [p, rest @ ..] => name.first() == Some(p) && matches(rest, &name[1..]),
    }
}
