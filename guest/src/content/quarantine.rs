//! `quarantine/<alg>/`: where damaged blobs and label files go instead of
//! being deleted (by `fsck --repair`, and when storing content again
//! replaces a damaged copy). Every move gets a name of its own, so no
//! earlier evidence is ever replaced.

use crate::bindings::wasi::filesystem::types::ErrorCode;
use crate::shared::error::{Result, fs as fs_error};
use crate::shared::{fs, layout};

/// Moves `path` (`blobs/<alg>/<hex>` or `labels/<alg>/<hex>`) into
/// `quarantine/<alg>/` as `<hex>.<seconds>.<nanoseconds>[-n]<suffix>`;
/// returns where it went, or `None` if `path` is gone. The caller holds
/// the blob's lock.
pub fn quarantine(path: &str, suffix: &str) -> Result<Option<String>> {
    if fs::stat(path)?.is_none() {
        return Ok(None);
    }
    let mut parts = path.rsplit('/');
    let (name, alg) = (
        parts.next().unwrap_or(path),
        parts.next().unwrap_or("other"),
    );
    let dir = format!("{}/{alg}", layout::QUARANTINE);
    fs::mkdir(layout::QUARANTINE)?;
    fs::mkdir(&dir)?;
    let t = fs::now();
    let root = fs::root()?;
    for n in 0u32.. {
        let tag = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let to = format!(
            "{dir}/{name}.{}.{:09}{tag}{suffix}",
            t.seconds, t.nanoseconds
        );
        // A rename replaces its target, so find a free name first; the
        // caller's blob lock keeps other moves of this blob out meanwhile.
        if fs::stat(&to)?.is_some() {
            continue;
        }
        return match root.rename_at(path, root, &to) {
            Ok(()) => Ok(Some(to)),
            Err(ErrorCode::NoEntry) => Ok(None),
            Err(e) => Err(fs_error("quarantine", path, e)),
        };
    }
    unreachable!("u32 names run out only after 4 billion moves in one nanosecond")
}
