//! `Tree::decode` (delta pulls' layer trees) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| kist_guest::fuzzing::layer_tree(input));
