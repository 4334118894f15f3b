//! The conformance suite against the store component embedded in `kist`,
//! run by kist's own wasmtime host.

kist_tests::conformance_suite!(kist_tests::open_embedded);
