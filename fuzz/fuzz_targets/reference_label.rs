//! Ref and label validation on arbitrary strings.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (&str, &str, &str)| {
    let (reference, key, value) = input;
    kist_guest::fuzzing::reference_and_label(reference, key, value);
});
