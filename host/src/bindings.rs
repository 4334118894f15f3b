//! Host bindings generated from `wit/`: the one source of types for host
//! and guest.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "store-component",
    imports: { default: trappable },
    with: {
        "wasi": wasmtime_wasi::p2::bindings::sync,
        "kist:content/hasher.hasher": crate::capabilities::hasher::HashState,
        "kist:content/locks.guard": crate::capabilities::locks::LockGuard,
        "kist:content/inflate.inflater": crate::capabilities::inflate::Inflater,
        "kist:content/fetch.download": crate::capabilities::fetch::Download,
        "kist:content/deflate.gzip-encoder": crate::capabilities::deflate::Compressor,
    },
});
