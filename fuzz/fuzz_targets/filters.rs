//! The filter language: parsing and matching arbitrary filters.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (Vec<String>, Vec<(String, String)>)| {
    let (filters, fields) = input;
    kist_guest::fuzzing::filters(&filters, &fields);
});
