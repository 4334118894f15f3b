//! A proptest state machine: random sequences of puts (by two holders and
//! a lease), writes, drops, resumes, commits, aborts, releases, holds,
//! label changes (each holder's own), references, collections, clock
//! moves (the lease expires) and host restarts, each answer compared with
//! a plain in-memory model of the store: which blobs are held, which
//! cached, whose labels they have, what a collection removes.

// The model is checked before it is updated, so lookups and inserts are
// apart on purpose.
#![allow(clippy::map_entry)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kist::{Error, Store, Writer};
use kist_tests::{FakeClock, Harness, bytes, collect, digests, sha256};
use proptest::prelude::*;

/// The holders puts and releases act for: `default`, another, the lease.
const HOLDERS: [&str; 3] = ["default", "other", "lease/l"];
/// How long the lease lives from the start of a case, in seconds.
const LEASE_SECONDS: u64 = 100;

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
    /// `put` of one of a few contents for one of the holders.
    PutAs(u8, u8),
    /// One of the holders releases the n-th known blob.
    Release(u8, u8),
    /// One of the holders holds the n-th known blob.
    Hold(u8, u8),
    /// The n-th held blob references the m-th known blob (a
    /// `containerd.io/gc.ref.content` label).
    Reference(u8, u8),
    /// A whole collection.
    Collect,
    /// The clock moves on by so many seconds.
    Advance(u8),
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
        (0..4u8, 0..3u8).prop_map(|(c, h)| Op::PutAs(c, h)),
        (any::<u8>(), 0..3u8).prop_map(|(n, h)| Op::Release(n, h)),
        (any::<u8>(), 0..3u8).prop_map(|(n, h)| Op::Hold(n, h)),
        (any::<u8>(), any::<u8>()).prop_map(|(n, m)| Op::Reference(n, m)),
        Just(Op::Collect),
        (0..80u8).prop_map(Op::Advance),
    ]
}

/// Labels of one holder.
type Labels = BTreeMap<String, String>;

/// One stored blob as the model sees it.
#[derive(Default, Clone)]
struct Blob {
    holders: BTreeSet<String>,
    /// Each holder's labels (a holder without labels has no entry).
    labels: BTreeMap<String, Labels>,
}

/// What the store should hold.
#[derive(Default)]
struct Model {
    /// Every stored blob (held or cached), by digest.
    blobs: BTreeMap<String, Blob>,
    /// Ref → bytes written so far.
    ingests: BTreeMap<u8, Vec<u8>>,
    /// Seconds since the case started; the lease expires at LEASE_SECONDS.
    clock: u64,
}

const REF_LABEL: &str = "containerd.io/gc.ref.content";

impl Model {
    fn lease_live(&self) -> bool {
        self.clock < LEASE_SECONDS
    }

    /// Who holds `b` now.
    fn live(&self, b: &Blob) -> BTreeSet<String> {
        b.holders
            .iter()
            .filter(|h| h.as_str() != "lease/l" || self.lease_live())
            .cloned()
            .collect()
    }

    /// The held blobs: what `walk` lists.
    fn held(&self) -> Vec<String> {
        self.blobs
            .iter()
            .filter(|(_, b)| !self.live(b).is_empty())
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Stores `digest` for `holder`: a new or cached blob gets `labels`
    /// (`holder`'s, and nobody else's), a holder new to a held one gets
    /// them too, and one that held it keeps its own.
    fn store(&mut self, digest: &str, holder: &str, labels: Labels) {
        let live = self
            .blobs
            .get(digest)
            .map(|b| self.live(b))
            .unwrap_or_default();
        let blob = self.blobs.entry(digest.to_owned()).or_default();
        if live.is_empty() {
            // Holds of an expired lease stay in the blob's record until a
            // collection tidies them (releasing one then still succeeds).
            let stale = std::mem::take(&mut blob.holders);
            *blob = Blob::default();
            blob.holders = stale;
            if !labels.is_empty() {
                blob.labels.insert(holder.to_owned(), labels);
            }
        } else if !live.contains(holder) && !labels.is_empty() {
            blob.labels.insert(holder.to_owned(), labels);
        }
        blob.holders.insert(holder.to_owned());
    }

    /// The labels that count for what `b` references: its live holders',
    /// or every set while nobody holds it.
    fn counted<'a>(&self, b: &'a Blob) -> impl Iterator<Item = &'a Labels> {
        let live = self.live(b);
        b.labels
            .iter()
            .filter(move |(h, _)| live.is_empty() || live.contains(*h))
            .map(|(_, l)| l)
    }

    /// What a collection keeps: held blobs and what they reference,
    /// transitively.
    fn collect(&mut self) {
        let mut keep: BTreeSet<String> = self.held().into_iter().collect();
        let mut queue: Vec<String> = keep.iter().cloned().collect();
        while let Some(d) = queue.pop() {
            let Some(b) = self.blobs.get(&d) else {
                continue;
            };
            let targets: Vec<String> = self
                .counted(b)
                .filter_map(|l| l.get(REF_LABEL).cloned())
                .collect();
            for target in targets {
                if self.blobs.contains_key(&target) && keep.insert(target.clone()) {
                    queue.push(target);
                }
            }
        }
        self.blobs.retain(|d, _| keep.contains(d));
    }

    /// `holder` releases `digest`; whether it held it. Its labels go with
    /// its hold, unless it was the last holder.
    fn release(&mut self, digest: &str, holder: &str) -> bool {
        let Some(b) = self.blobs.get_mut(digest) else {
            return false;
        };
        if !b.holders.remove(holder) {
            return false;
        }
        let b = &self.blobs[digest];
        if !self.live(b).is_empty() {
            self.blobs.get_mut(digest).unwrap().labels.remove(holder);
        }
        true
    }

    /// Whether `holder` may change its labels of `b`: it holds it, or its
    /// set stays with a blob something still keeps.
    fn may_label(&self, b: &Blob, holder: &str) -> bool {
        let live = self.live(b);
        live.contains(holder) || (b.labels.contains_key(holder) && !live.is_empty())
    }
}

fn reference(r: u8) -> String {
    format!("ref-{r}")
}

/// The n-th held blob, or one never stored.
fn nth(model: &Model, n: u8) -> String {
    pick(&model.held(), n)
}

/// The n-th stored (held or cached) blob, or one never stored.
fn nth_stored(model: &Model, n: u8) -> String {
    pick(&model.blobs.keys().cloned().collect::<Vec<_>>(), n)
}

fn pick(from: &[String], n: u8) -> String {
    if from.is_empty() {
        return sha256(b"never stored");
    }
    from[usize::from(n) % from.len()].clone()
}

/// The store seen as `holder`.
fn as_holder(store: &Store, h: u8) -> Store {
    store.as_holder(HOLDERS[usize::from(h)])
}

/// Runs `ops` against a fresh store and the model.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let h = Harness::new(kist_tests::open_embedded);
    let clock = FakeClock::new();
    let mut store: Store = clock.open(h.path());
    store
        .leases()
        .create(Some("l"), Some(Duration::from_secs(LEASE_SECONDS)), &[])
        .unwrap();
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
                model.store(&sha256(&data), "default", BTreeMap::new());
            }
            Op::PutAs(c, holder) => {
                let data = bytes(1 + usize::from(c) * 700, u64::from(c));
                let put = as_holder(&store, holder).put(&data);
                if holder == 2 && !model.lease_live() {
                    prop_assert!(matches!(put, Err(Error::NotFound)), "{}: {:?}", at, put);
                } else {
                    prop_assert_eq!(put.map_err(|e| e.to_string()), Ok(sha256(&data)), "{}", at);
                    model.store(
                        &sha256(&data),
                        HOLDERS[usize::from(holder)],
                        BTreeMap::new(),
                    );
                }
            }
            Op::Release(n, holder) => {
                let digest = nth_stored(&model, n);
                let name = HOLDERS[usize::from(holder)];
                let released = as_holder(&store, holder).delete(&digest);
                if model.release(&digest, name) {
                    prop_assert!(released.is_ok(), "{}: {:?}", at, released);
                } else {
                    prop_assert!(
                        matches!(released, Err(Error::NotFound)),
                        "{}: {:?}",
                        at,
                        released
                    );
                }
            }
            Op::Hold(n, holder) => {
                let digest = nth_stored(&model, n);
                let held = as_holder(&store, holder).hold(&digest);
                if holder == 2 && !model.lease_live() {
                    prop_assert!(matches!(held, Err(Error::NotFound)), "{}: {:?}", at, held);
                } else if let Some(b) = model.blobs.get(&digest) {
                    prop_assert!(held.is_ok(), "{}: {:?}", at, held.err());
                    let name = HOLDERS[usize::from(holder)];
                    let cached = model.live(b).is_empty();
                    let b = model.blobs.get_mut(&digest).unwrap();
                    if cached {
                        // Taken back: its labels become the holder's.
                        let kept = b.labels.get(name).or(b.labels.values().next()).cloned();
                        b.labels = kept.map(|l| (name.to_owned(), l)).into_iter().collect();
                    }
                    b.holders.insert(name.to_owned());
                } else {
                    prop_assert!(matches!(held, Err(Error::NotFound)), "{}: {:?}", at, held);
                }
            }
            Op::Reference(n, m) => {
                // Labelled by one of its holders, as that holder.
                let (from, to) = (nth(&model, n), nth_stored(&model, m));
                if let Some(b) = model.blobs.get(&from) {
                    let by = model.live(b).into_iter().next().expect("a held blob");
                    let labelled = store
                        .as_holder(&by)
                        .label(&from, &[(REF_LABEL, Some(to.as_str()))]);
                    prop_assert!(labelled.is_ok(), "{}: {:?}", at, labelled.err());
                    let b = model.blobs.get_mut(&from).unwrap();
                    b.labels
                        .entry(by)
                        .or_default()
                        .insert(REF_LABEL.to_owned(), to);
                }
            }
            Op::Collect => {
                collect(&store);
                model.collect();
                // An expired lease is removed, and its holds with it.
                if !model.lease_live() {
                    for b in model.blobs.values_mut() {
                        b.holders.remove("lease/l");
                    }
                }
            }
            Op::Advance(seconds) => {
                clock.advance(Duration::from_secs(u64::from(seconds)));
                model.clock += u64::from(seconds);
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
                    let labels = value.map(|v| ("k".to_owned(), v)).into_iter().collect();
                    if model.held().contains(&digest) {
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
                    }
                    model.store(&digest, "default", labels);
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
                if model.release(&digest, "default") {
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
                let allowed = model
                    .blobs
                    .get(&digest)
                    .is_some_and(|b| model.may_label(b, "default"));
                if allowed {
                    let sets = &mut model.blobs.get_mut(&digest).unwrap().labels;
                    let mine = sets.entry("default".to_owned()).or_default();
                    match value {
                        Some(v) => mine.insert("k".into(), v),
                        None => mine.remove("k"),
                    };
                    if mine.is_empty() {
                        sets.remove("default");
                    }
                    prop_assert!(labelled.is_ok(), "{}: {:?}", at, labelled.err());
                } else {
                    prop_assert!(matches!(labelled, Err(Error::NotFound)), "{}", at);
                }
            }
            Op::Restart => {
                writers.clear();
                store = clock.open(h.path());
            }
        }
        // After every step the store shows exactly what the model holds,
        // caches what it caches, and keeps on disk what it stores.
        prop_assert_eq!(digests(&store, &[]), model.held(), "{}", at);
        for digest in model.held() {
            let blob = &model.blobs[&digest];
            let info = store.info(&digest).unwrap();
            let holders: BTreeSet<String> = info.holders.into_iter().collect();
            prop_assert_eq!(&holders, &model.live(blob), "{}: holders of {}", at, digest);
            // The default handle sees its own labels.
            let got: Labels = info.labels.into_iter().map(|l| (l.key, l.value)).collect();
            let mine = blob.labels.get("default").cloned().unwrap_or_default();
            prop_assert_eq!(&got, &mine, "{}: labels of {}", at, digest);
        }
        let mut cached: Vec<String> = store
            .walk_cached(&[])
            .unwrap()
            .map(|i| i.unwrap().digest)
            .collect();
        cached.sort();
        let expected: Vec<String> = model
            .blobs
            .iter()
            .filter(|(_, b)| model.live(b).is_empty())
            .map(|(d, _)| d.clone())
            .collect();
        prop_assert_eq!(cached, expected, "{}: cached", at);
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
