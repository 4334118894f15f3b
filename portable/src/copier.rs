//! `copier` in pure wasm: the bytes are read and written through WASI and
//! hashed with the portable `hasher`. It saves the store nothing but the
//! copies between its memory and this component's; what it keeps is the
//! contract, so the store runs unchanged on hosts without kist's native
//! `copier`.

use crate::Component;
use crate::bindings::exports::kist::content::copier::{CopyError, Guest};
use crate::bindings::exports::kist::content::hasher::HasherBorrow;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode,
};
use crate::hasher::Hash;

/// Bytes read, written and hashed per step.
const CHUNK: u64 = 1 << 20;

impl Guest for Component {
    fn copy_hashed(
        source: &Descriptor,
        source_offset: u64,
        target: &Descriptor,
        target_offset: u64,
        length: u64,
        hasher: HasherBorrow<'_>,
    ) -> Result<u64, CopyError> {
        check(source, DescriptorFlags::READ, "source")?;
        check(target, DescriptorFlags::WRITE, "target")?;
        if source_offset.checked_add(length).is_none()
            || target_offset.checked_add(length).is_none()
        {
            return Err(CopyError::Io(format!(
                "offsets {source_offset} and {target_offset} plus {length} bytes overflow"
            )));
        }
        let hash: &Hash = hasher.get();
        let before = hash.snapshot();
        let copied = copy(source, source_offset, target, target_offset, length, hash);
        if copied.is_err() {
            hash.reset_to(before);
        }
        copied
    }

    fn write_hashed(
        target: &Descriptor,
        target_offset: u64,
        data: Vec<u8>,
        hasher: HasherBorrow<'_>,
    ) -> Result<(), CopyError> {
        check(target, DescriptorFlags::WRITE, "target")?;
        if target_offset.checked_add(data.len() as u64).is_none() {
            return Err(CopyError::Io(format!(
                "offset {target_offset} plus {} bytes overflows",
                data.len()
            )));
        }
        write_all(target, &data, target_offset)?;
        hasher.get::<Hash>().feed(&data);
        Ok(())
    }
}

/// Writes all of `bytes` at `at`.
fn write_all(target: &Descriptor, bytes: &[u8], at: u64) -> Result<(), CopyError> {
    let mut written = 0;
    while written < bytes.len() {
        written += target
            .write(&bytes[written..], at + written as u64)
            .map_err(|e| io("target", e))? as usize;
    }
    Ok(())
}

/// Refuses anything but a regular file open for `needed`.
pub(crate) fn check(d: &Descriptor, needed: DescriptorFlags, role: &str) -> Result<(), CopyError> {
    let bad = |why: &str| Err(CopyError::BadDescriptor(format!("{role}: {why}")));
    match d.get_type().map_err(|e| io(role, e))? {
        DescriptorType::RegularFile => {}
        DescriptorType::Directory => return bad("a directory"),
        _ => return bad("not a regular file"),
    }
    if !d.get_flags().map_err(|e| io(role, e))?.contains(needed) {
        return bad(if needed == DescriptorFlags::READ {
            "not open for reading"
        } else {
            "not open for writing"
        });
    }
    Ok(())
}

fn copy(
    source: &Descriptor,
    from: u64,
    target: &Descriptor,
    to: u64,
    length: u64,
    hash: &Hash,
) -> Result<u64, CopyError> {
    let mut done = 0;
    while done < length {
        let (bytes, _) = source
            .read(CHUNK.min(length - done), from + done)
            .map_err(|e| io("source", e))?;
        if bytes.is_empty() {
            break;
        }
        write_all(target, &bytes, to + done)?;
        hash.feed(&bytes);
        done += bytes.len() as u64;
    }
    Ok(done)
}

fn io(role: &str, e: ErrorCode) -> CopyError {
    match e {
        ErrorCode::InsufficientSpace | ErrorCode::Quota | ErrorCode::FileTooLarge => {
            CopyError::NoSpace
        }
        other => CopyError::Io(format!("{role}: {}", other.message())),
    }
}
