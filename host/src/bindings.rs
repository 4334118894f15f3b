//! Host bindings generated from `wit/`: the one source of types for host
//! and guest.

// The generated items carry the WIT's `///` docs, except what wasmtime's
// `flags!` adds for a WIT `flags` type (`caller.actions`): the struct's
// bitset methods, which rustdoc would otherwise demand docs for.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "store-core",
    imports: { default: trappable },
    with: {
        "wasi": wasmtime_wasi::p2::bindings::sync,
        "kist:content/hasher.hasher": crate::capabilities::hasher::HashState,
        "kist:content/locks.guard": crate::capabilities::locks::LockGuard,
        "kist:content/inflate.inflater": crate::capabilities::inflate::Inflater,
        "kist:content/fetch.download": crate::capabilities::fetch::Download,
        "kist:content/deflate.gzip-encoder": crate::capabilities::deflate::Compressor,
        "kist:content/lender.loan": crate::capabilities::lender::Loan,
    },
});

/// `lending`, bound apart: only a component that imports `lender` from
/// this host exports it with the host's loans (see `lending-host`).
pub(crate) mod lending {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "lending-host",
        imports: { default: trappable },
        with: {
            "wasi": wasmtime_wasi::p2::bindings::sync,
            "kist:content/lender.loan": crate::capabilities::lender::Loan,
        },
    });
}

/// `types.error` as `lending` binds it (the same WIT type, generated a
/// second time: bindgen maps only whole interfaces and resources).
impl From<lending::kist::content::types::Error> for exports::kist::content::types::Error {
    fn from(e: lending::kist::content::types::Error) -> Self {
        use lending::kist::content::types::Error as E;
        match e {
            E::NotFound => Self::NotFound,
            E::AlreadyExists => Self::AlreadyExists,
            E::Unavailable => Self::Unavailable,
            E::InvalidArgument(m) => Self::InvalidArgument(m),
            E::FailedPrecondition(m) => Self::FailedPrecondition(m),
            E::OutOfRange => Self::OutOfRange,
            E::NoSpace(m) => Self::NoSpace(m),
            E::Io(m) => Self::Io(m),
            E::TooLarge(m) => Self::TooLarge(m),
            E::Corrupt(m) => Self::Corrupt(m),
            E::Denied(m) => Self::Denied(m),
        }
    }
}
