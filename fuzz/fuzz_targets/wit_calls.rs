//! Sequences of calls through the real host into the real component: any
//! input must get an answer, never a trap (a guest panic) or a timeout.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use kist::{Error, Store, Writer};

#[derive(Arbitrary, Debug)]
enum Call {
    Info(String),
    Put(Vec<u8>, Option<String>, Vec<(String, String)>),
    OpenWriter(String, Option<u64>, Option<String>),
    Write(Vec<u8>),
    Truncate(u64),
    Commit(Option<u64>, Option<String>, Vec<(String, String)>),
    Walk(Vec<String>),
    ListStatuses(Vec<String>),
    Status(String),
    Abort(String),
    Delete(String),
    Label(String, Vec<(String, Option<String>)>),
    Read(String, u64),
}

fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(dir.path()).expect("store");
            (dir, store)
        })
        .1
}

fn answered<T>(what: &Call, result: Result<T, Error>) -> Option<T> {
    match result {
        Err(e @ (Error::Component(_) | Error::Timeout)) => panic!("{what:?}: {e}"),
        other => other.ok(),
    }
}

/// `answered`, for calls whose result the sequence does not use.
fn check<T>(what: &Call, result: Result<T, Error>) {
    answered(what, result);
}

fn pairs(labels: &[(String, String)]) -> Vec<(&str, &str)> {
    labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

libfuzzer_sys::fuzz_target!(|calls: Vec<Call>| {
    let store = store();
    let mut writer: Option<Writer> = None;
    for call in calls.iter().take(32) {
        match call {
            Call::Info(d) => check(call, store.info(d)),
            Call::Put(data, expected, labels) => check(
                call,
                store.put_with(data, expected.as_deref(), &pairs(labels)),
            ),
            Call::OpenWriter(r, size, expected) => {
                writer = answered(call, store.writer(r, *size, expected.as_deref()))
            }
            Call::Write(data) => {
                if let Some(w) = writer.as_mut() {
                    check(call, w.write_all(data));
                }
            }
            Call::Truncate(size) => {
                if let Some(w) = writer.as_mut() {
                    check(call, w.truncate(*size));
                }
            }
            Call::Commit(size, expected, labels) => {
                if let Some(w) = writer.take() {
                    check(call, w.commit(*size, expected.as_deref(), &pairs(labels)));
                }
            }
            Call::Walk(filters) => {
                let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
                if let Some(walk) = answered(call, store.walk(&filters)) {
                    for info in walk.take(10) {
                        check(call, info);
                    }
                }
            }
            Call::ListStatuses(filters) => {
                let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
                check(call, store.list_statuses(&filters));
            }
            Call::Status(r) => check(call, store.status(r)),
            Call::Abort(r) => check(call, store.abort(r)),
            Call::Delete(d) => check(call, store.delete(d)),
            Call::Label(d, changes) => {
                let changes: Vec<(&str, Option<&str>)> = changes
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref()))
                    .collect();
                check(call, store.label(d, &changes));
            }
            Call::Read(d, offset) => {
                if let Some(mut reader) = answered(call, store.reader(d)) {
                    use std::io::{Read, Seek, SeekFrom};
                    if reader.seek(SeekFrom::Start(*offset)).is_ok() {
                        let mut buf = [0u8; 64];
                        let _ = reader.read(&mut buf);
                    }
                }
            }
        }
    }
});
