//! `kist:content/patch`: per-file binary deltas with zstd (the C library,
//! which wasmtime's cache already links), the base referenced as a prefix
//! of the target and the window sized to reach back into it: what `zstd
//! --patch-from` does. (Loading the base as a raw-content dictionary
//! instead made the Debian python bump's 6.8 MB `python3.11` delta 40 %
//! larger at level 12: the dictionary's match state is sized for small
//! inputs.)

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, InBuffer, OutBuffer};

use crate::bindings::kist::content::patch::{Host, PatchError};

use super::CapabilitiesView;

/// Largest base, target or result the host works on: bigger files travel
/// whole.
const MAX_INPUT: usize = 64 << 20;

impl Host for CapabilitiesView<'_> {
    fn make(
        &mut self,
        base: Vec<u8>,
        target: Vec<u8>,
        level: u8,
    ) -> wasmtime::Result<Result<Vec<u8>, PatchError>> {
        if base.len() > MAX_INPUT || target.len() > MAX_INPUT {
            return Ok(Err(too_large()));
        }
        Ok(make(&base, &target, i32::from(level.clamp(1, 19)))
            .map_err(|e| PatchError::Unsupported(format!("zstd: {e}"))))
    }

    fn apply(
        &mut self,
        base: Vec<u8>,
        delta: Vec<u8>,
        max_size: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, PatchError>> {
        if base.len() > MAX_INPUT {
            return Ok(Err(too_large()));
        }
        let capacity = usize::try_from(max_size)
            .unwrap_or(usize::MAX)
            .min(MAX_INPUT);
        Ok(apply(&base, &delta, capacity).map_err(PatchError::Malformed))
    }
}

fn make(base: &[u8], target: &[u8], level: i32) -> Result<Vec<u8>, &'static str> {
    let mut cctx = CCtx::create();
    // One past the highest bit of the larger input, as `--patch-from`;
    // within zstd's least window and the most its decoders take by default.
    let largest = base.len().max(target.len()) as u64;
    let window = (u64::BITS - largest.leading_zeros()).clamp(10, 27);
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(target.len()));
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .and_then(|_| cctx.set_parameter(CParameter::WindowLog(window)))
        // 4 bytes that make a delta applied to another base fail here.
        .and_then(|_| cctx.set_parameter(CParameter::ChecksumFlag(true)))
        .and_then(|_| cctx.set_pledged_src_size(Some(target.len() as u64)))
        .and_then(|_| cctx.ref_prefix(base))
        .and_then(|_| cctx.compress2(&mut out, target))
        .map_err(zstd_safe::get_error_name)?;
    Ok(out)
}

fn apply(base: &[u8], delta: &[u8], capacity: usize) -> Result<Vec<u8>, String> {
    let mut dctx = DCtx::create();
    let zstd = |code| format!("zstd: {}", zstd_safe::get_error_name(code));
    // zstd's default window limit (2^27) covers what `make` makes of
    // inputs up to MAX_INPUT, and refuses a delta that would ask more.
    dctx.ref_prefix(base).map_err(zstd)?;
    let mut out = Vec::with_capacity(capacity);
    let mut input = InBuffer::around(delta);
    let mut output = OutBuffer::around(&mut out);
    loop {
        let left = dctx
            .decompress_stream(&mut output, &mut input)
            .map_err(zstd)?;
        if left == 0 {
            break;
        }
        if output.pos() == capacity {
            return Err(format!("the delta expands past {capacity} bytes"));
        }
        if input.pos() == delta.len() {
            return Err("the delta ends early".to_owned());
        }
    }
    if input.pos() != delta.len() {
        return Err("bytes follow the delta's frame".to_owned());
    }
    Ok(out)
}

fn too_large() -> PatchError {
    PatchError::Unsupported(format!("deltas are made of files up to {MAX_INPUT} bytes"))
}

#[cfg(test)]
mod tests {
    use super::{apply, make};

    /// `n` bytes from the top of a 64-bit LCG: no repeats for matches
    /// to find.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let step = |x: u64| {
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(seed | 1)
        };
        std::iter::successors(Some(seed), |x| Some(step(*x)))
            .skip(1)
            .take(n)
            .map(|x| (x >> 56) as u8)
            .collect()
    }

    #[test]
    fn a_delta_rebuilds_its_target_from_its_base_only() {
        let base = bytes(3 << 20, 1);
        let mut target = base.clone();
        target[100] ^= 1;
        target.extend(bytes(1000, 2));
        let delta = make(&base, &target, 12).unwrap();
        assert!(delta.len() < 4_000, "{} bytes", delta.len());
        assert_eq!(apply(&base, &delta, target.len()).unwrap(), target);

        let mut other = base.clone();
        other[200] ^= 1;
        assert!(apply(&other, &delta, target.len()).is_err(), "another base");
        let e = apply(&base, &delta, target.len() - 1).unwrap_err();
        assert!(e.contains("past"), "{e}");
        let e = apply(&base, &delta[..delta.len() - 10], target.len()).unwrap_err();
        assert!(e.contains("early"), "{e}");
        let mut trailing = delta.clone();
        trailing.push(0);
        assert!(
            apply(&base, &trailing, target.len()).is_err(),
            "trailing bytes"
        );
    }
}
