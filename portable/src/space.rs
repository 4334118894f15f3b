//! `space` in pure wasm: WASI 0.2 cannot tell a filesystem's size, so this
//! says so, and quotas given as a percentage are refused on this build.

use crate::Component;
use crate::bindings::exports::kist::content::space::Guest;

impl Guest for Component {
    fn filesystem() -> Option<(u64, u64)> {
        None
    }
}
