//! [`Scan`]: one pass over the store that finds what is live — held
//! blobs, `index.json`'s entries, what they reference and their
//! referrers, what live ingests expect — and what every
//! blob and ingest weighs. A collection, an eviction and a usage count all
//! start from one. It runs in bounded steps so a call never runs long.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::artifacts::records;
use crate::bindings::kist::content::hasher::Algorithm;
use crate::bindings::wasi::filesystem::types::{Descriptor, DirectoryEntryStream};
use crate::content::index;
use crate::content::ingest::Meta;
use crate::content::labels::{self, LabelFile};
use crate::registry::referrers;
use crate::retention::holds::{self, LEASE, Record, Stamp};
use crate::retention::leases;
use crate::retention::settings::Config;
use crate::shared::digest::{ALGORITHMS, Digest, is_hex_of};
use crate::shared::error::{Error, Result, fs as fs_error};
use crate::shared::fs::{self, FileType};
use crate::shared::layout;
use crate::snapshots::records as snapshots;
use crate::snapshots::tree;

/// Labels through which a blob keeps a snapshot, as in containerd:
/// `containerd.io/gc.ref.snapshot.<snapshotter>[/<x>]`.
const SNAPSHOT_REF: &str = "containerd.io/gc.ref.snapshot.";

/// Directory entries one step looks at, at most.
const STEP: usize = 1024;

/// What a scan learned about one stored blob.
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    /// Its record (the implicit one if it has none).
    pub record: Record,
    /// Who holds it now.
    pub live: Vec<String>,
}

impl Blob {
    /// Whether the holders matching `counts` hold it, or held it last
    /// before it was released: whose quota it counts against.
    pub fn counted_by(&self, counts: impl Fn(&str) -> bool) -> bool {
        if self.live.is_empty() {
            self.record.released_by.iter().any(|h| counts(h))
        } else {
            self.live.iter().any(|h| counts(h))
        }
    }
}

/// What a scan learned about one ingest.
pub struct Ingest {
    pub dir: String,
    pub meta: Meta,
    pub size: u64,
    /// When data was last written to it.
    pub updated: Stamp,
    /// Whether a live lease holds it.
    pub leased: bool,
}

/// Where a scan is.
enum Phase {
    /// Listing `blobs/<alg>` (and knowing which have records and labels).
    Blobs {
        alg: Algorithm,
        dir: Descriptor,
        entries: DirectoryEntryStream,
        recorded: BTreeSet<String>,
        labelled: HashSet<String>,
    },
    /// Reading ingests, the names still to read.
    Ingests(Vec<String>),
    /// Following references from what is live.
    Edges,
    Done,
}

/// A scan in progress, then its results.
pub struct Scan {
    /// When it started.
    pub started: Stamp,
    pub config: Config,
    /// Every lease record, live or not.
    pub leases: BTreeMap<String, leases::Record>,
    /// Every stored blob, by digest.
    pub blobs: BTreeMap<String, Blob>,
    pub ingests: Vec<Ingest>,
    /// Blobs reached from something live.
    pub marked: BTreeSet<String>,
    /// Snapshots live blobs name in `containerd.io/gc.ref.snapshot.*`
    /// labels: they are kept (see `snapshots::retention`).
    pub snapshot_refs: BTreeSet<String>,
    /// Snapshots' holders and bytes: they count against quotas as blobs do
    /// (an unpacked layer is space like its blob). See [`snapshot_usage`].
    snapshot_usage: Vec<(BTreeSet<String>, u64)>,
    /// `index.json`'s entries: digest → names.
    roots: BTreeMap<String, Vec<String>>,
    /// Subjects that have referrers (see `registry::referrers`).
    subjects: HashSet<String>,
    /// References still to follow.
    queue: Vec<Digest>,
    /// Algorithms still to list.
    pending: Vec<Algorithm>,
    phase: Phase,
}

/// What snapshots weigh, by holders: committed ones what their records
/// say, and what a layer being applied into an active one has unpacked so
/// far (charged as it unpacks: a recount meanwhile must not forget it).
fn snapshot_usage() -> Result<Vec<(BTreeSet<String>, u64)>> {
    let mut out = Vec::new();
    for r in snapshots::current()?.values() {
        let bytes = match r.usage {
            Some((bytes, _)) => bytes,
            None => {
                let staging = tree::apply_path(r.id);
                if fs::stat(&staging)?.is_none() {
                    continue;
                }
                // Gone since the look (the apply finished or failed): nothing.
                tree::usage(&staging).map_or(0, |(bytes, _)| bytes)
            }
        };
        out.push((r.holders.clone(), bytes));
    }
    Ok(out)
}

impl Scan {
    /// Starts a scan with the store's settings and leases as they are now.
    pub fn new(config: Config) -> Result<Self> {
        let leases = leases::all()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut scan = Self {
            started: holds::now(),
            config,
            leases,
            blobs: BTreeMap::new(),
            ingests: Vec::new(),
            marked: BTreeSet::new(),
            snapshot_refs: BTreeSet::new(),
            snapshot_usage: snapshot_usage()?,
            // A damaged index fails the collection: its roots are unknown.
            roots: index::roots()?,
            subjects: referrers::subjects()?,
            queue: Vec::new(),
            pending: ALGORITHMS.iter().rev().copied().collect(),
            phase: Phase::Done,
        };
        scan.phase = scan.next_phase()?;
        Ok(scan)
    }

    /// Whether the scan is complete.
    pub fn done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Runs the scan to its end.
    pub fn finish(&mut self) -> Result<()> {
        while !self.done() {
            self.step()?;
        }
        Ok(())
    }

    /// The phase after the blob listings: the next algorithm's, then the
    /// ingests.
    fn next_phase(&mut self) -> Result<Phase> {
        while let Some(alg) = self.pending.pop() {
            let path = layout::blob_dir(alg);
            let Some(dir) = fs::open_dir(&path)? else {
                continue;
            };
            let entries = dir
                .read_directory()
                .map_err(|e| fs_error("list", &path, e))?;
            return Ok(Phase::Blobs {
                alg,
                dir,
                entries,
                recorded: holds::recorded(alg)?,
                labelled: labels::labelled(alg)?,
            });
        }
        let names = fs::list_dir(layout::INGEST)?
            .unwrap_or_default()
            .into_iter()
            .filter(|(n, k)| *k == FileType::Directory && is_hex_of(Algorithm::Sha256, n))
            .map(|(n, _)| n)
            .collect();
        Ok(Phase::Ingests(names))
    }

    /// Does a bounded amount of the scan.
    pub fn step(&mut self) -> Result<()> {
        let mut budget = STEP;
        while budget > 0 {
            budget -= 1;
            match &mut self.phase {
                Phase::Blobs {
                    alg,
                    dir,
                    entries,
                    recorded,
                    labelled,
                } => {
                    let Some(entry) = fs::next_entry(entries, "blobs")? else {
                        self.phase = self.next_phase()?;
                        continue;
                    };
                    let alg = *alg;
                    if entry.type_ != FileType::RegularFile || !is_hex_of(alg, &entry.name) {
                        continue;
                    }
                    let has_record = recorded.contains(&entry.name);
                    let has_labels = labelled.contains(&entry.name);
                    let Some(stat) = fs::stat_in(dir, &entry.name, "blobs")? else {
                        continue; // removed since the listing
                    };
                    let digest = Digest {
                        algorithm: alg,
                        hex: entry.name,
                    };
                    self.blob(digest, stat.size, has_record, has_labels)?;
                }
                Phase::Ingests(names) => {
                    let Some(name) = names.pop() else {
                        self.phase = Phase::Edges;
                        continue;
                    };
                    self.ingest(&format!("{}/{name}", layout::INGEST))?;
                }
                Phase::Edges => {
                    let Some(d) = self.queue.pop() else {
                        self.phase = Phase::Done;
                        continue;
                    };
                    self.reach(&d)?;
                }
                Phase::Done => break,
            }
        }
        Ok(())
    }

    /// Notes one stored blob: live if anyone holds it, and then what it
    /// references is live too.
    fn blob(
        &mut self,
        digest: Digest,
        size: u64,
        has_record: bool,
        has_labels: bool,
    ) -> Result<()> {
        let record = if has_record {
            holds::stored(&digest)?.unwrap_or_else(Record::implicit)
        } else {
            Record::implicit()
        };
        let labels = if has_labels {
            // A damaged label file (fsck's business) references nothing.
            labels::load(&digest).unwrap_or_default()
        } else {
            LabelFile::default()
        };
        let holders = self.holders(&digest, &record, true)?;
        let live = self.live(&digest, &holders, &labels);
        if !live.is_empty() {
            self.marked.insert(digest.to_string());
            // A blob that only flat leases hold keeps just itself.
            if live.iter().any(|h| !self.flat_lease(h)) {
                let counted = self.holders(&digest, &record, false)?;
                self.follow(&digest, &labels, &counted)?;
            }
        }
        self.blobs.insert(
            digest.to_string(),
            Blob {
                digest,
                size,
                record,
                live,
            },
        );
        Ok(())
    }

    /// The holders of `d`'s `record` that hold it now (leases judged by
    /// the records read at the start), and with `graced`, only those that
    /// keep it by themselves (holds with a grace only within it).
    fn holders(&self, d: &Digest, record: &Record, graced: bool) -> Result<Vec<String>> {
        let mut live = Vec::new();
        for h in &record.holders {
            if graced && record.until.get(h).is_some_and(|u| *u <= self.started) {
                continue;
            }
            let holds = if let Some(id) = h.strip_prefix(LEASE) {
                self.leases.get(id).is_some_and(|l| l.live(self.started))
            } else if let Some(path) = h.strip_prefix(holds::ARTIFACT) {
                records::holds_blob(path, &d.to_string())?
            } else {
                true
            };
            if holds {
                live.push(h.clone());
            }
        }
        Ok(live)
    }

    /// What keeps `d` by itself now: `holders` (see [`holders`]), a root
    /// label they count, and the `index.json` entries that name it.
    ///
    /// [`holders`]: Self::holders
    fn live(&self, d: &Digest, holders: &[String], labels: &LabelFile) -> Vec<String> {
        let mut live = holders.to_vec();
        if labels.counted(holders).any(|(k, _)| k == holds::ROOT_LABEL) {
            live.push(format!("label/{}", holds::ROOT_LABEL));
        }
        if let Some(names) = self.roots.get(&d.to_string()) {
            live.extend(names.iter().map(|n| format!("index/{n}")));
        }
        live
    }

    /// Queues what the live `d` keeps: what its labels reference, and its
    /// referrers.
    fn follow(&mut self, d: &Digest, labels: &LabelFile, holders: &[String]) -> Result<()> {
        self.queue
            .extend(holds::references(labels.counted(holders)));
        self.snapshot_refs.extend(
            labels
                .counted(holders)
                .filter(|(k, _)| k.starts_with(SNAPSHOT_REF))
                .map(|(_, v)| v.clone()),
        );
        if self.subjects.contains(&d.to_string()) {
            // A referrer every repository deleted is not kept by its
            // subject: only one something still holds (past its grace).
            for referrer in referrers::listed(d)? {
                if !holds::load(&referrer)?.holders.is_empty() {
                    self.queue.push(referrer);
                }
            }
        }
        Ok(())
    }

    fn flat_lease(&self, holder: &str) -> bool {
        holder
            .strip_prefix(LEASE)
            .and_then(|id| self.leases.get(id))
            .is_some_and(leases::Record::flat)
    }

    /// Notes one ingest; a live one keeps the blob it expects.
    fn ingest(&mut self, dir: &str) -> Result<()> {
        let Some(meta) = Meta::load(dir).or_else(|e| match e {
            // A broken ingest is fsck's to report; it holds nothing.
            Error::Corrupt(_) => Ok(None),
            e => Err(e),
        })?
        else {
            return Ok(());
        };
        let data = fs::stat(&format!("{dir}/data"))?;
        let (size, updated) = data.map_or((0, meta.started), |s| {
            (
                s.size,
                s.data_modification_timestamp
                    .map_or(meta.started, |t| (t.seconds, t.nanoseconds)),
            )
        });
        let leased = leases::ingest_leases(&meta)
            .any(|id| self.leases.get(id).is_some_and(|l| l.live(self.started)))
            || self
                .leases
                .values()
                .any(|l| l.live(self.started) && l.ingests.contains(&meta.reference));
        if let Some(d) = meta.expected.as_deref().and_then(|d| Digest::parse(d).ok()) {
            self.queue.push(d);
        }
        self.ingests.push(Ingest {
            dir: dir.to_owned(),
            meta,
            size,
            updated,
            leased,
        });
        Ok(())
    }

    /// Marks a referenced blob live, and what it references in turn.
    fn reach(&mut self, d: &Digest) -> Result<()> {
        let key = d.to_string();
        if self.marked.contains(&key) || !self.blobs.contains_key(&key) {
            return Ok(());
        }
        let labels = labels::load(d).unwrap_or_default();
        let holders = self.holders(d, &self.blobs[&key].record, false)?;
        self.marked.insert(key);
        self.follow(d, &labels, &holders)
    }

    /// Whether an ingest is past the ingest TTL with no lease holding it.
    pub fn expired(&self, ingest: &Ingest) -> bool {
        !ingest.leased && self.started.0.saturating_sub(ingest.updated.0) >= self.config.ingest_ttl
    }

    /// Bytes counted against a quota that counts holders `counts` (all
    /// blobs, ingests and committed snapshots for the store-wide one).
    pub fn used(&self, prefix: Option<&str>) -> u64 {
        let counts = |h: &str| prefix.is_none_or(|p| h.starts_with(p));
        let blobs: u64 = self
            .blobs
            .values()
            .filter(|b| prefix.is_none() || b.counted_by(counts))
            .map(|b| b.size)
            .sum();
        // An ingest counts what it declared it will write (reserved at its
        // open), so a recount keeps the reservations of writes under way.
        let ingests: u64 = self
            .ingests
            .iter()
            .filter(|i| prefix.is_none() || i.meta.holders().iter().any(|h| counts(h)))
            .map(|i| i.size.max(i.meta.total.unwrap_or(0)))
            .sum();
        let snapshots: u64 = self
            .snapshot_usage
            .iter()
            .filter(|(holders, _)| prefix.is_none() || holders.iter().any(|h| counts(h)))
            .map(|(_, bytes)| bytes)
            .sum();
        blobs + ingests + snapshots
    }
}
