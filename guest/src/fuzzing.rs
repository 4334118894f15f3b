//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! parsers every export runs on untrusted input, callable natively so that
//! libFuzzer's coverage sees inside them. Each checks the invariants its
//! parser promises and panics when one breaks.

use crate::deltas::tree::Tree;
use crate::shared::digest::{ALGORITHMS, Digest, is_hex_of};
use crate::shared::filters::{Fields, Filters};
use crate::shared::validate;

/// `Digest::parse`: an accepted digest prints back as its input, names a
/// known algorithm and has lower-case hex of the right length.
pub fn digest(input: &str) {
    if let Ok(d) = Digest::parse(input) {
        assert_eq!(d.to_string(), input);
        assert!(ALGORITHMS.contains(&d.algorithm));
        assert!(is_hex_of(d.algorithm, &d.hex));
        assert!(!d.blob_path().contains(".."));
    }
}

/// `Tree::decode` (a layer tree comes from the network in a delta pull):
/// what it accepts encodes back to exactly its input, so nothing in a tree
/// is read that is not the tree's.
pub fn layer_tree(input: &[u8]) {
    if let Ok(tree) = Tree::decode(input) {
        assert_eq!(tree.encode(), input);
    }
}

/// `validate::reference` and `validate::label`: what they accept is within
/// the documented limits.
pub fn reference_and_label(reference: &str, key: &str, value: &str) {
    if validate::reference(reference).is_ok() {
        assert!((1..=validate::MAX_REF).contains(&reference.len()));
        assert!(!reference.contains('\0'));
    }
    if validate::label(key, value).is_ok() {
        assert!(!key.is_empty() && key.len() + value.len() <= validate::MAX_LABEL);
        assert!(key.bytes().all(|b| b.is_ascii_graphic()));
    }
}

/// Fields from a list of pairs.
struct Pairs<'a>(&'a [(String, String)]);

impl Fields for Pairs<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let key = path.join(".");
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}

/// `Filters::parse` and `matches`: never panic, and no filters match all.
pub fn filters(filters: &[String], fields: &[(String, String)]) {
    if let Ok(parsed) = Filters::parse(filters) {
        let matched = parsed.matches(&Pairs(fields));
        assert!(matched || !filters.is_empty());
    }
}
