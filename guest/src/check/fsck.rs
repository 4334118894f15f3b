//! The `fsck` interface: a stepwise check of every blob, label file,
//! ingest, layout file and artifact temporary file, with optional repair.
//!
//! Repairs never delete user data: a blob whose bytes do not match its
//! name is moved to `quarantine/`, as are unreadable labels. What is
//! removed is what kist itself wrote and can no longer use (temporary
//! files, labels without a blob, ingests that cannot be resumed), and only
//! under the lock the writer of that file would hold, so a check can run
//! beside live writers.

use std::cell::RefCell;

use crate::Component;
use crate::artifacts::records;
use crate::bindings::exports::kist::content::fsck::{Guest, GuestCheck, Problem, ProblemKind};
use crate::bindings::kist::content::hasher::{Algorithm, Hasher};
use crate::bindings::kist::content::locks;
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags};
use crate::content::index;
use crate::content::ingest::{GONE, Meta};
use crate::content::labels;
use crate::content::quarantine::quarantine;
use crate::content::store;
use crate::retention::holds;
use crate::shared::bucket;
use crate::shared::digest::{ALGORITHMS, Digest, is_hex_of};
use crate::shared::error::{Error, Result, fs as fs_error};
use crate::shared::fs::{self, FileType};
use crate::shared::layout;
use crate::shared::scope::Caller;

/// Bytes one step hashes at most (a step ends after the chunk that
/// crosses it), keeping every call far below the host's deadline.
const STEP_BYTES: u64 = 256 << 20;
/// Directory entries one step looks at most.
const STEP_ENTRIES: usize = 2048;

impl Guest for Component {
    type Check = Check;
}

/// A check in progress (the `check` resource).
pub struct Check(RefCell<State>);

/// Where a check is.
struct State {
    /// Who started the check: only an unconfined caller may run one.
    caller: Caller,
    repair: bool,
    /// Phases still to run, next last.
    phases: Vec<Phase>,
    /// The current phase and the directory entries it has left, next last.
    current: Option<(Phase, Entries)>,
    /// A blob being hashed across steps.
    hashing: Option<Hashing>,
    checked: u64,
    hashed: u64,
}

/// What [`State::sidecar`] made of a directory entry.
enum Sidecar {
    /// A temporary or stray file, dealt with.
    Checked(Option<Problem>),
    /// The file of the blob this digest names, at this path.
    Of(Digest, String),
}

/// A part of the store, checked one directory entry at a time.
#[derive(Clone, Copy)]
enum Phase {
    Layout,
    Blobs(Algorithm),
    Labels(Algorithm),
    Holds(Algorithm),
    Ingests,
    /// `artifacts/.tmp`: archives being built.
    ArtifactTemps,
    /// `snapshots/`: trees and their records.
    Snapshots,
}

/// A blob whose bytes are being hashed.
struct Hashing {
    digest: Digest,
    fd: Descriptor,
    hasher: Hasher,
    at: u64,
    size: u64,
}

impl GuestCheck for Check {
    fn new(repair: bool) -> Self {
        let mut phases = vec![Phase::Layout];
        for alg in ALGORITHMS {
            phases.push(Phase::Blobs(alg));
            phases.push(Phase::Labels(alg));
            phases.push(Phase::Holds(alg));
        }
        phases.push(Phase::Ingests);
        phases.push(Phase::ArtifactTemps);
        phases.push(Phase::Snapshots);
        phases.reverse();
        Self(RefCell::new(State {
            caller: Caller::current(),
            repair,
            phases,
            current: None,
            hashing: None,
            checked: 0,
            hashed: 0,
        }))
    }

    fn next(&self) -> Result<Option<Vec<Problem>>> {
        let mut s = self.0.borrow_mut();
        s.caller.administer("checking the store")?;
        s.step()
    }

    fn progress(&self) -> (u64, u64) {
        let s = self.0.borrow();
        (s.checked, s.hashed)
    }
}

/// A problem found; `repaired` filled in by the caller if it repairs.
/// The problem of the journal at `path` with `damaged` lines (see
/// `shared::journal`), folded into its base by `fold` if `repair`.
pub(crate) fn damaged_journal(
    path: &str,
    damaged: usize,
    repair: bool,
    fold: impl FnOnce() -> Result<()>,
) -> Result<Option<Problem>> {
    if damaged == 0 {
        return Ok(None);
    }
    let detail = format!(
        "{damaged} line(s) that do not parse, with whole updates after them: their \
         updates are lost, the ones after them applied"
    );
    let mut p = problem(ProblemKind::DamagedJournal, path, detail);
    if repair {
        fold()?;
        p.repaired = Some("folded into its base without them".into());
    }
    Ok(Some(p))
}

pub(crate) fn problem(kind: ProblemKind, path: &str, detail: impl Into<String>) -> Problem {
    Problem {
        kind,
        path: path.to_owned(),
        detail: detail.into(),
        repaired: None,
    }
}

impl State {
    /// One bounded step: finishes or continues the blob being hashed, then
    /// takes directory entries until the budget is spent.
    fn step(&mut self) -> Result<Option<Vec<Problem>>> {
        let mut found = Vec::new();
        let (mut bytes, mut entries) = (0u64, 0usize);
        while bytes < STEP_BYTES && entries < STEP_ENTRIES {
            if let Some(h) = &mut self.hashing {
                let (chunk, _) =
                    h.fd.read(fs::CHUNK.min(h.size - h.at), h.at)
                        .map_err(|e| fs_error("read", &h.digest.blob_path(), e))?;
                h.hasher.update(&chunk);
                h.at += chunk.len() as u64;
                bytes += chunk.len() as u64;
                self.hashed += chunk.len() as u64;
                if chunk.is_empty() || h.at >= h.size {
                    let h = self.hashing.take().expect("hashing");
                    found.extend(self.finish_blob(h)?);
                }
                continue;
            }
            let Some((phase, pending)) = &mut self.current else {
                let Some(phase) = self.phases.pop() else {
                    break;
                };
                let (listing, odd) = list(phase)?;
                found.extend(odd);
                self.current = Some((phase, listing));
                continue;
            };
            let phase = *phase;
            let Some((name, kind)) = pending.pop() else {
                self.current = None;
                continue;
            };
            entries += 1;
            found.extend(self.entry(phase, &name, kind)?);
        }
        let done = self.hashing.is_none() && self.current.is_none() && self.phases.is_empty();
        Ok(if done && found.is_empty() {
            None
        } else {
            Some(found)
        })
    }

    /// Checks one directory entry of `phase`.
    fn entry(&mut self, phase: Phase, name: &str, kind: FileType) -> Result<Option<Problem>> {
        match phase {
            // Read with `index.json` (its checked file): if that cannot be
            // read, its own problem says so.
            Phase::Layout if name == index::JOURNAL_FILE => match index::damaged() {
                Ok(damaged) => {
                    damaged_journal(name, damaged, self.repair, || index::fold(&index::lock()?))
                }
                Err(_) => Ok(None),
            },
            Phase::Layout => self.layout_file(name),
            Phase::Blobs(alg) => self.blob_entry(alg, name, kind),
            Phase::Labels(alg) => self.label_entry(alg, name, kind),
            Phase::Holds(alg) => self.hold_entry(alg, name, kind),
            Phase::Ingests => self.ingest_entry(name, kind),
            Phase::ArtifactTemps => self.artifact_temp(name),
            Phase::Snapshots => crate::snapshots::check::entry(name, kind, self.repair),
        }
    }

    /// `oci-layout` or `index.json`: present and valid JSON of the right
    /// shape; a missing one is recreated by a repair.
    fn layout_file(&mut self, name: &str) -> Result<Option<Problem>> {
        self.checked += 1;
        if let Some(kind) = fs::stat(name)?.map(|s| s.type_)
            && kind != FileType::RegularFile
        {
            let detail = format!("a {kind:?}, not a regular file; not followed, left alone");
            return Ok(Some(problem(ProblemKind::BadLayout, name, detail)));
        }
        let Some(bytes) = fs::read_file(name)? else {
            let mut p = problem(ProblemKind::BadLayout, name, "missing");
            if self.repair && layout::write_layout_files()?.contains(&name) {
                p.repaired = Some("recreated".into());
            }
            return Ok(Some(p));
        };
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return Ok(Some(problem(ProblemKind::BadLayout, name, e.to_string()))),
        };
        let key = if name == "index.json" {
            "manifests"
        } else {
            "imageLayoutVersion"
        };
        Ok(value
            .get(key)
            .is_none()
            .then(|| problem(ProblemKind::BadLayout, name, format!("no `{key}`"))))
    }

    /// An entry of `blobs/<alg>`: a blob to hash, a put's temporary file,
    /// or something stray.
    fn blob_entry(
        &mut self,
        alg: Algorithm,
        name: &str,
        kind: FileType,
    ) -> Result<Option<Problem>> {
        let dir = layout::blob_dir(alg);
        let path = format!("{dir}/{name}");
        if let Some(hex) = temp_name(alg, name, ".put") {
            return self.temp_file(&digest_of(alg, hex), &path);
        }
        if kind != FileType::RegularFile || !is_hex_of(alg, name) {
            return Ok(Some(stray(&path, kind)));
        }
        self.checked += 1;
        let Some(fd) = fs::open_existing(&path, DescriptorFlags::READ)? else {
            return Ok(None); // deleted since the listing
        };
        let size = fs::fstat(&fd, &path)?.size;
        let digest = digest_of(alg, name);
        let h = Hashing {
            digest,
            fd,
            hasher: Hasher::new(alg),
            at: 0,
            size,
        };
        if size == 0 {
            return self.finish_blob(h);
        }
        self.hashing = Some(h);
        Ok(None)
    }

    /// Compares a hashed blob with its name; quarantines it on a repair.
    fn finish_blob(&mut self, h: Hashing) -> Result<Option<Problem>> {
        let actual = Digest::of(h.digest.algorithm, &h.hasher);
        let path = h.digest.blob_path();
        if h.at < h.size {
            return Ok(Some(problem(
                ProblemKind::CorruptBlob,
                &path,
                format!("shorter than its size: ended at {} of {}", h.at, h.size),
            )));
        }
        if actual == h.digest {
            return Ok(None);
        }
        let mut p = problem(
            ProblemKind::CorruptBlob,
            &path,
            format!("content hashes to {actual}"),
        );
        if self.repair {
            let _lock = store::lock_blob(&h.digest)?;
            if let Some(to) = quarantine(&path, "")? {
                p.repaired = Some(format!("moved to {to}"));
                let labels = format!("{}/{}", layout::label_dir(h.digest.algorithm), h.digest.hex);
                quarantine(&labels, ".labels")?;
            }
        }
        Ok(Some(p))
    }

    /// An entry of `labels/<alg>`: a blob's labels, a temporary file, or
    /// something stray.
    fn label_entry(
        &mut self,
        alg: Algorithm,
        name: &str,
        kind: FileType,
    ) -> Result<Option<Problem>> {
        let (digest, path) = match self.sidecar(&layout::label_dir(alg), alg, name, kind)? {
            Sidecar::Checked(p) => return Ok(p),
            Sidecar::Of(digest, path) => (digest, path),
        };
        if fs::stat(&digest.blob_path())?.is_none() {
            return self.orphan(&digest, &path, ProblemKind::OrphanLabels, |_| false);
        }
        let Err(e) = labels::load(&digest) else {
            return Ok(None);
        };
        let mut p = problem(ProblemKind::DamagedLabels, &path, message(e));
        if self.repair {
            let _lock = store::lock_blob(&digest)?;
            if let Some(to) = quarantine(&path, ".labels")? {
                p.repaired = Some(format!("moved to {to}"));
            }
        }
        Ok(Some(p))
    }

    /// An entry of `holds/<alg>`: a blob's hold record, a temporary file, or
    /// something stray.
    fn hold_entry(
        &mut self,
        alg: Algorithm,
        name: &str,
        kind: FileType,
    ) -> Result<Option<Problem>> {
        let (digest, path) = match self.sidecar(&layout::hold_dir(alg), alg, name, kind)? {
            Sidecar::Checked(p) => return Ok(p),
            Sidecar::Of(digest, path) => (digest, path),
        };
        if fs::stat(&digest.blob_path())?.is_some() {
            return Ok(match holds::stored(&digest) {
                Err(e) => Some(problem(ProblemKind::DamagedLabels, &path, message(e))),
                Ok(_) => None,
            });
        }
        // A released record left by a collection interrupted between a
        // blob and its record means what no record means; the next
        // collection removes it.
        self.orphan(&digest, &path, ProblemKind::OrphanHolds, |d| {
            holds::stored(d).is_ok_and(|r| r.is_some_and(|r| r.holders.is_empty()))
        })
    }

    /// A file in a directory beside `blobs/<alg>` named after a blob
    /// (labels, holds): settled if it is a temporary or stray file,
    /// otherwise the blob it belongs to and its path.
    fn sidecar(
        &mut self,
        dir: &str,
        alg: Algorithm,
        name: &str,
        kind: FileType,
    ) -> Result<Sidecar> {
        let path = format!("{dir}/{name}");
        if let Some(hex) = temp_name(alg, name, ".tmp") {
            return self
                .temp_file(&digest_of(alg, hex), &path)
                .map(Sidecar::Checked);
        }
        if kind != FileType::RegularFile || !is_hex_of(alg, name) {
            return Ok(Sidecar::Checked(Some(stray(&path, kind))));
        }
        self.checked += 1;
        Ok(Sidecar::Of(digest_of(alg, name), path))
    }

    /// The file `path` belongs to the blob `d`, which is not stored: a
    /// problem of `kind` (removed by a repair) once re-checked under the
    /// blob's lock — a publish writes such files just before its rename —
    /// unless `harmless` says it means nothing.
    fn orphan(
        &mut self,
        d: &Digest,
        path: &str,
        kind: ProblemKind,
        harmless: impl Fn(&Digest) -> bool,
    ) -> Result<Option<Problem>> {
        let _lock = store::lock_blob(d)?;
        if fs::stat(&d.blob_path())?.is_some() || fs::stat(path)?.is_none() || harmless(d) {
            return Ok(None);
        }
        let mut p = problem(kind, path, "no such blob");
        if self.repair && fs::remove_file(path)? {
            p.repaired = Some("removed".into());
        }
        Ok(Some(p))
    }

    /// A temporary file named after the blob `d`: reported only if it is
    /// still there once the blob's lock is held (no put or label write of
    /// that blob is running then).
    fn temp_file(&mut self, d: &Digest, path: &str) -> Result<Option<Problem>> {
        self.checked += 1;
        let _lock = store::lock_blob(d)?;
        if fs::stat(path)?.is_none() {
            return Ok(None);
        }
        let mut p = problem(ProblemKind::TempFile, path, "left by an interrupted write");
        if self.repair && fs::remove_file(path)? {
            p.repaired = Some("removed".into());
        }
        Ok(Some(p))
    }

    /// A file in `artifacts/.tmp`: an archive being built (its builder
    /// holds its lock; skipped) or one a crash left behind.
    fn artifact_temp(&mut self, name: &str) -> Result<Option<Problem>> {
        self.checked += 1;
        let path = format!("{}/{name}", records::TMP);
        let Ok(_unused) = locks::try_lock(&records::temp_lock(name)) else {
            return Ok(None); // being built
        };
        if fs::stat(&path)?.is_none() {
            return Ok(None);
        }
        let mut p = problem(
            ProblemKind::TempFile,
            &path,
            "left by an interrupted archive",
        );
        if self.repair && fs::remove_file(&path)? {
            p.repaired = Some("removed".into());
        }
        Ok(Some(p))
    }

    /// An entry of `ingest/`: an ingest (skipped while a writer holds it),
    /// an ingest being created, or something stray.
    fn ingest_entry(&mut self, name: &str, kind: FileType) -> Result<Option<Problem>> {
        let path = format!("{}/{name}", layout::INGEST);
        let (key, temp) = match (name.strip_suffix(".new"), name.strip_suffix(GONE)) {
            (Some(key), _) => (key, Some("an ingest whose creation was interrupted")),
            (_, Some(key)) => (key, Some("an ingest whose removal was interrupted")),
            _ => (name, None),
        };
        if kind != FileType::Directory || !is_hex_of(Algorithm::Sha256, key) {
            return Ok(Some(stray(&path, kind)));
        }
        self.checked += 1;
        let dir = format!("{}/{key}", layout::INGEST);
        let Ok(_writer) = locks::try_lock(&dir) else {
            return Ok(None); // a writer is using it
        };
        let broken = if let Some(why) = temp {
            Some((ProblemKind::TempFile, why.to_owned()))
        } else {
            match (Meta::load(&dir), fs::stat(&format!("{dir}/data"))?) {
                (Err(e), _) => Some((ProblemKind::BrokenIngest, message(e))),
                (Ok(None), _) => Some((ProblemKind::BrokenIngest, "no meta file".to_owned())),
                (Ok(Some(_)), None) => Some((
                    ProblemKind::BrokenIngest,
                    "no data file (committed already)".to_owned(),
                )),
                (Ok(Some(meta)), Some(data)) => {
                    let idle = data
                        .data_modification_timestamp
                        .map_or(0, |t| fs::now().seconds.saturating_sub(t.seconds));
                    // Reported only: the data may still be wanted (a
                    // collection aborts it unless a lease holds it).
                    let ttl = crate::retention::settings::current()?.ingest_ttl;
                    return Ok((idle >= ttl).then(|| {
                        problem(
                            ProblemKind::StaleIngest,
                            &path,
                            format!(
                                "ingest {:?}: nothing written for {} h; abort it if it is not needed",
                                meta.reference,
                                idle / 3600
                            ),
                        )
                    }));
                }
            }
        };
        let Some((kind, detail)) = broken else {
            return Ok(None);
        };
        let mut p = problem(kind, &path, detail);
        if self.repair && fs::remove_tree(&path)? {
            p.repaired = Some("removed".into());
        }
        Ok(Some(p))
    }
}

/// Directory entries still to check: names and types, next last.
type Entries = Vec<(String, FileType)>;

/// Whether this is a node of a store kept in a bucket that has stored
/// nothing yet (no layout files, no blobs): its directory is an empty
/// cache of the bucket, complete as it is, where a store of its own
/// without them would be damaged.
fn new_node() -> Result<bool> {
    for path in ["oci-layout", "index.json", "blobs"] {
        if fs::stat(path)?.is_some() {
            return Ok(false);
        }
    }
    bucket::present()
}

/// The entries `phase` checks, next last; a phase directory that is not
/// a directory (a symlink: never followed) is a problem with no entries.
fn list(phase: Phase) -> Result<(Entries, Option<Problem>)> {
    let dir = match phase {
        Phase::Layout if new_node()? => return Ok((Vec::new(), None)),
        Phase::Layout => {
            let files = layout::LAYOUT_FILES.iter().rev();
            let files = files.map(|(name, _)| ((*name).to_owned(), FileType::RegularFile));
            // Popped from the end: the journal after `index.json`.
            let journal = (index::JOURNAL_FILE.to_owned(), FileType::RegularFile);
            return Ok((std::iter::once(journal).chain(files).collect(), None));
        }
        Phase::Blobs(alg) => layout::blob_dir(alg),
        Phase::Labels(alg) => layout::label_dir(alg),
        Phase::Holds(alg) => layout::hold_dir(alg),
        Phase::Ingests => layout::INGEST.to_owned(),
        Phase::ArtifactTemps => records::TMP.to_owned(),
        Phase::Snapshots => crate::snapshots::records::DIR.to_owned(),
    };
    match fs::stat(&dir)?.map(|s| s.type_) {
        None => return Ok((Vec::new(), None)),
        Some(FileType::Directory) => {}
        Some(kind) => return Ok((Vec::new(), Some(stray(&dir, kind)))),
    }
    let mut names = fs::list_dir(&dir)?.unwrap_or_default();
    names.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    Ok((names, None))
}

/// The hex in `.<hex><suffix>`, the temporary name kist gives a blob's
/// file or labels while writing them.
fn temp_name<'a>(alg: Algorithm, name: &'a str, suffix: &str) -> Option<&'a str> {
    let hex = name.strip_prefix('.')?.strip_suffix(suffix)?;
    is_hex_of(alg, hex).then_some(hex)
}

/// The digest named by the checked hex `hex`.
fn digest_of(alg: Algorithm, hex: &str) -> Digest {
    Digest {
        algorithm: alg,
        hex: hex.to_owned(),
    }
}

/// A stray entry: reported, never touched.
fn stray(path: &str, kind: FileType) -> Problem {
    problem(
        ProblemKind::StrayEntry,
        path,
        format!("not written by kist ({kind:?}); left alone"),
    )
}

/// The text of an error, for a problem's detail.
fn message(e: Error) -> String {
    match e {
        Error::Io(m)
        | Error::InvalidArgument(m)
        | Error::FailedPrecondition(m)
        | Error::TooLarge(m) => m,
        other => format!("{other:?}"),
    }
}
