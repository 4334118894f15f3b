//! Checks on caller input that reaches the disk: refs and labels.

use crate::bindings::exports::kist::content::types::Label;
use crate::shared::error::{Result, invalid};

/// Longest accepted ref, in bytes.
pub const MAX_REF: usize = 1024;
/// Longest accepted label key plus value, in bytes (containerd's limit).
pub const MAX_LABEL: usize = 4096;

/// A ref is 1..=1024 bytes without NUL. It is only ever hashed into a
/// file name, so `/`, `..` and the like are harmless and allowed.
pub fn reference(r: &str) -> Result<()> {
    if r.is_empty() {
        return Err(invalid("ref is empty"));
    }
    if r.len() > MAX_REF {
        return Err(invalid(format!(
            "ref is {} bytes; the limit is {MAX_REF}",
            r.len()
        )));
    }
    if r.contains('\0') {
        return Err(invalid("ref contains NUL"));
    }
    Ok(())
}

/// A label key is printable ASCII without spaces; key and value together
/// are at most 4096 bytes.
pub fn label(key: &str, value: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid("label key is empty"));
    }
    if let Some(c) = key.chars().find(|c| !matches!(c, '!'..='~')) {
        return Err(invalid(format!(
            "label key {key:?}: {c:?} is not allowed; keys are printable ASCII without spaces"
        )));
    }
    let len = key.len() + value.len();
    if len > MAX_LABEL {
        return Err(invalid(format!(
            "label {key:?}: key and value are {len} bytes; the limit is {MAX_LABEL}"
        )));
    }
    Ok(())
}

/// Validates every label in `labels`.
pub fn labels(labels: &[Label]) -> Result<()> {
    labels.iter().try_for_each(|l| label(&l.key, &l.value))
}
