//! The conformance suite against `kist-portable.wasm` (the store with the
//! pure-wasm hasher and locks plugged in), run by kist's host: the
//! portable composition behaves exactly like the store with native
//! capabilities.

fn open_portable(dir: &std::path::Path) -> kist::Store {
    kist::Store::builder(dir)
        .component(kist::components::PORTABLE)
        .open()
        .expect("opening a store on kist-portable.wasm")
}

kist_tests::conformance_suite!(open_portable);
