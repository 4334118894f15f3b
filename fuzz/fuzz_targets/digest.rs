//! `Digest::parse` on arbitrary strings.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &str| kist_guest::fuzzing::digest(input));
