//! A proptest state machine: random sequences of puts, writes, drops,
//! resumes, commits, aborts, deletes, label changes and host restarts,
//! each answer compared with a plain in-memory model of the store.

// The model is checked before it is updated, so lookups and inserts are
// apart on purpose.
#![allow(clippy::map_entry)]

use std::collections::BTreeMap;

use kist::{Error, Store, Writer};
use kist_tests::{Harness, bytes, digests, open_embedded, sha256};
use proptest::prelude::*;

/// One step the test takes.
#[derive(Debug, Clone)]
enum Op {
    /// `put` of one of a few contents (so the same content recurs).
    Put(u8),
    /// Open (or resume) the writer of one of three refs.
    Open(u8),
    /// Append one of a few chunks to a ref's open writer.
    Write(u8, u8),
    /// Drop a ref's writer without committing.
    Close(u8),
    /// Commit a ref's open writer, maybe with a label.
    Commit(u8, Option<u8>),
    /// Abort a ref's ingest.
    Abort(u8),
    /// Delete the n-th stored blob (or a blob that is not stored).
    Delete(u8),
    /// Set or remove label `k` of the n-th stored blob.
    Label(u8, Option<u8>),
    /// Drop every writer and the store handle; open a new one.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8).prop_map(Op::Put),
        (0..3u8).prop_map(Op::Open),
        (0..3u8, 0..4u8).prop_map(|(r, c)| Op::Write(r, c)),
        (0..3u8).prop_map(Op::Close),
        (0..3u8, proptest::option::of(0..3u8)).prop_map(|(r, l)| Op::Commit(r, l)),
        (0..3u8).prop_map(Op::Abort),
        any::<u8>().prop_map(Op::Delete),
        (any::<u8>(), proptest::option::of(0..3u8)).prop_map(|(n, v)| Op::Label(n, v)),
        Just(Op::Restart),
    ]
}

/// What the store should hold.
#[derive(Default)]
struct Model {
    /// Digest → labels.
    blobs: BTreeMap<String, BTreeMap<String, String>>,
    /// Ref → bytes written so far.
    ingests: BTreeMap<u8, Vec<u8>>,
}

fn reference(r: u8) -> String {
    format!("ref-{r}")
}

fn nth(model: &Model, n: u8) -> String {
    if model.blobs.is_empty() {
        return sha256(b"never stored");
    }
    model
        .blobs
        .keys()
        .nth(usize::from(n) % model.blobs.len())
        .expect("in range")
        .clone()
}

/// Runs `ops` against a fresh store and the model.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let h = Harness::new(open_embedded);
    let mut store: Store = h.store();
    let mut writers: BTreeMap<u8, Writer> = BTreeMap::new();
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let at = format!("step {step}: {op:?}");
        match op.clone() {
            Op::Put(c) => {
                let data = bytes(1 + usize::from(c) * 700, u64::from(c));
                prop_assert_eq!(
                    store.put(&data).map_err(|e| e.to_string()),
                    Ok(sha256(&data)),
                    "{}",
                    at
                );
                model.blobs.entry(sha256(&data)).or_default();
            }
            Op::Open(r) => {
                let opened = store.writer(&reference(r), None, None);
                if writers.contains_key(&r) {
                    prop_assert!(
                        matches!(opened, Err(Error::Unavailable)),
                        "{}: {:?}",
                        at,
                        opened.err()
                    );
                } else {
                    let mut w = opened.map_err(|e| TestCaseError::fail(format!("{at}: {e}")))?;
                    let data = model.ingests.entry(r).or_default();
                    prop_assert_eq!(w.status().unwrap().offset, data.len() as u64, "{}", at);
                    prop_assert_eq!(w.digest().unwrap(), sha256(data), "{}", at);
                    writers.insert(r, w);
                }
            }
            Op::Write(r, c) => {
                if let Some(w) = writers.get_mut(&r) {
                    let chunk = bytes(300 * usize::from(c + 1), 100 + u64::from(c));
                    prop_assert!(w.write_all(&chunk).is_ok(), "{}", at);
                    model
                        .ingests
                        .get_mut(&r)
                        .expect("open ingest")
                        .extend(chunk);
                }
            }
            Op::Close(r) => drop(writers.remove(&r)),
            Op::Commit(r, label) => {
                if let Some(w) = writers.remove(&r) {
                    let data = model.ingests.remove(&r).expect("open ingest");
                    let digest = sha256(&data);
                    let value = label.map(|v| v.to_string());
                    let labels: Vec<(&str, &str)> =
                        value.iter().map(|v| ("k", v.as_str())).collect();
                    let committed = w.commit(None, None, &labels);
                    if model.blobs.contains_key(&digest) {
                        prop_assert!(
                            matches!(committed, Err(Error::AlreadyExists)),
                            "{}: {:?}",
                            at,
                            committed
                        );
                    } else {
                        prop_assert_eq!(
                            committed.map_err(|e| e.to_string()),
                            Ok(digest.clone()),
                            "{}",
                            at
                        );
                        let labels = value.map(|v| ("k".to_owned(), v)).into_iter().collect();
                        model.blobs.insert(digest, labels);
                    }
                }
            }
            Op::Abort(r) => {
                let aborted = store.abort(&reference(r));
                if writers.contains_key(&r) {
                    prop_assert!(
                        matches!(aborted, Err(Error::Unavailable)),
                        "{}: {:?}",
                        at,
                        aborted
                    );
                } else if model.ingests.remove(&r).is_some() {
                    prop_assert!(aborted.is_ok(), "{}: {:?}", at, aborted);
                } else {
                    prop_assert!(
                        matches!(aborted, Err(Error::NotFound)),
                        "{}: {:?}",
                        at,
                        aborted
                    );
                }
            }
            Op::Delete(n) => {
                let digest = nth(&model, n);
                let deleted = store.delete(&digest);
                if model.blobs.remove(&digest).is_some() {
                    prop_assert!(deleted.is_ok(), "{}: {:?}", at, deleted);
                } else {
                    prop_assert!(
                        matches!(deleted, Err(Error::NotFound)),
                        "{}: {:?}",
                        at,
                        deleted
                    );
                }
            }
            Op::Label(n, value) => {
                let digest = nth(&model, n);
                let value = value.map(|v| v.to_string());
                let labelled = store.label(&digest, &[("k", value.as_deref())]);
                match model.blobs.get_mut(&digest) {
                    Some(labels) => {
                        match value {
                            Some(v) => labels.insert("k".into(), v),
                            None => labels.remove("k"),
                        };
                        prop_assert!(labelled.is_ok(), "{}: {:?}", at, labelled.err());
                    }
                    None => prop_assert!(matches!(labelled, Err(Error::NotFound)), "{}", at),
                }
            }
            Op::Restart => {
                writers.clear();
                store = h.store();
            }
        }
        // After every step the store lists exactly what the model holds.
        let stored: Vec<String> = model.blobs.keys().cloned().collect();
        prop_assert_eq!(digests(&store, &[]), stored, "{}", at);
        for (digest, labels) in &model.blobs {
            let info = store.info(digest).unwrap();
            let got: BTreeMap<String, String> =
                info.labels.into_iter().map(|l| (l.key, l.value)).collect();
            prop_assert_eq!(&got, labels, "{}: labels of {}", at, digest);
        }
        let mut refs: Vec<String> = store
            .list_statuses(&[])
            .unwrap()
            .into_iter()
            .map(|s| s.ref_)
            .collect();
        refs.sort();
        let expected: Vec<String> = model.ingests.keys().map(|r| reference(*r)).collect();
        prop_assert_eq!(refs, expected, "{}", at);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("KIST_MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Proves: every answer of the store matches the model, across host
    /// restarts, for any order of operations.
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
