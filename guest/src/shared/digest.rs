//! Digests: parsing `<alg>:<hex>`, and hashing through the host.

use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::shared::error::{Result, invalid};

/// A validated digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    /// The hash algorithm.
    pub algorithm: Algorithm,
    /// Lower-case hex of the hash.
    pub hex: String,
}

/// The algorithms kist stores blobs under, in `blobs/<name>/`.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// The OCI name of `alg`.
pub fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::Sha256 => "sha256",
        Algorithm::Sha512 => "sha512",
    }
}

/// Hex digits in a digest of `alg`.
fn hex_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::Sha256 => 64,
        Algorithm::Sha512 => 128,
    }
}

/// Whether `s` is a hex string of the right length for `alg`.
pub fn is_hex_of(alg: Algorithm, s: &str) -> bool {
    s.len() == hex_len(alg) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Digest {
    /// Parses `<alg>/<hex>`, the form object keys name blobs in; `None`
    /// for anything else.
    pub fn from_key_path(s: &str) -> Option<Self> {
        Self::parse(&s.replacen('/', ":", 1)).ok()
    }

    /// Parses `<alg>:<hex>`, accepting only sha256 and sha512 with
    /// lower-case hex of the right length.
    pub fn parse(s: &str) -> Result<Self> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid(format!("digest {s:?}: expected <algorithm>:<hex>")))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                return Err(invalid(format!(
                    "digest {s:?}: unsupported algorithm {alg:?} (sha256, sha512)"
                )));
            }
        };
        if !is_hex_of(algorithm, hex) {
            return Err(invalid(format!(
                "digest {s:?}: expected {} lower-case hex digits",
                hex_len(algorithm)
            )));
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The digest of what `hasher` has seen so far.
    pub fn of(algorithm: Algorithm, hasher: &Hasher) -> Self {
        Self {
            algorithm,
            hex: to_hex(&hasher.sum()),
        }
    }

    /// The blob's path relative to the store root.
    pub fn blob_path(&self) -> String {
        format!("blobs/{}/{}", name(self.algorithm), self.hex)
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", name(self.algorithm), self.hex)
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// sha256 hex of a short string, used to turn names into file names.
pub fn key_of(s: &str) -> String {
    let hasher = Hasher::new(Algorithm::Sha256);
    hasher.update(s.as_bytes());
    to_hex(&hasher.sum())
}
